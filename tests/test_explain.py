"""explain: token attributions (Captum layer integrated gradients) for test examples of each class, as HTML,
PNG and JSON; the attributions add up to p(text) - p(baseline); 4-bit and multi-label runs; generative
runs refused; the DVC stages stay off the default `dvc repro`. Tiny Llama runs on the toy dataset."""
from __future__ import annotations

import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from toy_runs import LABELS
from use_runs import make_project, train_run

from emotune import explain as xp
from emotune import testing
from emotune.config import load_params
from emotune.errors import EmotuneError
from emotune.runs import resolve_run

ROOT = Path(__file__).resolve().parent.parent  # the checkout

VENV_DVC = ROOT / ".venv" / "bin" / "dvc"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("explain")
    llama = testing.save_tiny_model("llama", base / "tiny-llama")
    root = make_project(base / "single")
    return root, llama, {a: train_run(root, llama, a) for a in ("lora", "qlora")}


def probability(trained, run, ids, label: str) -> float:
    with torch.no_grad():
        logits = trained.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()[0]
    probs = torch.sigmoid(logits) if run.multi_label else torch.softmax(logits, -1)
    return float(probs[run.labels.index(label)])


def test_explain_writes_a_page_and_a_picture_with_attributions_for_each_example(project):
    root, _, runs = project
    run = resolve_run(runs["lora"], root)
    out = xp.explain(run, per_class=2, steps=24)
    assert out == root / "metrics" / "explain" / "toy" / "tiny-llama" / "lora"
    assert sorted(p.name for p in out.iterdir()) == sorted(xp.FILES)
    report = json.loads((out / "attributions.json").read_text())
    examples = report["examples"]
    assert [e["target"] for e in examples] == [label for label in LABELS for _ in range(2)]
    assert len({e["id"] for e in examples}) == 6
    page = (out / "explanations.html").read_text()
    trained = run.load()
    for e in examples:
        assert e["target"] in e["gold"]
        assert len(e["tokens"]) == len(e["attributions"])
        words = [t for t in e["tokens"] if t]
        assert " ".join(words) == e["text"], "every word of the text has its attribution"
        assert max(abs(a) for a in e["attributions"]) > 1e-3
        # Completeness: the attributions add up to p(text) - p(baseline), computed here independently.
        ids = trained.tokenizer(e["text"], return_tensors="pt")["input_ids"]
        special = torch.tensor(trained.tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids[0], torch.tensor(trained.tokenizer.pad_token_id)).unsqueeze(0)
        gap = probability(trained, run, ids, e["target"]) - probability(trained, run, baseline, e["target"])
        assert sum(e["attributions"]) == pytest.approx(gap, abs=0.02)
        assert e["probability"] == pytest.approx(probability(trained, run, ids, e["target"]), abs=1e-5)
        # the page shows it: id, labels, and one coloured span per word carrying its value
        assert html.escape(e["id"]) in page
        for word, value in zip(e["tokens"], e["attributions"]):
            if word:
                assert f'<span title="{value:+.4f}"' in page
    assert page.count("<h2>") == 3

    from matplotlib.image import imread

    picture = imread(out / "attributions.png")
    assert picture.shape[0] > 200 and picture.shape[1] > 600
    assert (picture[..., 0] > picture[..., 2] + 0.2).any() and (picture[..., 2] > picture[..., 0] + 0.2).any(), \
        "red and blue token backgrounds"


def test_same_seed_same_explanations_and_qlora_runs_explain_too(project, tmp_path):
    root, _, runs = project
    run = resolve_run(runs["qlora"], root)
    first = json.loads((xp.explain(run, per_class=1, steps=8, out=tmp_path / "a") / "attributions.json").read_text())
    again = json.loads((xp.explain(run, per_class=1, steps=8, out=tmp_path / "b") / "attributions.json").read_text())
    assert first == again
    assert len(first["examples"]) == 3 and all(abs(sum(e["attributions"])) > 0 for e in first["examples"])
    other = json.loads((xp.explain(run, per_class=1, steps=8, seed=5, out=tmp_path / "c") / "attributions.json")
                       .read_text())
    assert [e["id"] for e in other["examples"]] != [e["id"] for e in first["examples"]]


