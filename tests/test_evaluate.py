"""evaluate / baseline / aggregate: the metric code against scikit-learn and hand-checkable cases,
thresholds tuned on validation only, evaluating reloaded tiny runs of both task types and the
generative recipe, baselines on the same rows, and the leaderboard (best row, deltas, Pareto front)."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from toy_runs import DATASET, LABELS, prepare_run, toy_frame

from emotune import aggregate as ag
from emotune import baseline as bl
from emotune import evaluate as ev
from emotune import metrics, reports, testing
from emotune import train as tr
from emotune.config import Reference
from emotune.errors import EmotuneError
from emotune.paths import BASELINES, eval_paths
from emotune.rows import load_rows

QUIET = lambda message: None  # noqa: E731


def ev_tokenizer(paths):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(paths.model, local_files_only=True)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
def test_scores_count_invalid_answers_as_wrong():
    y = np.array([0, 1, 2, 1])
    s = metrics.scores(y, np.array([0, 1, -1, 1]), False, 3, np.array([False, False, True, False]))
    assert s["accuracy"] == 0.75 and s["macro_recall"] == pytest.approx((1 + 1 + 0) / 3)
    y = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    p = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert metrics.jaccard_samples(y, p) == pytest.approx((1 + 1 + 0) / 3)  # empty vs empty is a match
    assert metrics.jaccard_samples(y, p, np.array([False, True, False])) == pytest.approx(1 / 3)
    assert metrics.scores(y, p, True, 3, np.array([False, True, False]))["accuracy"] == pytest.approx(1 / 3)
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 2, (50, 4)), rng.integers(0, 2, (50, 4))
    assert metrics.jaccard_samples(gold, pred) == pytest.approx(jaccard_score(gold, pred, average="samples",
                                                                         zero_division=1))


def test_report_matches_scikit_learn_and_counts_support():
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + np.eye(3)[y] * 1.5
    probs = metrics.probabilities(logits, False)
    pred = probs.argmax(1)
    report = metrics.classification_report(y, pred, LABELS, False, probs)
    test = report["test"]
    assert test["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert test["macro_precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert test["micro_recall"] == pytest.approx(recall_score(y, pred, average="micro"))
    assert test["roc_auc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert [report["per_class"][c]["support"] for c in LABELS] == list(np.bincount(y, minlength=3))
    assert report["per_class"]["joy"]["f1"] == pytest.approx(f1_score(y, pred, average=None)[0])


def test_ece_of_calibrated_and_overconfident_forecasts():
    # 1000 forecasts at 0.8 of which 80% are right: calibrated. At 0.99 with 50% right: off by 0.49.
    correct = np.r_[np.ones(800), np.zeros(200)]
    assert metrics.expected_calibration_error(np.full(1000, 0.8), correct) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(np.full(1000, 0.99), np.arange(1000) % 2) \
        == pytest.approx(0.49)


def test_roc_auc_skips_classes_without_both_outcomes():
    y = np.array([0, 0, 1, 1])  # class 2 never occurs in y: its AUC is undefined
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    assert metrics.roc_auc_macro(y, probs, False) == pytest.approx(1.0)
    assert metrics.roc_auc_macro(np.zeros((3, 2)), np.full((3, 2), 0.5), True) is None


def test_tuned_thresholds_find_each_labels_best_cut():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 2)) < 0.3).astype(np.float32)
    # label 0: positives score ~0.35, negatives ~0.1 (a 0.5 cut finds none); label 1: well separated at 0.5
    probs = np.c_[np.where(y[:, 0] == 1, 0.35, 0.1), np.where(y[:, 1] == 1, 0.8, 0.2)] + rng.normal(0, 0.02, (400, 2))
    thresholds = metrics.tune_thresholds(y, probs)
    assert 0.1 < thresholds[0] <= 0.35 and 0.2 < thresholds[1] <= 0.8
    tuned = metrics.decide(probs, True, thresholds)
    fixed = metrics.decide(probs, True, None)
    assert (tuned == y).mean() == 1.0 and (fixed[:, 0] == 0).all()


def test_confusion_rows_for_multi_label_put_misses_and_false_alarms_on_none():
    y = np.array([[1, 0, 1], [0, 0, 0]], dtype=np.float32)
    pred = np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32)
    rows = reports.confusion_rows(y, pred, LABELS, True)
    assert sorted(map(tuple, rows.to_numpy())) == sorted([("joy", "joy"), (reports.NONE, "anger"), ("sadness", reports.NONE),
                                                          (reports.NONE, "sadness")])


# ---------------------------------------------------------------------------------------------
# evaluate: a reloaded tiny run
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {t: testing.save_tiny_model(t, root / f"tiny-{t}") for t in ("bert", "llama")}


@pytest.mark.parametrize("task, threshold", [("single_label", "tuned"), ("multi_label", "tuned"),
                                             ("multi_label", 0.5)])
def test_evaluate_a_reloaded_run(task, threshold, tiny, tmp_path):
    plan, paths = prepare_run(tmp_path, tiny["bert"], "lora", task, lr=1e-2)
    trained = tr.train(plan, paths, log=QUIET)
    name = paths.model.parent.name
    report = ev.evaluate_run(DATASET, name, "lora", threshold, samples=5, root=tmp_path)

    json_path, plots = eval_paths(DATASET, name, "lora", tmp_path)
    assert json.loads(json_path.read_text()) == report
    test_rows = len(pd.read_parquet(paths.data / "test.parquet"))
    assert report["test_rows"] == test_rows
    assert report["official_metric"] == plan.dataset.official_metric
    assert report["official"] == report["test"][report["official_metric"]]
    assert 0 <= report["test"]["ece"] <= 1 and 0 <= report["test"]["roc_auc_macro"] <= 1
    # The reloaded model predicts test exactly as the model that just trained does
    recipe = tr.ClassifierRecipe(plan, paths.data, "cpu")
    split = tr.ClassificationBatches(load_rows(paths.data, "test"), ev_tokenizer(paths), task == "multi_label")
    probs = metrics.probabilities(recipe.predict(trained["model"], split, 64, contextlib.nullcontext)["logits"],
                                  task == "multi_label")
    expected = metrics.decide(probs, task == "multi_label", report["thresholds"])
    assert report["test"]["accuracy"] == pytest.approx(metrics.scores(split.targets, expected, task == "multi_label", 3)["accuracy"])
    cost = report["inference"]
    assert cost["batched_examples_per_s"] > 0 and cost["latency_samples"] == 5
    assert cost["latency_ms_p95"] >= cost["latency_ms_p50"] > 0
    per_class = pd.read_csv(plots / "per_class.csv")
    assert list(per_class["class"]) == LABELS and per_class["support"].sum() >= test_rows * (task == "single_label")
    confusion = pd.read_csv(plots / "confusion.csv")
    if task == "single_label":
        assert report["thresholds"] is None and len(confusion) == test_rows
        # same model, reloaded: its test accuracy is what its predictions give
        assert (confusion["actual"] == confusion["predicted"]).mean() == pytest.approx(report["test"]["accuracy"])
    else:
        assert len(report["thresholds"]) == len(LABELS)
        if threshold == 0.5:
            assert report["thresholds"] == [0.5] * 3 and report["threshold_mode"] == "fixed 0.5"
        else:
            assert report["threshold_mode"] == "tuned"
        table = pd.read_csv(plots / "label_confusion.csv")
        assert (table[["tp", "fp", "fn", "tn"]].sum(1) == test_rows).all()
        assert all(0.05 <= t <= 0.95 for t in report["thresholds"])


def test_evaluate_a_generative_run_counts_invalid_answers(tiny, tmp_path):
    plan, paths = prepare_run(tmp_path, tiny["llama"], "gen_lora", lr=2e-2, epochs=3, batch_size=8)
    tr.train(plan, paths, log=QUIET)
    report = ev.evaluate_run(DATASET, paths.model.parent.name, "gen_lora", "tuned", samples=2, root=tmp_path)
    assert report["threshold_mode"] == "generated" and report["thresholds"] is None
    assert 0 <= report["test"]["invalid_rate"] <= 1
    assert "ece" not in report["test"] and "roc_auc_macro" not in report["test"]  # no probabilities
    confusion = pd.read_csv(eval_paths(DATASET, paths.model.parent.name, "gen_lora", tmp_path)[1] / "confusion.csv")
    assert (confusion["predicted"] == "(invalid)").mean() == pytest.approx(report["test"]["invalid_rate"])


def test_evaluate_names_the_missing_run(tmp_path):
    with pytest.raises(EmotuneError, match=r"run\.json: missing; train the run first .*train@toy-m-lora"):
        ev.evaluate_run("toy", "m", "lora", "tuned", 1, root=tmp_path)


# ---------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------
class Spec:
    def __init__(self, task):
        self.name, self.task, self.labels = DATASET, task, LABELS
        self.multi_label = task == "multi_label"
        self.official_metric = "accuracy" if task == "single_label" else "jaccard"


@pytest.mark.parametrize("task", ["single_label", "multi_label"])
def test_tfidf_beats_majority_on_the_same_rows(task):
    splits = {s: toy_frame(n, task, k, s) for k, (s, n) in enumerate([("train", 300), ("validation", 80), ("test", 120)])}
    spec = Spec(task)
    majority, _, _ = bl.run_baseline("majority", splits, spec, 100, 7, "tuned")
    tfidf, y, pred = bl.run_baseline("tfidf_lr", splits, spec, 100, 7, "tuned")
    everything, _, _ = bl.run_baseline("tfidf_lr_all", splits, spec, 100, 7, "tuned")
    assert tfidf["train_examples"] == 100 and everything["train_examples"] == 300
    assert tfidf["official"] > majority["official"] + 0.2, (tfidf["test"], majority["test"])
    assert tfidf["kind"] == "baseline" and tfidf["test_rows"] == 120
    if task == "single_label":
        share = np.bincount(y, minlength=3).max() / len(y)
        assert majority["official"] <= share + 1e-9
    else:
        assert len(tfidf["thresholds"]) == 3 and majority["thresholds"] == [0.5] * 3


# ---------------------------------------------------------------------------------------------
# aggregate
# ---------------------------------------------------------------------------------------------
def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def fake_run(root, model, adapter, official, trainable, seconds):
    test = {"accuracy": official, "macro_f1": official - 0.1, "micro_f1": official}
    write(root / f"metrics/eval/{DATASET}/{model}/{adapter}.json",
          {"official_metric": "accuracy", "official": official, "test": test,
           "inference": {"batched_examples_per_s": 100.0, "latency_ms_p50": 5.0}})
    write(root / f"metrics/train/{DATASET}/{model}/{adapter}.json",
          {"params": {"trainable": trainable, "total": 10**6}, "adapter_bytes": 2**20, "train_time_s": seconds,
           "train_examples": 100, "train_examples_per_s": 10.0, "peak_memory_mb": 500.0})


class Params:
    def __init__(self, runs):
        from emotune.config import BaselineConfig

        self._runs, self.datasets = runs, [DATASET]
        self.seed, self.seeds = 42, []  # one seed: the leaderboard says it cannot tell methods apart
        self.baseline = BaselineConfig()  # no zero-shot rows

    def matrices(self):
        return [type("M", (), {"runs": lambda _: self._runs})()]

    def zero_shot_datasets(self):
        return []

    def dataset(self, name):
        return type("S", (), {"reference": Reference(0.9, "accuracy", "a paper")})()


def test_leaderboard_marks_the_best_run_and_the_deltas(tmp_path):
    runs = [(DATASET, "m", "full", 0.80, 10**6, 100.0), (DATASET, "m", "lora", 0.82, 10**4, 60.0),
            (DATASET, "m", "head", 0.60, 10**3, 10.0)]
    for _, model, adapter, *rest in runs:
        fake_run(tmp_path, model, adapter, *rest)
    for name, value in zip(BASELINES, (0.35, 0.70, 0.85, 0.75, 0.5)):
        write(tmp_path / f"metrics/eval/{DATASET}/baseline/{name}.json",
              {"official_metric": "accuracy", "official": value, "test": {"macro_f1": 0.1, "micro_f1": value},
               "train_examples": 100})
    params = Params([r[:3] for r in runs])
    rows = ag.write_leaderboard(params, tmp_path)
    best = [r for r in rows if r["best"]]
    assert [(r["adapter"], r["official"]) for r in best] == [("lora", 0.82)]  # a baseline is never "best run"
    lora = next(r for r in rows if r["adapter"] == "lora")
    assert lora["vs_tfidf_lr"] == pytest.approx(0.12) and lora["vs_reference"] == pytest.approx(-0.08)
    assert lora["adapter_mb"] == 1.0 and lora["trainable_params"] == 10**4
    md = (tmp_path / "metrics/leaderboard.md").read_text()
    assert "| m | lora | **0.820** |" in md and "Reference: accuracy 0.9 (a paper)" in md
    assert json.loads((tmp_path / "metrics/leaderboard.json").read_text())["rows"] == rows
    assert (tmp_path / f"metrics/pareto/{DATASET}.png").stat().st_size > 1000
    assert len(pd.read_csv(tmp_path / "metrics/leaderboard.csv")) == 3 + len(BASELINES)


def test_pareto_front_and_missing_inputs(tmp_path):
    # (cost, metric): (1, .6) and (10, .82) are undominated; (100, .8) is beaten by (10, .82)
    assert ag.pareto_front([(100, 0.8), (10, 0.82), (1, 0.6)]) == [2, 1]
    with pytest.raises(EmotuneError, match=r"metrics/eval/toy/m/lora\.json: missing; run `dvc repro`"):
        ag.leaderboard(Params([(DATASET, "m", "lora")]), tmp_path)


def test_a_run_on_all_rows_is_compared_with_tfidf_on_all_rows(tmp_path):
    fake_run(tmp_path, "m", "lora", 0.70, 10**4, 60.0)  # 100 rows, as tfidf_lr
    fake_run(tmp_path, "m", "full", 0.90, 10**6, 600.0)
    train_file = tmp_path / f"metrics/train/{DATASET}/m/full.json"
    write(train_file, {**json.loads(train_file.read_text()), "train_examples": 16000, "epochs_run": 3})
    for name, value, rows in (("tfidf_lr", 0.60, 100), ("tfidf_lr_all", 0.85, 16000)):
        write(tmp_path / f"metrics/eval/{DATASET}/baseline/{name}.json",
              {"official_metric": "accuracy", "official": value, "test": {"macro_f1": 0.1, "micro_f1": value},
               "train_examples": rows})
    for name in set(BASELINES) - {"tfidf_lr", "tfidf_lr_all"}:
        write(tmp_path / f"metrics/eval/{DATASET}/baseline/{name}.json",
              {"official_metric": "accuracy", "official": 0.3, "test": {"macro_f1": 0.1, "micro_f1": 0.3},
               "train_examples": 100})
    rows = {r["adapter"]: r for r in ag.write_leaderboard(Params([(DATASET, "m", "lora"), (DATASET, "m", "full")]),
                                                          tmp_path)}
    assert (rows["full"]["vs_tfidf_lr"], rows["full"]["vs_tfidf_rows"]) == (pytest.approx(0.05), 16000)
    assert (rows["lora"]["vs_tfidf_lr"], rows["lora"]["vs_tfidf_rows"]) == (pytest.approx(0.10), 100)
    md = (tmp_path / "metrics/leaderboard.md").read_text()
    assert "| m | full | **0.900** | 0.800 | 0.900 | 16,000 | 3 | 0.050 |" in md
