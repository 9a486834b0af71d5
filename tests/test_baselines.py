"""The new leaderboard baselines on the toy data (single- and multi-label): sentence embeddings + LR from
the audit stage's embedder, a BiLSTM/BiGRU from scratch on a tokenizer's word pieces, zero-shot with a
tiny config-built decoder; each scored by the runs' metric code with its cost, and the leaderboard rows
they become. Offline, CPU only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from toy_runs import LABELS, toy_frame

from emotune import aggregate as ag
from emotune import audit, metrics
from emotune import baseline as bl
from emotune.config import BaselineConfig, RnnBaseline, parse_params
from emotune.errors import EmotuneError
from emotune.model_registry import packages_installed
from emotune.paths import BASELINES, zero_shot_name

torch.set_num_threads(1)


class Spec:
    def __init__(self, task):
        self.name, self.task, self.labels = "toy", task, LABELS
        self.multi_label = task == "multi_label"
        self.official_metric = "accuracy" if task == "single_label" else "jaccard"


class Params:
    """The slice of Params run_baseline reads."""

    def __init__(self, tokenizer, **rnn):
        from emotune.config import TokenizeConfig

        self.baseline = BaselineConfig(rnn=RnnBaseline(tokenizer=tokenizer, **rnn))
        self.model_registry = {}
        self.tokenize = TokenizeConfig()


def toy_splits(task):
    return {s: toy_frame(n, task, k, s) for k, (s, n) in enumerate([("train", 300), ("validation", 80), ("test", 120)])}


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_bilstm_learns_from_scratch_and_reports_its_cost(task, tiny):
    splits, spec = toy_splits(task), Spec(task)
    params = Params(str(tiny("bert")), epochs=4)
    majority, _, _ = bl.run_baseline("majority", splits, spec, 200, 7, "tuned")
    logs = []
    report, y, pred = bl.run_baseline("bilstm", splits, spec, 200, 7, "tuned", params, log=logs.append)
    assert report["adapter"] == "bilstm" and report["train_examples"] == 200 and report["test_rows"] == 120
    assert report["official"] > majority["official"] + 0.2, (report["test"], majority["test"])
    # the official number is the shared metric code's, on the predictions written next to it
    assert report["official"] == pytest.approx(
        metrics.classification_report(y, pred, LABELS, spec.multi_label)["test"][spec.official_metric])
    assert len(logs) == 4 and all("validation" in line for line in logs)
    params_count = report["params"]
    assert params_count["trainable"] == params_count["total"] > 0 and report["train_time_s"] > 0
    assert report["inference"]["batched_examples_per_s"] > 0
    if task == "multi_label":
        assert report["threshold_mode"] == "tuned" and len(report["thresholds"]) == 3


def test_rnn_cell_and_vocabulary(tiny):
    """GRU has 3 gates to the LSTM's 4; the vocabulary is the word pieces seen in train (+ pad, unk)."""
    splits, spec = toy_splits("single_label"), Spec("single_label")
    sizes = {}
    for cell in ("lstm", "gru"):
        report, _, _ = bl.run_baseline("bilstm", splits, spec, 200, 7, "tuned",
                                       Params(str(tiny("bert")), cell=cell, epochs=1), log=lambda _: None)
        sizes[cell] = report["params"]["total"]
    cfg = RnnBaseline()
    seen = {w for text in bl.sample_rows(splits["train"], 200, 7)["text"] for w in text.split()}
    embed = (len(seen) + 2) * cfg.embedding_dim  # the tiny tokenizer: one piece per (known) word
    head = 4 * cfg.hidden_size * 3 + 3
    per_gate = 2 * (cfg.hidden_size * (cfg.embedding_dim + cfg.hidden_size) + 2 * cfg.hidden_size)
    assert sizes["lstm"] == embed + 4 * per_gate + head
    assert sizes["gru"] == embed + 3 * per_gate + head


