"""Row-level statistics: how much of a test metric, or of a difference between two runs, is test-sampling
noise (docs/noise.md). The one place for it: evaluate and the baselines write each headline metric's
interval with `bootstrap_intervals`, the leaderboard and the pull-request report compare two runs on the
same test rows with `paired_difference`.

What it covers: the test set is a sample of the texts the model will meet; another sample of the same
size would give another number. A bootstrap interval is the spread of the metric over test sets drawn
from this one with replacement (whole rows: a multi-label row keeps all its labels). It says nothing about
training noise (another seed, another training sample): that is the method-level question, answered over
seeds.

How: the percentile bootstrap, vectorised. Each resample is a vector of per-row counts (how often each row
was drawn); every metric of emotune/metrics.py `scores` is a function of sums over rows (correct rows,
per-class true/predicted/true-positive counts, per-row Jaccard), so one matrix product (resamples x rows)
@ (rows x sums) scores all resamples at once. 2,000 resamples of 5,000 rows take well under a second on one
core (bench/bootstrap_speed.py, metrics/bench/bootstrap_speed.json). scipy.stats.bootstrap does the same
for a statistic of 1-D samples; a metric over (gold, prediction) rows of several columns would have to be
rebuilt per resample from row indices, which is what the count matrix does in one product. Decisions are
fixed (tuned thresholds are not re-tuned per resample): the interval is about the test rows, not the
threshold search. `check_against_metrics` pins these sums to metrics.scores itself.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from emotune.errors import EmotuneError

RESAMPLES = 2000  # the interval's ends then move by ~0.0005 (sd over bootstrap seeds; 2,000 rows at 0.79 accuracy)
BOOTSTRAP_SEED = 0  # fixed, so an interval is a property of the predictions alone and reruns write the same file
CONFIDENCE = 0.95
CHUNK = 250  # resamples scored per matrix product: 250 x 5,000 counts is 10 MB of float64

BETTER, WORSE, WITHIN_NOISE = "better", "worse", "within noise"
HEADLINE = ("macro_f1", "micro_f1")  # reported with every official metric
METRICS = ("accuracy", "jaccard", "macro_f1", "micro_f1", "weighted_f1", "macro_recall")


def headline_metrics(official: str) -> list[str]:
    """The metrics that carry an interval: the official one, macro F1, micro F1 (once each)."""
    return list(dict.fromkeys([official, *HEADLINE]))


def interval_key(metric: str) -> str:
    """The JSON key of a metric's interval, written next to the metric: accuracy -> accuracy_ci95."""
    return f"{metric}_ci95"


def ends(interval) -> tuple[float, float] | None:
    """(low, high) of an interval as the JSON files hold it, {"low": .., "high": ..} (a mapping, not a
    list, so that `dvc metrics show/diff` and `dvc exp show` list its two ends: DVC drops lists); None
    stays None (a report written before intervals existed)."""
    if interval is None:
        return None
    if isinstance(interval, dict):
        return float(interval["low"]), float(interval["high"])
    low, high = interval
    return float(low), float(high)


def as_json(low: float, high: float, digits: int = 4) -> dict[str, float]:
    return {"low": round(float(low), digits), "high": round(float(high), digits)}


# ---------------------------------------------------------------------------------------------
# Per-row predictions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Predictions:
    """One run's decisions on one test set, row by row in test order. Single-label: class ids (-1 for an
    invalid generated answer); multi-label: 0/1 rows, `invalid` marking answers that named no label
    (they predict nothing, and metrics.scores counts them as 0 for accuracy and jaccard)."""

    ids: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    n_classes: int
    multi_label: bool
    invalid: np.ndarray | None = None

    def __post_init__(self):
        if not (len(self.ids) == len(self.y_true) == len(self.y_pred)):
            raise EmotuneError(f"predictions: {len(self.ids)} ids, {len(self.y_true)} gold and "
                               f"{len(self.y_pred)} predicted rows; they must be the same rows")

    def __len__(self) -> int:
        return len(self.ids)


def predictions(ids, y_true, y_pred, n_classes: int, multi_label: bool, invalid=None) -> Predictions:
    """Predictions from whatever arrays a stage has (lists, pandas Series, float multi-hot rows)."""
    dtype = np.int8 if multi_label else np.int64
    invalid = None if invalid is None or not np.any(invalid) else np.asarray(invalid, dtype=bool)
    return Predictions(np.asarray([str(i) for i in ids], dtype=object), np.asarray(y_true).astype(dtype),
                       np.asarray(y_pred).astype(dtype), int(n_classes), bool(multi_label), invalid)


def _bits(rows: np.ndarray) -> list[str]:
    return ["".join("1" if v else "0" for v in row) for row in rows]


