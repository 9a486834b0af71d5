"""The metrics report of a run or a baseline, written the same way for both: the JSON
(metrics/eval/<dataset>/<model>/<adapter>.json, each headline metric with its bootstrap interval, e.g.
"accuracy_ci95", emotune/stats.py), the two plot tables beside it (per_class.csv, confusion.csv) and the
per-row predictions (predictions.csv.gz: git-tracked, so two revisions compare row by row). evaluate and
the baselines both call `scored` and `write_report`, so a leaderboard row means the same thing whoever
scored it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emotune import metrics, stats
from emotune.atomic import atomic_dir, write_json
from emotune.paths import PREDICTIONS_FILE

NONE = "(none)"  # the gold/predicted side of a multi-label miss or false alarm in confusion.csv


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], multi_label: bool) -> pd.DataFrame:
    """Rows for DVC's confusion template. Single-label: (gold, predicted) per example, "(invalid)" for an
    unparseable generated answer. Multi-label, per example and label: a hit is (label, label), a missed
    gold label (label, "(none)"), a false alarm ("(none)", label): the diagonal counts true positives, the
    "(none)" column false negatives and the "(none)" row false positives of each label."""
    if not multi_label:
        name = lambda i: labels[i] if i >= 0 else "(invalid)"  # noqa: E731
        return pd.DataFrame({"actual": [labels[i] for i in y_true], "predicted": [name(i) for i in y_pred]})
    pairs = []
    for gold, pred in zip(y_true.astype(bool), y_pred.astype(bool)):
        for j, label in enumerate(labels):
            if gold[j]:
                pairs.append((label, label if pred[j] else NONE))
            elif pred[j]:
                pairs.append((NONE, label))
    return pd.DataFrame(pairs, columns=["actual", "predicted"])


def write_report(report: dict, y_true: np.ndarray, y_pred: np.ndarray, json_path: Path, plots: Path, ids,
                 invalid: np.ndarray | None = None) -> None:
    """The JSON, the plot files and the per-row predictions (test row `ids`, in test order) of one
    evaluated run or baseline, each replaced atomically."""
    labels, multi = report["labels"], report["task"] == "multi_label"
    rows = stats.predictions(ids, y_true, y_pred, len(labels), multi, invalid)
    with atomic_dir(plots) as out:
        (out / PREDICTIONS_FILE).write_bytes(stats.predictions_csv(rows))
        per_class = pd.DataFrame([{"class": k, **v} for k, v in report["per_class"].items()])
        per_class.to_csv(out / "per_class.csv", index=False)
        confusion_rows(y_true, y_pred, labels, multi).to_csv(out / "confusion.csv", index=False)
        if multi:
            pd.DataFrame(metrics.label_confusion(y_true, y_pred, labels)).to_csv(out / "label_confusion.csv",
                                                                                 index=False)
    write_json(json_path, report)


def write_unscored(record: dict, json_path: Path, plots: Path) -> None:
    """A zero-shot pair dvc.yaml runs but the params do not score (emotune/plan.py ZeroShotPlan): its record
    ({"scored": false, "why": ...}) and an empty per-row file, so every output the stage declares exists."""
    empty = stats.predictions([], np.zeros(0), np.zeros(0), 0, False)
    with atomic_dir(plots) as out:
        (out / PREDICTIONS_FILE).write_bytes(stats.predictions_csv(empty))
    write_json(json_path, record)


def scored(kind: str, dataset: dict, model: str, adapter: str, y_true, y_pred, probs=None, invalid=None,
           thresholds=None, threshold_mode: str = "argmax", extra: dict | None = None) -> dict:
    """The report dict every evaluated row shares (runs and baselines): the metrics, each headline metric
    followed by its bootstrap interval ("<metric>_ci95": {"low": .., "high": ..}), and the bootstrap's
    settings."""
    multi = dataset["task"] == "multi_label"
    report = metrics.classification_report(y_true, y_pred, dataset["labels"], multi, probs, invalid)
    official = dataset["official_metric"]
    rows = stats.predictions(range(len(y_true)), y_true, y_pred, len(dataset["labels"]), multi, invalid)
    intervals, bootstrap = stats.interval_fields(rows, official)
    test = {}
    for name, value in report["test"].items():
        test[name] = value
        if stats.interval_key(name) in intervals:
            test[stats.interval_key(name)] = intervals[stats.interval_key(name)]
    return {"kind": kind, "dataset": dataset["name"], "model": model, "adapter": adapter, "task": dataset["task"],
            "labels": dataset["labels"], "official_metric": official, "official": report["test"][official],
            "official_ci95": intervals[stats.interval_key(official)], "bootstrap": bootstrap,
            "test_rows": int(len(y_true)), "threshold_mode": threshold_mode, "thresholds": thresholds,
            **report, "test": test, **(extra or {})}