@pytest.mark.skipif(not packages_installed("minilm"), reason="the offline MiniLM package is not installed")
@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_sentence_embeddings_lr_uses_the_audit_embedder(task):
    splits, spec = toy_splits(task), Spec(task)
    majority, _, _ = bl.run_baseline("majority", splits, spec, 200, 7, "tuned")
    report, _, _ = bl.run_baseline("embed_lr", splits, spec, 200, 7, "tuned")
    assert report["official"] > majority["official"] + 0.2, (report["test"], majority["test"])
    encoder = audit.sentence_encoder("minilm")[1]  # the audit's own loader: one embedder in the project
    encoder_params = sum(p.numel() for p in encoder.parameters())
    head = 384 * 3 + 3
    assert report["params"] == {"trainable": head, "total": head + encoder_params}
    assert 20e6 < encoder_params < 25e6  # MiniLM-L6: 22.7M


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_zero_shot_prompts_a_decoder_with_the_label_names(task, tiny, monkeypatch):
    from emotune import prompts

    splits, spec = toy_splits(task), Spec(task)
    folder = str(tiny("llama"))
    seen = []
    original = prompts.prompt_format

    def recording(tokenizer, labels, multi_label, **prompt):
        fmt = original(tokenizer, labels, multi_label, **prompt)
        seen.append(tokenizer.decode(fmt.prefix_ids))
        return fmt

    monkeypatch.setattr(prompts, "prompt_format", recording)  # records, then does the real thing
    report, y, pred, _ = bl.zero_shot(folder, splits, spec, 64, 16, device="cpu", name="tiny-llama")
    assert seen and all(label in seen[0] for label in LABELS), seen
    assert report["adapter"] == "zero_shot_tiny-llama" and report["kind"] == "baseline"
    assert report["test_rows"] == 120 and report["train_examples"] == 0
    assert report["params"]["trainable"] == 0 and report["params"]["total"] > 0
    assert "invalid_rate" in report["test"] and len(report["answers_sample"]) == 20
    # the random decoder's answers are parsed back exactly as the generative runs' are
    from emotune.generative import decode_predictions

    again, invalid = decode_predictions(report["answers_sample"], LABELS, spec.multi_label)
    assert np.array_equal(again, pred[:20]) and report["test"]["invalid_rate"] >= invalid.mean() * 20 / 120
    assert report["threshold_mode"] == "generated" and report["thresholds"] is None


def test_zero_shot_rank_picks_the_likeliest_label_answer(tiny):
    """decode rank: each label's answer log-likelihood after the prompt, batched and left-padded; checked
    row by row against an unpadded forward pass of prompt + answer."""
    from emotune.generative import load_causal
    from emotune.prompts import tokenize_prompts

    splits, spec = toy_splits("single_label"), Spec("single_label")
    folder = str(tiny("llama"))
    report, y, pred, _ = bl.zero_shot(folder, splits, spec, 64, 16, device="cpu", name="tiny-llama", decode="rank")
    assert report["decode"] == "rank" and report["threshold_mode"] == "ranked label likelihood"
    assert "invalid_rate" not in report["test"] and "roc_auc_macro" in report["test"]  # probabilities exist
    loaded = load_causal(folder, "gen_lora", LABELS, "single_label")
    net, tok = loaded.model.eval(), loaded.tokenizer
    test = splits["test"]
    scores = bl.rank_labels(net, tok, test, LABELS, 64, 16, "cpu")
    assert np.array_equal(pred, scores.argmax(1))
    for row in (0, 7, 33):
        for j, label in enumerate(LABELS):
            one = tokenize_prompts(test.iloc[[row]].assign(labels=[[label]]), tok, LABELS, False, 64).iloc[0]
            ids = torch.tensor([list(one["prompt_ids"]) + list(one["answer_ids"])])
            with torch.no_grad():
                logp = torch.log_softmax(net(input_ids=ids).logits[0].float(), -1)
            start = len(one["prompt_ids"])
            expected = sum(logp[start + k - 1, t].item() for k, t in enumerate(one["answer_ids"]))
            assert scores[row, j] == pytest.approx(expected, abs=1e-3)
    with pytest.raises(EmotuneError, match="rank scores one label per text"):
        bl.zero_shot(folder, toy_splits("multi_label"), Spec("multi_label"), 64, 16, device="cpu", decode="rank")