def predictions_csv(pred: Predictions) -> bytes:
    """The git-tracked per-row file (gzip of a CSV: id, true, pred[, invalid]); labels as class ids, or as
    one 0/1 character per label for multi-label. mtime 0 and no file name in the gzip header, so the same
    predictions give the same bytes (git sees no change when nothing changed). Measured on synthetic rows:
    2,000 single-label rows ~6 KB, 3,259 rows of 11 labels (SemEval-2018 E-c's test set) ~21 KB."""
    import pandas as pd

    if pred.multi_label:
        table = {"id": pred.ids, "true": _bits(pred.y_true), "pred": _bits(pred.y_pred)}
    else:
        table = {"id": pred.ids, "true": pred.y_true, "pred": pred.y_pred}
    if pred.invalid is not None:
        table["invalid"] = pred.invalid.astype(int)
    text = pd.DataFrame(table).to_csv(index=False, lineterminator="\n")
    return gzip.compress(text.encode("utf-8"), mtime=0)


def read_predictions(data: bytes, n_classes: int, multi_label: bool, where: str = "predictions") -> Predictions:
    """Predictions from predictions_csv's bytes (a file, or `git show <rev>:<path>`)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(gzip.decompress(data)), dtype={"id": str, "true": str, "pred": str})
    except (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise EmotuneError(f"{where}: not a predictions file ({exc}); rerun the evaluate or baseline stage") from exc
    missing = {"id", "true", "pred"} - set(frame.columns)
    if missing:
        raise EmotuneError(f"{where}: columns {sorted(missing)} missing; rerun the evaluate or baseline stage")

    def parse(column: pd.Series) -> np.ndarray:
        if not multi_label:
            return column.astype(np.int64).to_numpy()
        rows = np.array([[c == "1" for c in s] for s in column.fillna("")], dtype=np.int8)
        if rows.ndim != 2 or rows.shape[1] != n_classes:
            raise EmotuneError(f"{where}: expected {n_classes} labels per row")
        return rows

    invalid = frame["invalid"].to_numpy().astype(bool) if "invalid" in frame else None
    return predictions(frame["id"].to_numpy(), parse(frame["true"]), parse(frame["pred"]), n_classes, multi_label,
                       invalid)


def run_predictions(report: dict, data: bytes, where: str = "predictions") -> Predictions:
    """A run's or baseline's predictions from its metrics report (labels, task) and its predictions file."""
    return read_predictions(data, len(report["labels"]), report["task"] == "multi_label", where)


def aligned(a: Predictions, b: Predictions) -> Predictions | None:
    """`b` in the row order of `a` when both scored the same test rows (same ids, same gold labels);
    None when they did not (another test set, or a relabelled one): then no paired test is possible."""
    if len(a) != len(b) or a.multi_label != b.multi_label or a.n_classes != b.n_classes:
        return None
    if not np.array_equal(a.ids, b.ids):
        position = {row_id: i for i, row_id in enumerate(b.ids)}
        if len(position) != len(b) or set(position) != set(a.ids):
            return None
        order = np.asarray([position[row_id] for row_id in a.ids])
        b = Predictions(a.ids, b.y_true[order], b.y_pred[order], b.n_classes, b.multi_label,
                        None if b.invalid is None else b.invalid[order])
    return b if np.array_equal(a.y_true, b.y_true) else None


def same_decisions(a: Predictions, b: Predictions) -> bool:
    """True when two runs on the same rows (`b` aligned to `a`) decide every row alike."""
    def invalid(p: Predictions) -> np.ndarray:
        return np.zeros(len(p), bool) if p.invalid is None else p.invalid

    return np.array_equal(a.y_pred, b.y_pred) and np.array_equal(invalid(a), invalid(b))


# ---------------------------------------------------------------------------------------------
# Metrics from sums over rows
# ---------------------------------------------------------------------------------------------
def row_sums(pred: Predictions) -> np.ndarray:
    """(rows, 2 + 3 * classes): per row, [correct (exact match), jaccard, gold one-hot, predicted one-hot,
    true positives]. Summed over any multiset of rows, these give every metric of metrics.scores."""
    n, k = len(pred), pred.n_classes
    if pred.multi_label:
        gold, guess = pred.y_true.astype(bool), pred.y_pred.astype(bool)
        correct = np.all(gold == guess, axis=1)
        union = (gold | guess).sum(1)
        jaccard = np.where(union == 0, 1.0, (gold & guess).sum(1) / np.maximum(union, 1))
        if pred.invalid is not None:
            correct, jaccard = correct & ~pred.invalid, np.where(pred.invalid, 0.0, jaccard)
    else:
        gold, guess = np.zeros((n, k), bool), np.zeros((n, k), bool)
        gold[np.arange(n), pred.y_true] = True
        valid = (pred.y_pred >= 0) & (pred.y_pred < k)  # -1: an invalid answer predicts no class
        guess[np.arange(n)[valid], pred.y_pred[valid]] = True
        correct = pred.y_true == pred.y_pred
        jaccard = correct.astype(float)
    return np.column_stack([correct, jaccard, gold, guess, gold & guess]).astype(np.float64)


def metrics_from_sums(sums: np.ndarray, n_rows: int, n_classes: int, multi_label: bool) -> dict[str, np.ndarray]:
    """Each metric for each row of `sums` ((resamples, 2 + 3 * classes) column sums of row_sums), with
    sklearn's zero_division=0: a class with no gold and no predicted row has F1 0 and counts in the macro
    mean, as metrics.scores passes labels=range(classes)."""
    k = n_classes
    gold, guess, hits = sums[:, 2:2 + k], sums[:, 2 + k:2 + 2 * k], sums[:, 2 + 2 * k:2 + 3 * k]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(gold + guess > 0, 2 * hits / (gold + guess), 0.0)
        recall = np.where(gold > 0, hits / gold, 0.0)
        support = gold.sum(1)
        micro_denominator = support + guess.sum(1)
        out = {"accuracy": sums[:, 0] / n_rows,
               "macro_f1": f1.mean(1),
               "micro_f1": np.where(micro_denominator > 0, 2 * hits.sum(1) / micro_denominator, 0.0),
               "weighted_f1": np.where(support > 0, (f1 * gold).sum(1) / support, 0.0),
               "macro_recall": recall.mean(1)}
    if multi_label:
        out["jaccard"] = sums[:, 1] / n_rows
    return out


def point_estimates(pred: Predictions) -> dict[str, float]:
    """Every metric of the predictions from the row sums (equal to metrics.scores; check_against_metrics)."""
    values = metrics_from_sums(row_sums(pred).sum(0, keepdims=True), len(pred), pred.n_classes, pred.multi_label)
    return {name: float(v[0]) for name, v in values.items()}


def check_against_metrics(pred: Predictions, tolerance: float = 1e-9) -> None:
    """Raise if a metric from the row sums differs from emotune/metrics.py's (the reference: sklearn)."""
    from emotune import metrics

    reference = metrics.scores(pred.y_true, pred.y_pred, pred.multi_label, pred.n_classes, pred.invalid)
    ours = point_estimates(pred)
    wrong = {m: (ours[m], reference[m]) for m in ours if abs(ours[m] - reference[m]) > tolerance}
    if wrong:
        raise EmotuneError(f"bootstrap metrics differ from metrics.scores: {wrong}")


