"""ONNX export (emotune/onnx_export.py) and the torch-free runtime of exports (emotune/exported.py): every
encoder adapter exports (peft adapters merged), fp32 and int8 predict what the run predicts, the labels, task
and thresholds travel in export.json and the ONNX metadata, the whole-test-split check is in the card, an
export that loses too much is refused with nothing written, and `emotune predict` on an ONNX export gives
the run's output without importing torch. Tiny BERT runs trained on the toy dataset, offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from toy_runs import LABELS
from use_runs import CUE_TEXTS, make_project, train_run

from emotune import onnx_export as ox
from emotune import predict as pr
from emotune import testing
from emotune.errors import EmotuneError
from emotune.exported import load_export
from emotune.runs import resolve_run

ROOT = Path(__file__).resolve().parent.parent  # the checkout
TEXTS = list(CUE_TEXTS.values()) + ["@someone i am not sure what i feel http://x.org but it is a day",
                                    " ".join(["so", "very", "happy"] * 40)]  # longer than max_length 32


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs(adapter, task) -> (root, run name): tiny-BERT toy runs, trained once per module."""
    base = tmp_path_factory.mktemp("onnx")
    bert = testing.save_tiny_model("bert", base / "tiny-bert")
    roots, made = {}, {}

    def get(adapter: str, task: str = "single_label"):
        if task not in roots:
            roots[task] = make_project(base / task, task)
        if (adapter, task) not in made:
            made[adapter, task] = roots[task], train_run(roots[task], bert, adapter, task)
        return made[adapter, task]

    return get


@pytest.mark.parametrize("adapter", ["lora", "dora", "ia3", "head", "full"])
def test_every_encoder_adapter_exports_to_onnx_and_predicts_like_the_run(adapter, runs):
    root, name = runs(adapter)
    run = resolve_run(name, root)
    out = ox.export_onnx(run)
    assert out == root / "exports" / f"{name}-onnx"
    assert {"model.onnx", "tokenizer.json", "export.json", "README.md"} <= {p.name for p in out.iterdir()}
    model = load_export(out)
    assert model.runtime == "onnxruntime"
    expected = pr.predict(run, TEXTS, show_progress=False)
    got = pr.predict_export(model, TEXTS)
    # fp32 ONNX computes what the merged PyTorch model computes (normalisation and tokenizer included)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)
    assert got.predicted == expected.predicted
    check = json.loads((out / "export.json").read_text())["check"]
    assert check["rows"] == 40 and check["label_agreement"] == 1.0 and check["max_abs_prob_diff"] < 1e-5
    assert check["export_metric"] == check["run_metric"] and check["metric_loss_points"] == 0