@pytest.mark.parametrize("model_type", ["llama", "gemma2"])
def test_rank_shares_the_prompt_and_scores_what_one_pass_per_label_scores(tiny, model_type):
    """rank_labels (the prompt once per text, its KV cache repeated for every label's answer) gives the
    scores of rank_labels_per_label (one full pass per label) to float rounding, batch sizes and padding
    included."""
    from emotune.generative import load_causal

    loaded = load_causal(str(tiny(model_type)), "gen_lora", LABELS, "single_label")
    net, tok = loaded.model.eval(), loaded.tokenizer
    test = toy_splits("single_label")["test"].iloc[:50]
    slow = bl.rank_labels_per_label(net, tok, test, LABELS, 64, 16, "cpu")
    for batch_size in (16, 7):  # a ragged last batch; different padding per batch
        fast = bl.rank_labels(net, tok, test, LABELS, 64, batch_size, "cpu")
        np.testing.assert_allclose(fast, slow, atol=1e-5, rtol=0)
        assert np.array_equal(fast.argmax(1), slow.argmax(1))
    assert np.ptp(slow, axis=1).min() > 0, "the labels score differently: the comparison is not between ties"


def test_zero_shot_refuses_an_encoder(tiny):
    with pytest.raises(EmotuneError, match="needs a decoder"):
        bl.zero_shot(str(tiny("bert")), toy_splits("single_label"), Spec("single_label"), 64, 16, device="cpu")


