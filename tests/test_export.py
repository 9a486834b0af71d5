"""export: every adapter becomes a standalone folder that plain transformers loads (pipeline
"text-classification") and that predicts what the run predicts; QLoRA's dequantised merge and what the
original-weights merge costs; generative runs export the merged causal LM; the model card. Tiny Llama and
BERT runs trained on the toy dataset, offline."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from toy_runs import LABELS
from use_runs import CUE_LORA_LR, CUE_TEXTS, make_project, train_run

from emotune import export as ex
from emotune import predict as pr
from emotune import testing
from emotune.runs import resolve_run

TEXTS = list(CUE_TEXTS.values()) + ["i am not sure what i feel about work and life but it is a day"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(model_type, adapter, task) -> (root, run name), trained once per module."""
    base = tmp_path_factory.mktemp("export")
    models, roots, made = {}, {}, {}

    def get(model_type: str, adapter: str, task: str = "single_label"):
        if model_type not in models:
            models[model_type] = testing.save_tiny_model(model_type, base / f"tiny-{model_type}")
        if task not in roots:
            roots[task] = make_project(base / task, task)
        key = (model_type, adapter, task)
        if key not in made:
            lr = CUE_LORA_LR if (model_type, adapter) == ("llama", "lora") else None  # its labels are checked
            made[key] = roots[task], train_run(roots[task], models[model_type], adapter, task, lr=lr)
        return made[key]

    return get


def pipeline_probabilities(folder, texts) -> np.ndarray:
    """Probabilities in label order from transformers' own pipeline (no emotune code involved)."""
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    out = clf(texts, truncation=True)
    return np.array([[next(s["score"] for s in row if s["label"] == label) for label in LABELS] for row in out])


@pytest.mark.parametrize("model_type, adapter", [
    ("llama", "lora"), ("llama", "ia3"), ("llama", "full"), ("llama", "head"), ("llama", "qlora"),
    ("llama", "dora"), ("bert", "lora"), ("bert", "qlora")])