def test_shap_beside_integrated_gradients_on_one_page(project, tmp_path):
    root, _, runs = project
    run = resolve_run(runs["lora"], root)
    out = xp.explain(run, per_class=1, steps=8, method="both", shap_evals=60, out=tmp_path / "both")
    report = json.loads((out / "attributions.json").read_text())
    examples = report["examples"]
    assert [e["method"] for e in examples] == ["ig"] * 3 + ["shap"] * 3
    assert "LayerIntegratedGradients" in report["method"] and "PartitionExplainer" in report["method"]
    ig, sh = examples[:3], examples[3:]
    assert [e["id"] for e in ig] == [e["id"] for e in sh] and [e["target"] for e in sh] == LABELS
    trained = run.load()
    for e in sh:
        assert [t for t in e["tokens"] if t] == e["text"].split(), "one SHAP value per word of the text"
        ids = trained.tokenizer(e["text"], return_tensors="pt")["input_ids"]
        assert e["probability"] == pytest.approx(probability(trained, run, ids, e["target"]), abs=1e-5)
        # efficiency: the values add up to p(text) - p(every word masked); the masked text scored here
        masked = trained.tokenizer("...", return_tensors="pt")["input_ids"]
        gap = probability(trained, run, ids, e["target"]) - probability(trained, run, masked, e["target"])
        assert sum(e["attributions"]) == pytest.approx(gap, abs=1e-4) and e["delta"] < 1e-4
        assert max(abs(a) for a in e["attributions"]) > 1e-4
    page = (out / "explanations.html").read_text()
    assert page.count('<span class="method">IG</span>') == 3 and page.count('<span class="method">SHAP</span>') == 3
    for e in sh:
        for word, value in zip(e["tokens"], e["attributions"]):
            if word:
                assert f'<span title="{value:+.4f}"' in page
    assert "partition explainer" in page and "integrated gradients" in page
    assert page.count("<h2>") == 3 and page.count('class="ex"') == 3  # one box per example, both lines inside
    only = json.loads((xp.explain(run, per_class=1, method="shap", shap_evals=60, out=tmp_path / "shap")
                       / "attributions.json").read_text())
    assert only["examples"] == sh  # deterministic: no sampling
    with pytest.raises(EmotuneError, match="--method 'shapp' \\(did you mean 'shap'\\?\\)"):
        xp.explain(run, method="shapp")


def test_multi_label_runs_explain_each_labels_sigmoid(tmp_path, project):
    _, llama, _ = project
    root = make_project(tmp_path / "multi", "multi_label")
    run = resolve_run(train_run(root, llama, "lora", "multi_label"), root)
    examples = json.loads((xp.explain(run, per_class=1, steps=8) / "attributions.json").read_text())["examples"]
    assert [e["target"] for e in examples] == LABELS
    trained = run.load()
    for e in examples:
        ids = trained.tokenizer(e["text"], return_tensors="pt")["input_ids"]
        assert e["probability"] == pytest.approx(probability(trained, run, ids, e["target"]), abs=1e-5)


def test_command_and_refusals(project, monkeypatch, capsys, tmp_path):
    root, llama, runs = project
    monkeypatch.chdir(root)
    xp.main([runs["lora"], "--per-class", "1", "--steps", "4", "--out", str(tmp_path / "cli")])
    assert f"explain {runs['lora']}: -> {tmp_path / 'cli' / 'explanations.html'}" in capsys.readouterr().out
    gen = resolve_run(train_run(root, llama, "gen_lora"), root)
    with pytest.raises(EmotuneError, match=r"explain covers classifier runs; a generative run \(gen_lora\)"):
        xp.explain(gen)
    audited = root / "data" / "audited" / "toy"
    shutil.move(audited, tmp_path / "audited")
    try:
        with pytest.raises(EmotuneError, match=r"data/audited/toy/test.parquet: missing; run the pipeline"):
            xp.explain(resolve_run(runs["lora"], root))
    finally:
        shutil.move(tmp_path / "audited", audited)


def test_explain_stages_are_registered_but_off_the_default_pipeline(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "explain", tmp_path / "explain")

    def dvc(*args):
        result = subprocess.run([str(VENV_DVC), *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    dvc("init", "--no-scm", "-q")
    default = dvc("stage", "list")  # what plain `dvc repro` starts from: the top-level dvc.yaml
    assert "train@" in default and "explain" not in default
    listed = [line.split()[0] for line in dvc("stage", "list", "explain/dvc.yaml").splitlines() if line.strip()]
    params = load_params(tmp_path / "params.yaml")
    assert sorted(listed) == sorted(f"explain/dvc.yaml:explain@{d}-{m}-{a}" for d in params.datasets
                                    for m in params.models for a in params.adapters)
    stage = yaml.safe_load((tmp_path / "explain" / "dvc.yaml").read_text())["stages"]["explain"]
    assert stage["wdir"] == ".." and stage["cmd"].startswith("python -m stages.explain ")
    assert [next(iter(p)) for p in stage["plots"]] == [
        "metrics/explain/${item.dataset}/${item.model}/${item.adapter}/attributions.png"]
    assert "models/${item.dataset}/${item.model}/${item.adapter}" in stage["deps"]