@pytest.fixture(scope="module")
def emotion_classifier(tmp_path_factory, tiny):
    """A tiny BERT saved as a trained classifier with labels of its own (as a Hub emotion classifier)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    theirs = ["anger", "happiness", "neutral", "sadness"]
    torch.manual_seed(3)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny("bert")), num_labels=4, id2label=dict(enumerate(theirs)), label2id={t: i for i, t in enumerate(theirs)})
    folder = tmp_path_factory.mktemp("classifier") / "emotion-classifier"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(tiny("bert"))).save_pretrained(folder)
    return folder, theirs


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_off_the_shelf_classifier_through_a_label_map(task, emotion_classifier):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, theirs = emotion_classifier
    label_map = {"anger": "anger", "happiness": "joy", "neutral": None, "sadness": "sadness"}
    splits, spec = toy_splits(task), Spec(task)
    report, y, pred, _ = bl.zero_shot(str(folder), splits, spec, 64, 32, name="owner/emotion-classifier",
                                   label_map=label_map)
    assert report["adapter"] == "zero_shot_owner/emotion-classifier" and report["label_map"] == label_map
    # independently: the classifier's own probabilities, summed into the dataset's labels
    net = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = AutoTokenizer.from_pretrained(folder)(splits["test"]["text"].tolist(), padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = net(**enc).logits.softmax(-1).numpy()
    ours = np.stack([probs[:, 1], probs[:, 0], probs[:, 3]], 1)  # joy, anger, sadness
    if task == "single_label":
        expected = np.where(probs.argmax(1) == 2, -1, ours.argmax(1))  # top class "neutral": invalid
        assert np.array_equal(pred, expected)
        assert report["test"]["invalid_rate"] == pytest.approx(np.mean(probs.argmax(1) == 2))
    else:
        assert np.array_equal(pred, (ours >= 0.5).astype(np.float32))
    assert report["params"]["total"] == sum(p.numel() for p in net.parameters())
    with pytest.raises(EmotuneError, match=r"labels \['neutral'\] are not mapped"):
        bl.zero_shot(str(folder), splits, spec, 64, 32, label_map={k: v for k, v in label_map.items() if v})
    with pytest.raises(EmotuneError, match="'hapiness'.*did you mean 'happiness'"):
        bl.zero_shot(str(folder), splits, spec, 64, 32, label_map={**label_map, "hapiness": "joy"})
    with pytest.raises(EmotuneError, match="happiness: 'joyful' is not a label of the dataset.*did you mean 'joy'"):
        bl.zero_shot(str(folder), splits, spec, 64, 32, label_map={**label_map, "happiness": "joyful"})
    with pytest.raises(EmotuneError, match="a classifier with its own labels"):
        bl.zero_shot(str(folder), splits, spec, 64, 32)


def test_zero_shot_params_are_checked(shipped_params):
    shipped_params["baseline"]["zero_shot"]["datasets"] = ["tweet_eval_emotoin"]
    with pytest.raises(EmotuneError, match="baseline.zero_shot.datasets\\[0\\].*did you mean 'tweet_eval_emotion'"):
        parse_params(shipped_params)
    shipped_params["baseline"]["zero_shot"].update(datasets=["emotion"], models=["smolm2"])
    with pytest.raises(EmotuneError, match="baseline.zero_shot.models\\[0\\].*did you mean 'smollm2'"):
        parse_params(shipped_params)
    shipped_params["baseline"]["zero_shot"].update(models=["smollm2"], datasets=["semeval2018_ec"], decode="rank")
    with pytest.raises(EmotuneError, match="\\['semeval2018_ec'\\] are multi-label: use decode: generate"):
        parse_params(shipped_params)
    shipped_params["baseline"]["zero_shot"].update(datasets=["emotion"])
    shipped_params["baseline"]["rnn"]["cell"] = "lstn"
    with pytest.raises(EmotuneError, match="baseline.rnn.cell.*did you mean 'lstm'"):
        parse_params(shipped_params)


def test_leaderboard_rows_carry_each_baselines_cost(tmp_path, shipped_params):
    shipped_params.update(datasets=["emotion"], models=[], adapters=[], large={}, generative={}, reference={})
    shipped_params["baseline"]["zero_shot"].update(datasets=["emotion"], models=["smollm2", "owner/instruct"])
    params = parse_params(shipped_params)
    names = [*BASELINES, zero_shot_name("smollm2"), zero_shot_name("owner/instruct")]
    for i, name in enumerate(names):
        path = tmp_path / "metrics/eval/emotion/baseline" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        test = {"macro_f1": 0.1, "micro_f1": 0.2, **({"invalid_rate": 0.25} if name.startswith("zero") else {})}
        path.write_text(json.dumps({"official_metric": "accuracy", "official": 0.3 + i / 100, "test": test,
                                    "train_examples": 100, "train_time_s": 1.5 + i,
                                    "params": {"trainable": 10 * i, "total": 1000 + i},
                                    "inference": {"batched_examples_per_s": 50.0}}))
    rows = {r["adapter"]: r for r in ag.leaderboard(params, tmp_path)}
    assert set(rows) == set(names)
    assert rows["bilstm"]["train_time_s"] == 5.5 and rows["bilstm"]["trainable_params"] == 40
    assert rows["zero_shot_owner/instruct"]["invalid_rate"] == 0.25
    assert all(r["kind"] == "baseline" and not r["best"] for r in rows.values())
    md = ag.markdown(list(rows.values()), params)
    assert "| baseline | zero_shot_smollm2 |" in md and "| baseline | embed_lr |" in md
    (tmp_path / "metrics/eval/emotion/baseline/zero_shot_smollm2.json").unlink()
    with pytest.raises(EmotuneError, match="baseline_zero_shot@emotion-smollm2"):
        ag.leaderboard(params, tmp_path)
