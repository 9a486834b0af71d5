"""Multi-label that learns: the classifier bias at the label priors, the head's own learning rate, the
warning and leaderboard flag for a run that never beat a constant prediction, and (on the real
SemEval-2018 E-c mirror) a fine-tuned MiniLM run that beats TF-IDF + LR on the same rows."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from toy_runs import LABELS, prepare_run, toy_params

from emotune import adapters as ad
from emotune import aggregate as ag
from emotune import metrics
from emotune import train as train_stage
from emotune.config import AdapterHParams
from emotune.errors import EmotuneError
from emotune.paths import BASELINES


# ---------------------------------------------------------------------------------------------
# Bias at the label priors
# ---------------------------------------------------------------------------------------------
def test_prior_logits_are_the_logits_of_the_label_frequencies():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    expected = [math.log(0.75 / 0.25), math.log(0.25 / 0.75), math.log(1e-3 / (1 - 1e-3))]  # unseen: clipped
    assert ad.label_prior_logits(y) == pytest.approx(expected)


@pytest.mark.parametrize("adapter", ["lora", "head", "full"])
def test_head_bias_starts_at_the_priors_and_the_model_predicts_them(tiny, adapter):
    loaded = ad.load_base(str(tiny("bert")), adapter, LABELS, "multi_label")
    model = ad.apply_adapter(loaded, adapter, AdapterHParams(r=4, alpha=8))
    y = np.array([[1, 0, 0]] * 8 + [[0, 1, 0]] * 2, dtype=np.float32)  # priors 0.8, 0.2, clipped 0.001
    bias = ad.init_head_bias_to_priors(model, loaded.head_modules, y)
    assert bias == pytest.approx(list(ad.label_prior_logits(y)))
    # the layer that produces the logits (peft's trained copy for lora) holds them
    trained = [p for n, p in model.named_parameters() if n.endswith("classifier.bias") or
               n.endswith("classifier.modules_to_save.default.bias")]
    assert trained and all(torch.allclose(p, torch.tensor(bias)) for p in trained)
    assert all(p.requires_grad for p in trained)
    model.eval()
    batch = loaded.tokenizer(["i am so happy today", "sad and lonely night"], return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = torch.sigmoid(model(**batch).logits)
    # a fresh head's weights are small (std 0.02): every row starts near each label's frequency
    assert probs.numpy() == pytest.approx(np.array([[0.8, 0.2, 0.001]] * 2), abs=0.05)


def test_a_head_without_a_matching_output_layer_is_an_error(tiny):
    loaded = ad.load_base(str(tiny("bert")), "head", LABELS, "multi_label")
    with pytest.raises(EmotuneError, match="no Linear layer with 5 outputs"):
        ad.init_head_bias_to_priors(loaded.model, loaded.head_modules, np.zeros((4, 5)))


def test_a_head_without_a_bias_keeps_starting_at_zero(tiny):
    loaded = ad.load_base(str(tiny("llama")), "lora", LABELS, "multi_label")  # score: Linear(bias=False)
    assert ad.init_head_bias_to_priors(loaded.model, loaded.head_modules, np.eye(3)) is None


# ---------------------------------------------------------------------------------------------
# The head's learning rate, as optimizer parameter groups
# ---------------------------------------------------------------------------------------------
def test_param_groups_put_the_head_at_its_own_rate_and_cover_every_trainable_weight(tiny):
    loaded = ad.load_base(str(tiny("bert")), "lora", LABELS, "multi_label")
    model = ad.apply_adapter(loaded, "lora", AdapterHParams(r=4, alpha=8))
    groups = ad.param_groups(model, loaded.head_modules, lr=2e-3, head_lr=1e-2, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each once
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            in_head = "classifier" in name or "pooler" in name
            assert g["lr"] == (1e-2 if in_head else 2e-3), name
            assert g["weight_decay"] == (0.0 if p.dim() < 2 else 0.01), name


def test_trainer_optimizer_has_the_head_groups_and_trainers_optimizer_class(tmp_path, tiny):
    plan, paths = prepare_run(tmp_path, tiny("bert"), "lora", "multi_label", lr=2e-3)
    plan = plan.with_train(head_lr=1e-2)
    args = train_stage.training_arguments(plan, paths, "cpu")
    recipe = train_stage.make_recipe(plan, paths.data, "cpu")
    loaded, model = recipe.build()
    recipe.data(loaded.tokenizer, None, 0)
    trainer = train_stage.make_trainer(recipe, model, args, [], loaded.head_modules, 1e-2)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"]  # optim: auto
    assert sorted({g["lr"] for g in optimizer.param_groups}) == [2e-3, 1e-2]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())
    # the scheduler keeps each group's own rate: warm-up and decay scale both
    scheduler = trainer.create_scheduler(10, optimizer)
    assert sorted(scheduler.base_lrs) == sorted(g["initial_lr"] for g in optimizer.param_groups)


def test_plan_gives_the_head_the_higher_of_the_adapter_lr_and_the_head_default():
    from emotune import plan as plan_stage
    from emotune.adapter_table import DEFAULT_HEAD_LR

    params = toy_params("multi_label")
    model = {"name": "m", "kind": "local", "folder": "/nowhere", "files": {}}
    lora = plan_stage.run_plan(params, params.matrices()[0], "toy", model, "lora").train
    assert (lora.lr, lora.head_lr, lora.head_bias) == (2e-3, DEFAULT_HEAD_LR, "prior")
    params = toy_params("multi_label", lr=0.05)
    assert plan_stage.run_plan(params, params.matrices()[0], "toy", model, "lora").train.head_lr == 0.05
    with pytest.raises(EmotuneError, match="train.head_lr: must be > 0"):
        toy_params("multi_label", head_lr=0.0)


# ---------------------------------------------------------------------------------------------
# A run that learned nothing warns and is flagged
# ---------------------------------------------------------------------------------------------
def test_constant_level_is_the_best_constant_prediction():
    y = np.array([[0, 0], [1, 0], [1, 0]], dtype=np.float32)
    # "no label" scores 1/3 jaccard (the all-zero row), the most common set [1, 0] 2/3
    assert metrics.constant_level(y, True, 2, "jaccard") == pytest.approx(2 / 3)
    assert metrics.constant_level(np.array([0, 1, 1, 1]), False, 2, "accuracy") == pytest.approx(0.75)


def test_collapse_warning_fires_only_when_no_epoch_beats_the_constant_level():
    flat = [{"epoch": 1, "val_jaccard": 0.0158}, {"epoch": 2, "val_jaccard": 0.0158}]
    warning = metrics.collapse_warning(flat, "jaccard", 0.0158)
    assert warning and "never beat a constant prediction (0.0158)" in warning and "0.0158, 0.0158" in warning
    assert metrics.collapse_warning([{"epoch": 1, "val_macro_f1": 0.0}], "macro_f1", 0.0)
    assert metrics.collapse_warning(flat + [{"epoch": 3, "val_jaccard": 0.2}], "jaccard", 0.0158) is None


def test_a_run_that_learns_nothing_warns_and_says_so_in_its_metrics(tmp_path, tiny):
    # learning rates of 1e-9: the head stays at its prior bias, every row gets the same (empty) label set
    plan, paths = prepare_run(tmp_path, tiny("bert"), "lora", "multi_label", lr=1e-9)
    plan = plan.with_train(head_lr=1e-9)
    lines = []
    out = train_stage.train(plan, paths, device="cpu", log=lines.append)
    assert out["summary"]["collapsed"] is True
    assert any(line.startswith("WARNING: validation jaccard never beat a constant prediction") for line in lines)
    assert json.loads(paths.metrics.read_text())["collapsed"] is True


def test_the_same_run_at_working_rates_is_not_flagged(tmp_path, tiny):
    # the 86k-weight tiny BERT needs ~50 steps to leave the constant level (the hand-written loop too):
    # 8 epochs of 10 steps, full fine-tuning (measured: val jaccard 0.0 -> 0.91, constant level 0.41)
    plan, paths = prepare_run(tmp_path, tiny("bert"), "full", "multi_label", lr=5e-3, epochs=8,
                              early_stopping_patience=8)
    lines = []
    out = train_stage.train(plan, paths, device="cpu", log=lines.append)
    assert out["summary"]["best_val"] > out["summary"]["constant_val"] + 0.05
    assert out["summary"]["collapsed"] is False and not any("WARNING" in line for line in lines)


def test_leaderboard_flags_a_collapsed_run(tmp_path):
    from test_evaluate import DATASET, Params, fake_run, write


    for adapter, official in (("lora", 0.22), ("ia3", 0.42)):
        fake_run(tmp_path, "m", adapter, official, 10**4, 60.0)
    train_file = tmp_path / f"metrics/train/{DATASET}/m/lora.json"
    write(train_file, {**json.loads(train_file.read_text()), "collapsed": True})
    for name in BASELINES:
        write(tmp_path / f"metrics/eval/{DATASET}/baseline/{name}.json",
              {"official_metric": "accuracy", "official": 0.3, "test": {"macro_f1": 0.1, "micro_f1": 0.3},
               "train_examples": 100})
    rows = ag.write_leaderboard(Params([(DATASET, "m", "lora"), (DATASET, "m", "ia3")]), tmp_path)
    assert {r["adapter"]: r.get("collapsed") for r in rows if r["kind"] == "run"} == {"lora": True, "ia3": None}
    md = (tmp_path / "metrics/leaderboard.md").read_text()
    assert f"| m | lora {ag.COLLAPSED_MARK} | 0.220 |" in md and "| m | ia3 | **0.420** |" in md


# ---------------------------------------------------------------------------------------------
# Real data: SemEval-2018 E-c from the mirror, MiniLM LoRA vs TF-IDF + LR on the same rows
# ---------------------------------------------------------------------------------------------
SLICE = (400, 200, 300)  # train / validation / test rows: ~1.5 min on 2 shared cores
MARGIN = 0.03  # jaccard over TF-IDF + LR on the same rows (measured: see bench/multilabel.py, docs/training.md)


def test_minilm_lora_beats_tfidf_on_a_real_semeval_slice(mirror, tmp_path):
    from bench import multilabel as bench

    if not bench.mirror_available():
        pytest.skip("the SemEval-2018 E-c files are not in the mirror")
    params, model = bench.prepare(tmp_path, SLICE, epochs=2, max_length=64, threads=None)
    baseline = bench.tfidf(tmp_path, params, params.seed)
    run = bench.run_arm(tmp_path, params, model, "lora", {}, params.seed)  # the shipped defaults
    assert not run["collapsed"] and run["test_labels_per_row_at_0.5"] > 0.5, run
    assert run["test_roc_auc_macro"] > baseline["test_roc_auc_macro"], (run, baseline)
    assert run["test_jaccard_tuned"] >= baseline["test_jaccard_tuned"] + MARGIN, (run, baseline)


# ---------------------------------------------------------------------------------------------
# Thresholds tuned on the dataset's official metric
# ---------------------------------------------------------------------------------------------
def test_thresholds_tuned_on_jaccard_score_at_least_the_per_label_f1_ones():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 6)) < [0.4, 0.3, 0.2, 0.1, 0.05, 0.35]).astype(np.float32)
    probs = np.clip(0.3 * y + rng.random(y.shape) * 0.7, 0, 1)  # weak signal: F1 wants low thresholds

    def jaccard(t):
        return metrics.scores(y, metrics.decide(probs, True, t), True, 6)["jaccard"]

    per_label = metrics.tune_thresholds(y, probs)
    assert metrics.tune_thresholds(y, probs, "macro_f1") == per_label  # F1 is per label: already optimal
    on_jaccard = metrics.tune_thresholds(y, probs, "jaccard")
    assert jaccard(on_jaccard) > jaccard(per_label) + 0.01
    assert jaccard(on_jaccard) >= jaccard([0.5] * 6)
    assert set(on_jaccard) <= {float(t) for t in metrics.THRESHOLD_GRID} | {0.5}
