"""Metrics for every run and baseline, from one function, so validation during training and every row of
the leaderboard are scored by the same code.

Everything comes from scikit-learn except two things it does not have: the sample-averaged Jaccard
that scores an invalid generated answer as 0 (`jaccard_samples`) and the expected
calibration error (15 equal-width confidence bins, the usual definition).
"""
from __future__ import annotations

import numpy as np

ECE_BINS = 15
THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def jaccard_samples(y_true: np.ndarray, y_pred: np.ndarray, invalid: np.ndarray | None = None) -> float:
    """Mean per-example |true & pred| / |true | pred| (SemEval-2018 E-c's "accuracy"); a row with no
    gold and no predicted label is a perfect match, an invalid generated answer scores 0. Without
    invalid rows this is sklearn's jaccard_score(average="samples", zero_division=1), which cannot score
    single rows as 0."""
    inter = (y_true.astype(bool) & y_pred.astype(bool)).sum(1)
    union = (y_true.astype(bool) | y_pred.astype(bool)).sum(1)
    per_row = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    if invalid is not None:
        per_row = np.where(invalid, 0.0, per_row)
    return float(per_row.mean()) if len(per_row) else 0.0


def scores(y_true: np.ndarray, y_pred: np.ndarray, multi_label: bool, n_classes: int,
           invalid: np.ndarray | None = None) -> dict[str, float]:
    """Every metric a dataset may name as official. Single-label predictions are class ids (-1 for an
    invalid generated answer: it matches no class, so it is simply wrong); multi-label ones are 0/1
    rows (an invalid answer predicts nothing and jaccard scores it 0)."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    classes = list(range(n_classes))
    common = dict(labels=classes, zero_division=0)
    out = {}
    if multi_label:
        exact = np.all(y_true == y_pred, axis=1)
        if invalid is not None:
            exact &= ~invalid
        out["accuracy"] = float(exact.mean()) if len(exact) else 0.0  # exact match of the label set
        out["jaccard"] = jaccard_samples(y_true, y_pred, invalid)
    else:
        out["accuracy"] = float(accuracy_score(y_true, y_pred))
    out["macro_f1"] = float(f1_score(y_true, y_pred, average="macro", **common))
    out["micro_f1"] = float(f1_score(y_true, y_pred, average="micro", **common))
    out["weighted_f1"] = float(f1_score(y_true, y_pred, average="weighted", **common))
    out["macro_recall"] = float(recall_score(y_true, y_pred, average="macro", **common))
    return out


def majority_rate(y: np.ndarray, multi_label: bool) -> float | None:
    """Accuracy of always predicting the most common class (single-label baseline; None otherwise, since
    NaN is not valid JSON)."""
    if multi_label or not len(y):
        return None
    return float(np.bincount(y).max() / len(y))


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Softmax over the classes (single-label) or one sigmoid per label (multi-label)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, metric: str | None = None) -> list[float]:
    """Per-label thresholds chosen on the rows given (validation only: the caller never passes test rows).

    Each label's own best F1 first (ties go to the threshold closest to 0.5, so a label the model cannot
    separate keeps the neutral threshold). That is exactly right for macro F1 and wrong for a metric over
    the whole label set: per-label F1 favours low thresholds, many labels per row, and on SemEval-2018 E-c
    it cost test jaccard (bench/multilabel.py). So for any other `metric` (jaccard, micro_f1, ...), start
    from the better of those thresholds and 0.5 everywhere, then improve one label's threshold at a time
    on `metric` itself (coordinate ascent over THRESHOLD_GRID, until a pass changes nothing)."""
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true)
    out = []
    for j in range(y_true.shape[1]):
        best = max(THRESHOLD_GRID, key=lambda t: (f1_score(y_true[:, j], probs[:, j] >= t, zero_division=0),
                                                  -abs(t - 0.5)))
        out.append(float(best))
    if metric is None or metric == "macro_f1":
        return out

    def value(thresholds) -> float:
        return scores(y_true, (probs >= np.asarray(thresholds)).astype(np.float32), True, y_true.shape[1])[metric]

    current = max([out, [0.5] * y_true.shape[1]], key=value)
    best_value = value(current)
    for _ in range(5):  # converges in 2-3 passes
        changed = False
        for j in range(y_true.shape[1]):
            for t in THRESHOLD_GRID:
                trial = current[:j] + [float(t)] + current[j + 1:]
                v = value(trial)
                if v > best_value + 1e-12:
                    current, best_value, changed = trial, v, True
        if not changed:
            break
    return current


def decide(probs: np.ndarray, multi_label: bool, thresholds: list[float] | None) -> np.ndarray:
    """Predictions from probabilities: argmax, or one threshold per label."""
    if not multi_label:
        return probs.argmax(1)
    return (probs >= np.asarray(thresholds if thresholds is not None else [0.5] * probs.shape[1])).astype(np.float32)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum_b |B|/n * |accuracy(B) - mean confidence(B)| over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if not len(confidence):
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def calibration(y_true: np.ndarray, probs: np.ndarray, multi_label: bool) -> float:
    """Single-label: top-label ECE. Multi-label: every (row, label) probability is a binary forecast."""
    if multi_label:
        return expected_calibration_error(probs.ravel(), y_true.ravel())
    return expected_calibration_error(probs.max(1), probs.argmax(1) == y_true)


def roc_auc_macro(y_true: np.ndarray, probs: np.ndarray, multi_label: bool) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes that occur in y_true with both outcomes (AUC is
    undefined for a class with no positive, or no negative, row); None when no class qualifies."""
    from sklearn.metrics import roc_auc_score

    onehot = y_true if multi_label else np.eye(probs.shape[1])[y_true]
    usable = [j for j in range(probs.shape[1]) if 0 < onehot[:, j].sum() < len(onehot)]
    if not usable:
        return None
    return float(roc_auc_score(onehot[:, usable], probs[:, usable], average="macro"))


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], multi_label: bool,
                          probs: np.ndarray | None = None, invalid: np.ndarray | None = None) -> dict:
    """Summary metrics, per-class precision/recall/F1/support, and (when probabilities exist; generated
    answers have none) macro ROC-AUC and ECE."""
    from sklearn.metrics import precision_recall_fscore_support

    classes = list(range(len(labels)))
    out = scores(y_true, y_pred, multi_label, len(labels), invalid)
    for average in ("macro", "micro"):
        p, r, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=average,
                                                     zero_division=0)
        out[f"{average}_precision"], out[f"{average}_recall"] = float(p), float(r)
    if probs is not None:
        out["roc_auc_macro"] = roc_auc_macro(y_true, probs, multi_label)
        out["ece"] = calibration(y_true, probs, multi_label)
    if invalid is not None:
        out["invalid_rate"] = float(np.mean(invalid)) if len(invalid) else 0.0
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=None, zero_division=0)
    per_class = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, name in enumerate(labels)}
    return {"test": out, "per_class": per_class}