def _check_metric(metric: str, multi_label: bool) -> None:
    allowed = [m for m in METRICS if multi_label or m != "jaccard"]
    if metric not in allowed:
        raise EmotuneError(f"no bootstrap for metric {metric!r}; choose one of {allowed}")


# ---------------------------------------------------------------------------------------------
# The bootstrap
# ---------------------------------------------------------------------------------------------
def resample_counts(n_rows: int, resamples: int, seed: int):
    """Yield (chunk, n_rows) matrices: how often each row is drawn in each resample (n_rows draws with
    replacement), CHUNK resamples at a time, the same sequence for every run with the same seed and row
    count (so two runs on the same rows are resampled alike: that is what pairs them)."""
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        size = min(CHUNK, resamples - start)
        draws = rng.integers(0, n_rows, size=(size, n_rows)) + n_rows * np.arange(size)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n_rows).reshape(size, n_rows).astype(np.float64)


def resampled_metrics(runs: Sequence[Predictions], metrics: Sequence[str], resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> list[dict[str, np.ndarray]]:
    """For each run: metric -> its (resamples,) values over the same bootstrap resamples of the rows."""
    n, first = len(runs[0]), runs[0]
    for metric in metrics:
        _check_metric(metric, first.multi_label)
    if n == 0:
        raise EmotuneError("no test rows to resample")
    tables = [row_sums(run) for run in runs]
    widths = np.cumsum([0] + [t.shape[1] for t in tables])
    stacked = np.hstack(tables)
    sums = np.vstack([counts @ stacked for counts in resample_counts(n, resamples, seed)])
    out = []
    for run, lo, hi in zip(runs, widths[:-1], widths[1:]):
        values = metrics_from_sums(sums[:, lo:hi], n, run.n_classes, run.multi_label)
        out.append({m: values[m] for m in metrics})
    return out


@dataclass(frozen=True)
class Interval:
    """A metric on the test rows and its bootstrap interval (test-sampling noise only)."""

    metric: str
    value: float
    low: float
    high: float
    resamples: int
    seed: int
    confidence: float = CONFIDENCE

    def as_json(self, digits: int = 4) -> dict[str, float]:
        return as_json(self.low, self.high, digits)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_intervals(pred: Predictions, metrics: Sequence[str], resamples: int = RESAMPLES,
                        seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> dict[str, Interval]:
    """metric -> its value on the test rows and the percentile bootstrap interval over `resamples`
    resamples of whole rows."""
    values = resampled_metrics([pred], metrics, resamples, seed)[0]
    point = point_estimates(pred)
    return {m: Interval(m, point[m], *percentile_interval(values[m], confidence), resamples, seed, confidence)
            for m in metrics}


# ---------------------------------------------------------------------------------------------
# Two runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """`value` minus `reference_value` of one metric, its interval and what it means in words. Paired: both
    runs on the same test rows, the interval from a paired bootstrap (and McNemar's exact p for accuracy);
    unpaired: from the two runs' own intervals (docs/noise.md)."""

    metric: str
    value: float
    reference_value: float
    difference: float
    low: float
    high: float
    verdict: str
    paired: bool
    p_value: float | None = None
    mcnemar_p: float | None = None
    rows: int | None = None
    resamples: int | None = None

    @property
    def tied(self) -> bool:
        """Not distinguishable: the interval of the difference covers 0."""
        return self.verdict == WITHIN_NOISE

    def as_json(self, digits: int = 4) -> dict[str, float]:
        return as_json(self.low, self.high, digits)


def verdict(low: float, high: float) -> str:
    """better (the whole interval of the difference above 0), worse (below 0), else within noise."""
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return WITHIN_NOISE


def mcnemar_p(a: Predictions, b: Predictions) -> float:
    """McNemar's exact test on the rows exactly one of the two runs gets right: two-sided binomial p of
    the split between them under "equally likely" (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    right_a, right_b = row_sums(a)[:, 0] > 0, row_sums(b)[:, 0] > 0
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_difference(run: Predictions, reference: Predictions, metric: str, resamples: int = RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Difference:
    """`run` minus `reference` on the same test rows: both scored on the same bootstrap resamples, the
    percentile interval of the difference, a two-sided bootstrap p (twice the smaller share of resampled
    differences on either side of 0) and, for accuracy, McNemar's exact p. Raises when the rows differ."""
    other = aligned(run, reference)
    if other is None:
        raise EmotuneError(f"paired {metric}: the two runs did not score the same test rows (ids or gold "
                           f"labels differ); compare their intervals instead (unpaired_difference)")
    values = resampled_metrics([run, other], [metric], resamples, seed)
    differences = values[0][metric] - values[1][metric]
    low, high = percentile_interval(differences, confidence)
    value, reference_value = point_estimates(run)[metric], point_estimates(other)[metric]
    side = min((differences <= 0).sum(), (differences >= 0).sum())
    return Difference(metric, value, reference_value, value - reference_value, low, high, verdict(low, high),
                      True, float(min(1.0, 2 * (side + 1) / (resamples + 1))),
                      mcnemar_p(run, other) if metric == "accuracy" else None, len(run), resamples)


def unpaired_difference(metric: str, value: float, interval, reference_value: float, reference_interval,
                        confidence: float = CONFIDENCE) -> Difference:
    """The fallback when the two runs' per-row predictions cannot be paired (the base revision has none):
    each interval read as a normal one (standard error = width / 2z), the difference's standard error
    sqrt(se1^2 + se2^2). Wider than the paired interval (it ignores that both runs get the same easy
    and hard rows), so it calls fewer changes. A side without an interval is assumed as wide as the
    other (the same test set); neither: no interval, no verdict. Intervals as `ends` reads them."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    errors = [(high - low) / (2 * z) for low, high in filter(None, (ends(interval), ends(reference_interval)))]
    difference = value - reference_value
    if not errors:
        return Difference(metric, value, reference_value, difference, float("nan"), float("nan"),
                          WITHIN_NOISE, False)
    se = float(np.sqrt(sum(e ** 2 for e in errors) * (2 / len(errors))))
    low, high = difference - z * se, difference + z * se
    return Difference(metric, value, reference_value, difference, low, high, verdict(low, high), False)


# ---------------------------------------------------------------------------------------------
# The report fields
# ---------------------------------------------------------------------------------------------
def interval_fields(pred: Predictions, official: str, resamples: int = RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> tuple[dict[str, list[float]], dict]:
    """({"<metric>_ci95": {"low": .., "high": ..}} for the headline metrics, the "bootstrap" settings block)
    of a metrics report (emotune/reports.py writes them beside the metrics)."""
    if not len(pred):  # no rows, no interval (JSON has no NaN)
        fields = {interval_key(m): None for m in headline_metrics(official)}
    else:
        intervals = bootstrap_intervals(pred, headline_metrics(official), resamples, seed)
        fields = {interval_key(m): iv.as_json() for m, iv in intervals.items()}
    # what the numbers are is docs/noise.md's: percentile bootstrap of whole test rows, decisions fixed
    settings = {"resamples": resamples, "seed": seed, "confidence": CONFIDENCE}
    return fields, settings