def test_export_loads_with_plain_transformers_and_predicts_like_the_run(model_type, adapter, runs):
    root, name = runs(model_type, adapter)
    run = resolve_run(name, root)
    out = ex.export(run)
    assert out == root / "exports" / name
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "export.json"} <= files
    assert not files & {"adapter_model.safetensors", "adapter_config.json", "emotune_model.json", "head.safetensors"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS)}
    assert config["label2id"] == {label: i for i, label in enumerate(LABELS)}
    assert config["problem_type"] == "single_label_classification"
    assert not any(k.startswith("quantization") for k in config)

    expected = pr.predict(run, TEXTS, show_progress=False).probabilities
    got = pipeline_probabilities(out, TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    if model_type == "llama":  # the runs learnt (some of) the cues: the comparison is not between flat outputs
        # (flat is 1/3 per label; the lora run at CUE_LORA_LR names all three cue texts at up to 0.62)
        assert len(set(expected[:3].argmax(1))) >= 2 and expected.max() > 0.6, expected

    check = json.loads((out / "export.json").read_text())["check"]
    assert check["rows"] == 40 and check["label_agreement"] == 1.0 and check["max_abs_prob_diff"] < ex.TOLERANCE
    assert check["run_metric"] == check["export_metric"]


def test_the_export_needs_no_emotune_code(runs, tmp_path):
    root, name = runs("llama", "lora")
    out = ex.export(resolve_run(name, root), tmp_path / "standalone")
    script = (f"import json, sys\nfrom transformers import pipeline\n"
              f"clf = pipeline('text-classification', model={str(out)!r})\n"
              f"print(json.dumps([clf(t)[0]['label'] for t in {list(CUE_TEXTS.values())!r}]))\n"
              f"assert not any(m.split('.')[0] in ('emotune', 'stages') for m in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
                                 "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1]) == list(CUE_TEXTS)


def test_multi_label_export_keeps_sigmoid_scores_and_the_tuned_thresholds(runs):
    root, name = runs("llama", "lora", "multi_label")
    evaluation = root / "metrics" / "eval" / f"{name}.json"
    evaluation.parent.mkdir(parents=True, exist_ok=True)
    evaluation.write_text(json.dumps({"labels": LABELS, "task": "multi_label", "thresholds": [0.3, 0.6, 0.45],
                                      "test": {"jaccard": 0.71, "macro_f1": 0.64}}))
    run = resolve_run(name, root)
    out = ex.export(run)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    np.testing.assert_allclose(pipeline_probabilities(out, TEXTS), pr.predict(run, TEXTS, show_progress=False)
                               .probabilities, atol=1e-4)
    info = json.loads((out / "export.json").read_text())
    assert info["thresholds"] == [0.3, 0.6, 0.45] and info["task"] == "multi_label"
    card = (out / "README.md").read_text()
    assert "| 1 | anger | 0.6 |" in card
    assert '"anger": 0.6' in card, "the usage snippet applies the thresholds"
    assert "| test.jaccard | 0.71 |" in card and "not evaluated yet" not in card


@pytest.mark.parametrize("model_type", ["llama", "bert"])
def test_qlora_dequantised_merge_matches_the_4bit_model_and_the_original_merge_is_measured(model_type, runs,
                                                                                           tmp_path):
    root, name = runs(model_type, "qlora")
    run = resolve_run(name, root)
    checks = {}
    for base in ("dequantized", "original"):
        out = ex.export(run, tmp_path / base, qlora_base=base)
        checks[base] = json.loads((out / "export.json").read_text())["check"]
        assert f"merged into the {'dequantised NF4' if base == 'dequantized' else 'original float32'}" in \
            (out / "README.md").read_text()
    exact, original = checks["dequantized"], checks["original"]
    print(f"\nqlora export vs the 4-bit model on {exact['rows']} toy test rows (tiny {model_type}): dequantized max|dp| "
          f"{exact['max_abs_prob_diff']:.2e}, original max|dp| {original['max_abs_prob_diff']:.2e} mean "
          f"{original['mean_abs_prob_diff']:.2e}, agreement {original['label_agreement']:.3f}, accuracy "
          f"{original['run_metric']:.3f} -> {original['export_metric']:.3f}")
    assert exact["max_abs_prob_diff"] < 1e-5 and exact["label_agreement"] == 1.0
    # NF4 rounding of a random 2-layer model: the original weights give other probabilities
    assert original["max_abs_prob_diff"] > 100 * exact["max_abs_prob_diff"]


@pytest.mark.parametrize("adapter", ["gen_lora", "gen_qlora"])
def test_generative_runs_export_the_merged_causal_lm(adapter, runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, name = runs("llama", adapter)
    run = resolve_run(name, root)
    out = ex.export(run)
    info = json.loads((out / "export.json").read_text())
    assert info["kind"] == "causal_lm" and info["check"]["label_agreement"] == 1.0
    assert not (out / "adapter_model.safetensors").exists()
    # Follow the model card's recipe with plain transformers: the answers are the run's.
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    instruction = info["prompt"]["instruction"]
    card = (out / "README.md").read_text()
    assert json.dumps(instruction) in card and "\\nAnswer:" in card
    answers = []
    for text in TEXTS:
        ids = tok(f"{tok.bos_token or ''}{instruction}\nText: {text}\nAnswer:", add_special_tokens=False,
                  return_tensors="pt")
        generated = model.generate(**ids, do_sample=False, max_new_tokens=info["prompt"]["max_new_tokens"],
                                   pad_token_id=tok.pad_token_id)
        answers.append(tok.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    assert answers == pr.predict(run, TEXTS, show_progress=False).answers


def test_model_card_and_command(runs, monkeypatch, capsys):
    root, name = runs("llama", "lora")
    audit = root / "metrics" / "audit" / "toy.json"
    audit.parent.mkdir(parents=True, exist_ok=True)
    audit.write_text(json.dumps({"model": "both", "action": "report", "issues_found": 12, "issue_rate": 0.05,
                                 "health_score": 0.93, "class_noise_rate": {"joy": 0.02, "anger": 0.11}}))
    monkeypatch.chdir(root)  # the commands find their project from the working directory
    ex.main([name])
    out = capsys.readouterr().out
    assert f"export {name} -> {root / 'exports' / name}" in out and "check: 40 test rows, label agreement 1.000" in out
    card = (root / "exports" / name / "README.md").read_text()
    for section in ("## Use", "## Labels", "## Data", "## Training", "## Metrics", "## Known label noise",
                    "## Limits"):
        assert section in card
    front, body = card.split("\n---\n", 1)
    assert front.startswith("---\n") and "pipeline_tag: text-classification" in front and "- emotune" in front
    assert body.startswith("# toy: tiny-llama + lora (emotune)")
    assert "`train.csv` | `" + "0" * 64 in card  # the raw data's checksum from the run card
    assert "| adapter.r | 4 |" in card and "| train.epochs | 3 |" in card
    assert "not evaluated yet (`metrics/eval/toy/tiny-llama/lora.json` is missing" in card
    assert "flagged 12 train+validation rows" in card and "| anger | 0.11 |" in card
    assert "user mentions -> `@user`" in card, "the card says how to normalise texts"
    assert "Texts are cut at 32 tokens" in card
    tokenizer = json.loads((root / "exports" / name / "tokenizer_config.json").read_text())
    assert tokenizer["model_max_length"] == 32


# ---------------------------------------------------------------------------------------------
# Hub push: everything up to the upload call (no Hub here); HfApi replaced at the boundary
# ---------------------------------------------------------------------------------------------
class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records create_repo / upload_folder and the files the folder
    holds at upload time (name -> bytes)."""

    def __init__(self, fail: Exception | None = None):
        self.calls, self.uploaded, self.fail = [], {}, fail

    @staticmethod
    def real_signature(method: str, kwargs: dict) -> None:
        """The call must bind to the real HfApi method: the stand-in cannot drift from huggingface_hub."""
        import inspect

        from huggingface_hub import HfApi

        inspect.signature(getattr(HfApi, method)).bind(None, **kwargs)

    def create_repo(self, **kwargs):
        self.real_signature("create_repo", kwargs)
        self.calls.append(("create_repo", kwargs))
        if self.fail:
            raise self.fail
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        from pathlib import Path

        self.real_signature("upload_folder", kwargs)
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()


def test_push_to_hub_uploads_the_checked_export_with_its_card(runs, tmp_path):
    root, name = runs("llama", "lora")
    out = ex.export(resolve_run(name, root), tmp_path / "export", check_rows=8)
    api = RecordingHfApi()
    url = ex.push_to_hub(out, "me/toy-emotions", private=True, api=api)
    assert url == "https://huggingface.co/me/toy-emotions/commit/abc"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/toy-emotions", "repo_type": "model", "private": True, "exist_ok": True}
    upload = api.calls[1][1]
    assert upload["repo_id"] == "me/toy-emotions" and upload["repo_type"] == "model"
    assert upload["folder_path"] == str(out) and upload["commit_message"] == f"emotune export of {name}"
    on_disk = {p.name: p.read_bytes() for p in out.iterdir()}
    assert api.uploaded == on_disk  # exactly the exported folder, byte for byte
    assert {"README.md", "export.json", "config.json", "model.safetensors", "tokenizer.json"} <= set(api.uploaded)
    card = api.uploaded["README.md"].decode()
    assert card.startswith("---\n") and "library_name: transformers" in card and "- toy" in card
    # what the Hub would hold loads with plain transformers
    assert pipeline_probabilities(out, TEXTS[:2]).shape == (2, 3)


def test_push_refusals_come_before_the_work(runs, tmp_path, monkeypatch, capsys):
    root, name = runs("llama", "lora")
    monkeypatch.chdir(root)  # the commands find their project from the working directory
    for bad, message in (("toy-emotions", "owner/name"), ("me/toy emotions", "not a valid Hub repository id")):
        with pytest.raises(ex.EmotuneError, match=message):
            ex.main([name, "--out", str(tmp_path / "never"), "--push-to-hub", bad])
    assert not (tmp_path / "never").exists(), "a bad repo id must fail before the export runs"
    with pytest.raises(ex.EmotuneError, match="not an exported model folder"):
        ex.push_to_hub(tmp_path, "me/x", api=RecordingHfApi())
    api = RecordingHfApi()
    monkeypatch.setattr(ex, "hub_api", lambda: api)
    ex.main([name, "--out", str(tmp_path / "cli"), "--check-rows", "8", "--push-to-hub", "me/cli-model"])
    assert "pushed to https://huggingface.co/me/cli-model: https://huggingface.co/me/cli-model/commit/abc" in \
        capsys.readouterr().out
    assert api.calls[0][1]["private"] is False and set(api.uploaded) == {p.name for p in (tmp_path / "cli").iterdir()}
    offline = RecordingHfApi(fail=ConnectionError("offline"))
    with pytest.raises(ex.EmotuneError, match="export is complete on disk; log in"):
        ex.push_to_hub(tmp_path / "cli", "me/cli-model", api=offline)