def test_int8_multi_label_export_carries_labels_task_and_thresholds(runs):
    import onnxruntime as ort

    root, name = runs("lora", "multi_label")
    evaluation = root / "metrics" / "eval" / f"{name}.json"
    evaluation.parent.mkdir(parents=True, exist_ok=True)
    evaluation.write_text(json.dumps({"labels": LABELS, "task": "multi_label", "thresholds": [0.3, 0.6, 0.45],
                                      "official_metric": "jaccard", "official": 0.5, "test": {"jaccard": 0.5}}))
    run = resolve_run(name, root)
    out = ox.export_onnx(run, quantize="int8")
    assert out.name.endswith("lora-onnx-int8")
    info = json.loads((out / "export.json").read_text())
    assert info["labels"] == LABELS and info["task"] == "multi_label" and info["thresholds"] == [0.3, 0.6, 0.45]
    assert info["format"] == "onnx" and info["quantize"] == "int8"
    meta = ort.InferenceSession(str(out / "model.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == LABELS and meta["task"] == "multi_label"
    assert json.loads(meta["thresholds"]) == [0.3, 0.6, 0.45]
    assert json.loads(meta["emotune"])["check"]["rows"] == 40
    # int8 weights: the file is smaller than the float32 export of the same run
    fp32 = ox.export_onnx(run)
    assert (out / "model.onnx").stat().st_size < 0.6 * (fp32 / "model.onnx").stat().st_size
    expected = pr.predict(run, TEXTS, show_progress=False)
    got = pr.predict_export(load_export(out), TEXTS)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=0.02)  # int8 rounding
    chosen = got.probabilities >= np.array([0.3, 0.6, 0.45])
    assert got.predicted == [[LABELS[j] for j in np.flatnonzero(row)] for row in chosen], "the tuned thresholds"
    card = (out / "README.md").read_text()
    check = info["check"]
    assert f"| jaccard lost, points (bound) | {check['metric_loss_points']:.2f} (1.0) |" in card
    assert "onnxruntime" in card and "int8" in card and "on all 40 rows" in card


def test_an_export_that_loses_more_than_the_bound_is_refused_and_nothing_is_written(runs, monkeypatch):
    root, name = runs("full")
    run = resolve_run(name, root)
    real_export = ox.export_graph

    def damaged_graph(model, path, example):  # a real graph whose head is negated: the run's least likely label
        import copy

        import torch

        model = copy.deepcopy(model)  # (a full run's standalone model is the reference model itself)
        with torch.no_grad():
            model.classifier.weight.neg_()
            model.classifier.bias.neg_()
        real_export(model, path, example)

    monkeypatch.setattr(ox, "export_graph", damaged_graph)
    out = root / "exports" / "refused"
    with pytest.raises(EmotuneError, match=r"points lost \(> --max-metric-loss 1.0\).*Nothing was written"):
        ox.export_onnx(run, out)
    assert not out.exists() and not list(out.parent.glob(".refused*")), "no half-written folder"
    # the same damaged graph passes when the user accepts the loss, and its card says what it lost
    ox.export_onnx(run, out, max_metric_loss=100)
    check = json.loads((out / "export.json").read_text())["check"]
    assert check["label_agreement"] < 0.1 and check["metric_loss_points"] > 1 and check["max_metric_loss_points"] == 100


def test_predict_on_an_onnx_export_matches_the_run_without_importing_torch(runs, tmp_path):
    root, name = runs("lora")
    run = resolve_run(name, root)
    out = ox.export_onnx(run, tmp_path / "onnx")
    inputs = tmp_path / "texts.csv"
    inputs.write_text("id,text\n" + "".join(f"{i},\"{t}\"\n" for i, t in enumerate(TEXTS)))
    script = (
        "import sys\n"
        "from emotune.cli import main\n"
        f"sys.argv = ['emotune', 'predict', {str(out)!r}, '--input', {str(inputs)!r}, '--output', "
        f"{str(tmp_path / 'onnx.jsonl')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', 'transformers' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["NO", "TORCH", "False"]
    # the run itself, through the same command and input file
    os.chdir(root)
    try:
        pr.main([name, "--input", str(inputs), "--output", str(tmp_path / "run.jsonl")])
    finally:
        os.chdir(ROOT)
    onnx_rows, run_rows = ([json.loads(line) for line in (tmp_path / f).read_text().splitlines()]
                           for f in ("onnx.jsonl", "run.jsonl"))
    assert [{k: v for k, v in r.items() if k != "probabilities"} for r in onnx_rows] == \
        [{k: v for k, v in r.items() if k != "probabilities"} for r in run_rows]
    for a, b in zip(onnx_rows, run_rows):
        assert list(a["probabilities"]) == list(b["probabilities"]) == LABELS
        np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=2e-6)


def test_export_command_onnx_arguments(runs, capsys, tmp_path):
    from emotune import export as ex

    root, name = runs("lora")
    with pytest.raises(EmotuneError, match="add --format onnx"):
        ex.main([name, "--quantize", "int8"])
    os.chdir(root)
    try:
        ex.main([name, "--format", "onnx", "--quantize", "int8", "--out", str(tmp_path / "q")])
    finally:
        os.chdir(ROOT)
    printed = capsys.readouterr().out
    assert f"export {name} -> {tmp_path / 'q'} (ONNX, int8)" in printed and "40 test rows" in printed


def test_predict_takes_a_transformers_export_the_same_way(runs, tmp_path):
    from emotune import export as ex

    root, name = runs("lora")
    run = resolve_run(name, root)
    predictor = pr.export_predictor(ex.export(run, tmp_path / "transformers"))
    assert predictor.runtime == "transformers" and predictor.labels == LABELS
    got, expected = predictor.predict(TEXTS), pr.predict(run, TEXTS, show_progress=False)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)
    assert got.predicted == expected.predicted


def test_export_best_bench_exports_each_dataset_s_best_run_fp32_and_int8(runs, tmp_path):
    """bench/export_best.py (docs/serving.md's table of the best runs, exported): the leaderboard's best run,
    both formats, each export's check against the run's own PyTorch model on the whole test split."""
    from bench import export_best

    root, name = runs("lora")
    dataset, model, adapter = name.split("/")
    leaderboard = {"rows": [
        {"dataset": dataset, "model": model, "adapter": "head", "kind": "run", "best": False, "official": 0.5},
        {"dataset": dataset, "model": model, "adapter": adapter, "kind": "run", "best": True, "official": 0.9,
         "official_metric": "macro_f1", "official_ci95": {"low": 0.8, "high": 0.95}, "train_examples": 120},
        {"dataset": dataset, "model": "baseline", "adapter": "majority", "kind": "baseline", "official": 0.2}]}
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "leaderboard.json").write_text(json.dumps(leaderboard))
    out = tmp_path / "export_best.json"
    assert export_best.main(["--project", str(root), "--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["tiny"] is True and [r["run"] for r in result["runs"]] == [name]
    fp32, int8 = result["runs"][0]["exports"]
    assert (fp32["quantize"], int8["quantize"]) == (None, "int8")
    assert fp32["label_agreement"] == 1.0 and fp32["onnx"] == fp32["pytorch"] and fp32["rows"] == 40
    assert int8["pytorch"] == fp32["pytorch"] and int8["onnx_bytes"] < fp32["onnx_bytes"]
    assert result["runs"][0]["leaderboard"]["official_ci95"] == {"low": 0.8, "high": 0.95}
    assert not (root / "exports" / f"{name}-onnx-int8").exists()  # the bench's exports are temporary
    from bench import report

    row = report.export_best(result)[2]
    assert row.startswith(f"| {name} (120 rows) | {fp32['metric']} | {fp32['pytorch']:.3f} [0.800, 0.950] | "), row
    assert f"| {int8['label_agreement']:.1%} of 40 |" in row, row
    with pytest.raises(SystemExit, match="no best run for elsewhere"):
        export_best.main(["--project", str(root), "--tiny", "--out", str(out), "--datasets", "elsewhere"])
