"""Seeds as a comparison axis: what several seeds of one run say, and whether one method beats another.

Question 2 of issue 29 ("is this adapter / setting better than that one?") is about the training
procedure, not about one trained model, so its unit of replication is the seed: every seed retrains the
run (weights init, batch order, dropout and the `max_train_examples` sample, emotune/train.py) and scores
it on the same test rows. Two variants are compared by Welch's t-test on their per-seed official metrics:

* Why a test over seeds and not a hierarchical bootstrap (seeds, then test rows): with the 2-5 seeds a CPU
  user can afford, a bootstrap over seeds resamples from 2-5 values; its spread is too narrow (a resample of
  n values has (n-1)/n of their variance, and only n^n distinct draws), so it calls equal methods different
  far too often. The t distribution carries the small-n penalty exactly (for normal seed values), and
  Welch's form does not assume both variants move equally with the seed (a frozen-backbone head moves less
  than LoRA). bench/seed_calibration.py measures both on two datasets: docs/seeds.md has the figures.
* Why not a permutation test over seeds: with 2 seeds a side its smallest possible p-value is 1/3 (6
  distinct splits of 4 values, 2 of them as extreme), so it can never say "better".
* What it does not cover: another test set. All seeds are scored on the same test rows; whether a model
  beats another on this test set is question 1 (the per-row paired bootstrap of the leaderboard).

The one-seed case says so ("cannot tell (one seed)") and quotes how far seeds move that kind of run, from
the calibration bench's metrics/bench/seed_calibration.json (`seed_spread`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from emotune.atomic import read_json

ALPHA = 0.05  # two-sided level of the method-level test: at most 2.5% false "better" calls per direction
ONE_SEED = "cannot tell (one seed)"
Verdict = Literal["better", "worse", "within noise", "cannot tell (one seed)"]
SEED_CALIBRATION = Path("metrics") / "bench" / "seed_calibration.json"  # relative to the project root


@dataclass(frozen=True)
class SeedSummary:
    """A run's official metric over its seeds (the primary seed first)."""

    seeds: list[int]
    values: list[float]
    mean: float
    sd: float | None  # sample standard deviation (n - 1); None with one seed

    @property
    def n(self) -> int:
        return len(self.values)


def summarize_seeds(by_seed: dict[int, float]) -> SeedSummary:
    seeds = list(by_seed)
    values = [float(by_seed[s]) for s in seeds]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return SeedSummary(seeds, values, mean, sd)


@dataclass(frozen=True)
class MethodVerdict:
    """Variant A against variant B over their seeds: Welch's t-test at ALPHA (two-sided)."""

    verdict: Verdict
    difference: float  # mean(A) - mean(B)
    low: float | None  # Welch 95% interval of the difference; None with one seed on either side
    high: float | None
    p_value: float | None
    seeds_a: int
    seeds_b: int
    test: str = "welch_t"


def method_verdict(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> MethodVerdict:
    """Is variant A (per-seed values `a`) better than B (`b`)? "better"/"worse" when Welch's two-sided
    p-value is below `alpha`, "within noise" otherwise, ONE_SEED when either side has a single seed."""
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    difference = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return MethodVerdict(ONE_SEED, difference, None, None, None, len(a), len(b))
    if max(a) == min(a) and max(b) == min(b):
        # no seed spread on either side (a deterministic run, or identical reruns): the t statistic is
        # undefined; equal values are no difference, unequal ones a difference seeds cannot explain
        verdict = "within noise" if difference == 0 else ("better" if difference > 0 else "worse")
        return MethodVerdict(verdict, difference, difference, difference, 0.0 if difference else 1.0, len(a), len(b))
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(1 - alpha)
    p = float(result.pvalue)
    verdict = "within noise" if p >= alpha else ("better" if difference > 0 else "worse")
    return MethodVerdict(verdict, difference, float(interval.low), float(interval.high), p, len(a), len(b))


@dataclass(frozen=True)
class SeedSpread:
    """How far seeds move one kind of run, measured by the calibration bench."""

    sd: float  # standard deviation of the official metric over seeds
    seeds: int
    measured_on: str  # "<dataset> <adapter>", or "<adapter> on <datasets>" for the adapter's pooled figure


def read_seed_spread(root: Path) -> dict:
    """metrics/bench/seed_calibration.json's `seed_spread` rows ({} when the bench has not run)."""
    path = Path(root) / SEED_CALIBRATION
    return read_json(path).get("seed_spread", {}) if path.is_file() else {}


def known_spread(spread: dict, dataset: str, adapter: str) -> SeedSpread | None:
    """The measured seed spread of this dataset's adapter, else the adapter's largest over the measured
    datasets (a conservative stand-in), else None."""
    row = spread.get(dataset, {}).get(adapter)
    where = f"{dataset} {adapter}"
    if not row:
        rows = {name: by_adapter[adapter] for name, by_adapter in spread.items()
                if by_adapter.get(adapter, {}).get("sd") is not None}
        if not rows:
            return None
        name, row = max(rows.items(), key=lambda item: item[1]["sd"])
        where = f"{adapter} on {name}"
    if row.get("sd") is None:
        return None
    if row.get("model"):  # what kind of run was measured: the model and its training rows
        rows_text = "all rows" if row.get("train_rows") is None else f"{row['train_rows']:,} rows"
        where += f" ({row['model']}, {rows_text})"
    return SeedSpread(row["sd"], row["seeds"], where)