def label_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> list[dict]:
    """Multi-label: per label, how many rows are true/false positives/negatives (sklearn's
    multilabel_confusion_matrix, flattened for a table and a plot)."""
    from sklearn.metrics import multilabel_confusion_matrix

    matrices = multilabel_confusion_matrix(y_true, y_pred, labels=list(range(len(labels))))
    return [{"label": name, "tp": int(m[1, 1]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tn": int(m[0, 0])}
            for name, m in zip(labels, matrices)]


def constant_level(y_true: np.ndarray, multi_label: bool, n_classes: int, metric: str) -> float:
    """`metric` of the best constant prediction on these rows: the majority class, or for multi-label the
    better of "no label" and the most common label set. A model at or below it has learned nothing."""
    y_true = np.asarray(y_true)
    if not len(y_true):
        return 0.0
    if multi_label:
        patterns, counts = np.unique(y_true, axis=0, return_counts=True)
        candidates = [np.zeros(y_true.shape[1]), patterns[counts.argmax()]]
    else:
        candidates = [np.bincount(y_true, minlength=n_classes).argmax()]
    return max(scores(y_true, np.broadcast_to(np.asarray(c, dtype=y_true.dtype), y_true.shape), multi_label,
                      n_classes)[metric] for c in candidates)


def collapsed(history: list[dict], metric: str, level: float, tol: float = 1e-9) -> bool:
    """True when the validation `metric` was 0 or at most `level` (constant_level) in every epoch."""
    values = [entry[f"val_{metric}"] for entry in history]
    return bool(values) and all(v <= max(level, 0.0) + tol for v in values)


def collapse_warning(history: list[dict], metric: str, level: float) -> str | None:
    """The warning a run that never beat a constant prediction prints (None when it did)."""
    if not collapsed(history, metric, level):
        return None
    values = ", ".join(f"{entry[f'val_{metric}']:.4f}" for entry in history)
    return (f"WARNING: validation {metric} never beat a constant prediction ({level:.4f}) in any epoch "
            f"({values}): the model learned nothing. Check the labels, train.lr / train.head_lr, "
            f"train.epochs and train.max_train_examples (docs/training.md)")
