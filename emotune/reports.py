"""The metrics report of a run or a baseline, written the same way for both: the JSON
(metrics/eval/<dataset>/<model>/<adapter>.json) and the two plot tables beside it (per_class.csv,
confusion.csv). evaluate and the baselines both call `scored` and `write_report`, so a leaderboard row
means the same thing whoever scored it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emotune import metrics
from emotune.atomic import atomic_dir, write_json

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


def write_report(report: dict, y_true: np.ndarray, y_pred: np.ndarray, json_path: Path, plots: Path) -> None:
    """The JSON and the plot files of one evaluated run or baseline, each replaced atomically."""
    labels, multi = report["labels"], report["task"] == "multi_label"
    with atomic_dir(plots) as out:
        per_class = pd.DataFrame([{"class": k, **v} for k, v in report["per_class"].items()])
        per_class.to_csv(out / "per_class.csv", index=False)
        confusion_rows(y_true, y_pred, labels, multi).to_csv(out / "confusion.csv", index=False)
        if multi:
            pd.DataFrame(metrics.label_confusion(y_true, y_pred, labels)).to_csv(out / "label_confusion.csv",
                                                                                 index=False)
    write_json(json_path, report)


def scored(kind: str, dataset: dict, model: str, adapter: str, y_true, y_pred, probs=None, invalid=None,
           thresholds=None, threshold_mode: str = "argmax", extra: dict | None = None) -> dict:
    """The report dict every evaluated row shares (runs and baselines)."""
    report = metrics.classification_report(y_true, y_pred, dataset["labels"], dataset["task"] == "multi_label",
                                           probs, invalid)
    official = dataset["official_metric"]
    return {"kind": kind, "dataset": dataset["name"], "model": model, "adapter": adapter, "task": dataset["task"],
            "labels": dataset["labels"], "official_metric": official, "official": report["test"][official],
            "test_rows": int(len(y_true)), "threshold_mode": threshold_mode, "thresholds": thresholds,
            **report, **(extra or {})}
