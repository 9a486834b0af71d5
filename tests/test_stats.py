"""emotune/stats.py on constructed cases with known answers: the bootstrap's metrics are metrics.scores';
identical predictions differ by 0 and are tied; a run 10 points better on 2,000 rows is not; a 95%
interval covers the true rate of a simulated binomial about 95% of the time; multi-label rows are
resampled whole; the per-row file round-trips; the reports and the leaderboard carry the intervals and
the paired differences. (Timing is a bench: bench/bootstrap_speed.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_evaluate import DATASET, Params, fake_run, write

from emotune import aggregate as ag
from emotune import reports, stats
from emotune.errors import EmotuneError
from emotune.paths import BASELINES, eval_paths, predictions_path

CLASSES = 6


def single(y_true, y_pred, ids=None) -> stats.Predictions:
    ids = np.arange(len(y_true)) if ids is None else ids
    return stats.predictions(ids, y_true, y_pred, CLASSES, False)


def with_accuracy(y_true: np.ndarray, accuracy: float, rng) -> np.ndarray:
    """Predictions right on exactly round(accuracy * rows) random rows, wrong (the next class) elsewhere."""
    right = np.zeros(len(y_true), bool)
    right[rng.choice(len(y_true), int(round(accuracy * len(y_true))), replace=False)] = True
    return np.where(right, y_true, (y_true + 1) % CLASSES)


# ---------------------------------------------------------------------------------------------
# The metrics of a resample are metrics.scores'
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_from_row_sums_equal_metrics_scores(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES - 1, 300)  # the last class never gold: its F1 is 0 and counts in the mean
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(-1, CLASSES, 300))  # -1: invalid answers
    stats.check_against_metrics(stats.predictions(np.arange(300), y, pred, CLASSES, False,
                                                  invalid=pred == -1))
    gold = (rng.random((300, 5)) < 0.3).astype(np.float32)
    gold[:, 4] = 0  # a label nobody has
    guess = np.where(rng.random((300, 5)) < 0.8, gold, 1 - gold)
    invalid = rng.random(300) < 0.1
    guess[invalid] = 0
    stats.check_against_metrics(stats.predictions(np.arange(300), gold, guess, 5, True, invalid))


def test_a_wrong_metric_is_caught_by_the_check():
    """check_against_metrics can fail: an invalid mask the row sums ignore changes jaccard."""
    rng = np.random.default_rng(0)
    gold = (rng.random((50, 3)) < 0.5).astype(int)
    pred = stats.predictions(np.arange(50), gold, gold, 3, True, invalid=np.arange(50) < 10)
    stats.check_against_metrics(pred)
    unmasked = stats.Predictions(pred.ids, pred.y_true, pred.y_pred, 3, True, None)
    assert stats.point_estimates(unmasked)["jaccard"] == 1.0 and stats.point_estimates(pred)["jaccard"] == 0.8
    with pytest.raises(EmotuneError, match="jaccard"):
        stats.check_against_metrics(unmasked, tolerance=-1.0)  # every metric "differs": the check reports


# ---------------------------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------------------------
def test_interval_of_accuracy_agrees_with_scipy_and_the_normal_width():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(5)
    y = rng.integers(0, CLASSES, 2000)
    pred = single(y, with_accuracy(y, 0.79, rng))
    iv = stats.bootstrap_intervals(pred, ["accuracy"])["accuracy"]
    assert iv.value == pytest.approx(0.79) and (iv.resamples, iv.seed) == (stats.RESAMPLES, stats.BOOTSTRAP_SEED)
    theirs = bootstrap(((y == pred.y_pred).astype(float),), np.mean, n_resamples=stats.RESAMPLES,
                       method="percentile", random_state=1, vectorized=True).confidence_interval
    assert iv.low == pytest.approx(theirs.low, abs=0.003) and iv.high == pytest.approx(theirs.high, abs=0.003)
    # the figure: 0.79 on 2,000 rows is +-0.018 (1.96 * sqrt(p(1 - p) / n))
    assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * np.sqrt(0.79 * 0.21 / 2000), rel=0.1)
    assert stats.bootstrap_intervals(pred, ["accuracy"]) == stats.bootstrap_intervals(pred, ["accuracy"])


def test_interval_covers_the_true_rate_of_a_simulated_binomial_about_95_percent_of_the_time():
    """400 test sets of 500 rows, each row right with probability 0.79. A correct 95% interval covers 0.79
    in 95% of them; the coverage estimate over 400 simulations has a standard error of
    sqrt(0.95 * 0.05 / 400) = 0.011, so [0.92, 0.98] is +-2.7 standard errors (and the percentile
    bootstrap's known slight under-coverage at n = 500, ~0.5 point, fits well inside). An interval a
    factor sqrt(2) too narrow covers ~83%, one too wide ~99%: both fail."""
    rng = np.random.default_rng(2026)
    simulations, rows, rate = 400, 500, 0.79
    y = np.zeros(rows, dtype=int)
    covered = 0
    for i in range(simulations):
        pred = np.where(rng.random(rows) < rate, 0, 1)
        iv = stats.bootstrap_intervals(single(y, pred), ["accuracy"], resamples=1000, seed=i)["accuracy"]
        covered += iv.low <= rate <= iv.high
    assert 0.92 <= covered / simulations <= 0.98, covered / simulations


def test_multi_label_rows_are_resampled_whole():
    """Every row all right or all wrong (10 labels): per-row jaccard is then 1 or 0, so its interval is
    exactly the interval of a single-label accuracy with the same right rows (same rows, same seed, same
    resamples). Resampling (row, label) cells independently would make it ~sqrt(10) times narrower."""
    rng = np.random.default_rng(7)
    rows, labels = 1000, 10
    right = rng.random(rows) < 0.7
    gold = (rng.random((rows, labels)) < 0.5).astype(int)
    gold[gold.sum(1) == 0, 0] = 1  # no empty rows: an empty gold row matched by nothing would score 1
    guess = np.where(right[:, None], gold, 1 - gold)
    multi = stats.bootstrap_intervals(stats.predictions(np.arange(rows), gold, guess, labels, True),
                                      ["jaccard", "accuracy"])
    flat = stats.bootstrap_intervals(single(np.zeros(rows, int), np.where(right, 0, 1)), ["accuracy"])["accuracy"]
    for metric in ("jaccard", "accuracy"):
        assert (multi[metric].low, multi[metric].high) == (flat.low, flat.high)
    p = right.mean()
    assert (flat.high - flat.low) / 2 == pytest.approx(1.96 * np.sqrt(p * (1 - p) / rows), rel=0.1)


# ---------------------------------------------------------------------------------------------
# Two runs on the same rows
# ---------------------------------------------------------------------------------------------
def test_identical_predictions_differ_by_zero_and_are_tied():
    rng = np.random.default_rng(1)
    y = rng.integers(0, CLASSES, 2000)
    run = single(y, with_accuracy(y, 0.8, rng))
    for metric in ("accuracy", "macro_f1", "micro_f1"):
        diff = stats.paired_difference(run, run, metric)
        assert (diff.difference, diff.low, diff.high) == (0.0, 0.0, 0.0)
        assert diff.tied and diff.verdict == stats.WITHIN_NOISE and diff.paired and diff.p_value == 1.0
    assert stats.paired_difference(run, run, "accuracy").mcnemar_p == 1.0


def test_a_run_ten_points_better_on_2000_rows_is_not_tied():
    rng = np.random.default_rng(2)
    y = rng.integers(0, CLASSES, 2000)
    better = with_accuracy(y, 0.80, rng)
    worse = better.copy()
    spoiled = rng.choice(np.flatnonzero(better == y), 200, replace=False)  # 200 of its right rows made wrong
    worse[spoiled] = (y[spoiled] + 1) % CLASSES
    up = stats.paired_difference(single(y, better), single(y, worse), "accuracy")
    assert up.difference == pytest.approx(0.10) and up.verdict == stats.BETTER and not up.tied
    assert 0 < up.low < 0.10 < up.high and up.p_value < 0.01 and up.mcnemar_p < 1e-50  # 200 vs 0 rows
    down = stats.paired_difference(single(y, worse), single(y, better), "macro_f1")
    assert down.verdict == stats.WORSE and down.high < 0


def test_a_small_difference_is_within_noise_and_pairing_narrows_the_interval():
    """1 point on 2,000 rows as 100 rows fixed and 80 broken is within the noise (McNemar: p 0.16); the
    paired interval is narrower than the one from the two runs' own intervals (both runs get the same
    hard rows). The same point as 20 rows fixed and none broken is a real difference (p 2e-6)."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, CLASSES, 2000)
    a = with_accuracy(y, 0.80, rng)
    b = a.copy()
    right, wrong = rng.permutation(np.flatnonzero(a == y)), rng.permutation(np.flatnonzero(a != y))
    b[right[:100]] = (y[right[:100]] + 1) % CLASSES
    b[wrong[:80]] = y[wrong[:80]]
    paired = stats.paired_difference(single(y, a), single(y, b), "accuracy")
    assert paired.tied and paired.difference == pytest.approx(0.01) and paired.mcnemar_p > 0.1
    one_way = a.copy()
    one_way[right[:20]] = (y[right[:20]] + 1) % CLASSES
    assert stats.paired_difference(single(y, a), single(y, one_way), "accuracy").verdict == stats.BETTER
    ia, ib = (stats.bootstrap_intervals(single(y, p), ["accuracy"])["accuracy"] for p in (a, b))
    unpaired = stats.unpaired_difference("accuracy", ia.value, ia.as_json(), ib.value, ib.as_json())
    assert not unpaired.paired and unpaired.tied and unpaired.difference == pytest.approx(0.01)
    assert paired.high - paired.low < 0.6 * (unpaired.high - unpaired.low)
    # one side without an interval: assumed as wide as the other; neither: no interval, no verdict
    alone = stats.unpaired_difference("accuracy", 0.9, ia.as_json(), 0.8, None)
    assert alone.verdict == stats.BETTER and alone.high - alone.low == pytest.approx(unpaired.high - unpaired.low,
                                                                                     rel=0.05)
    assert np.isnan(stats.unpaired_difference("accuracy", 0.9, None, 0.8, None).low)


def test_rows_are_paired_by_id_and_other_test_sets_are_refused():
    rng = np.random.default_rng(4)
    y = rng.integers(0, CLASSES, 100)
    ids = np.array([f"r{i}" for i in range(100)])
    a = single(y, with_accuracy(y, 0.7, rng), ids)
    order = rng.permutation(100)
    shuffled = single(y[order], a.y_pred[order], ids[order])  # the same predictions, rows in another order
    assert stats.paired_difference(a, shuffled, "accuracy").difference == 0.0
    relabelled = single(np.where(np.arange(100) == 0, (y + 1) % CLASSES, y), a.y_pred, ids)
    assert stats.aligned(a, relabelled) is None
    with pytest.raises(EmotuneError, match="did not score the same test rows"):
        stats.paired_difference(a, relabelled, "accuracy")
    assert stats.aligned(a, single(y, a.y_pred, np.array([f"s{i}" for i in range(100)]))) is None


def test_verdict_words():
    assert [stats.verdict(*ends) for ends in ((0.01, 0.03), (-0.03, -0.01), (-0.01, 0.01), (0.0, 0.02))] == \
        [stats.BETTER, stats.WORSE, stats.WITHIN_NOISE, stats.WITHIN_NOISE]
    with pytest.raises(EmotuneError, match="no bootstrap for metric 'jaccard'"):
        stats.bootstrap_intervals(single(np.zeros(3, int), np.zeros(3, int)), ["jaccard"])


# ---------------------------------------------------------------------------------------------
# The per-row file, the reports, the leaderboard
# ---------------------------------------------------------------------------------------------
def test_predictions_file_round_trips_and_is_byte_stable():
    rng = np.random.default_rng(6)
    ids = [f"emotion-test-{i:06d}" for i in range(2000)]
    y = rng.integers(0, CLASSES, 2000)
    run = stats.predictions(ids, y, np.where(np.arange(2000) < 5, -1, with_accuracy(y, 0.8, rng)), CLASSES, False)
    data = stats.predictions_csv(run)
    assert data == stats.predictions_csv(run) and len(data) < 12_000  # same bytes each time; a few KB
    back = stats.read_predictions(data, CLASSES, False)
    assert list(back.ids) == ids and np.array_equal(back.y_pred, run.y_pred) and np.array_equal(back.y_true, y)
    gold = (rng.random((50, 4)) < 0.4).astype(np.float32)
    invalid = np.arange(50) % 7 == 0
    multi = stats.predictions(range(50), gold, np.where(invalid[:, None], 0, gold), 4, True, invalid)
    again = stats.read_predictions(stats.predictions_csv(multi), 4, True)
    assert np.array_equal(again.y_pred, multi.y_pred) and np.array_equal(again.invalid, invalid)
    assert stats.point_estimates(again) == stats.point_estimates(multi)
    with pytest.raises(EmotuneError, match="expected 5 labels per row"):
        stats.read_predictions(stats.predictions_csv(multi), 5, True)
    with pytest.raises(EmotuneError, match="not a predictions file"):
        stats.read_predictions(b"id,true,pred\n", 4, True)


def write_scored(root, model: str, adapter: str, y, pred, kind: str = "run") -> dict:
    """A run's or baseline's report and per-row file, written by the code evaluate and the baselines use."""
    dataset = {"name": DATASET, "task": "single_label", "labels": [f"c{i}" for i in range(CLASSES)],
               "official_metric": "accuracy"}
    report = reports.scored(kind, dataset, model, adapter, y, pred)
    if kind == "run":
        report["inference"] = {"batched_examples_per_s": 100.0, "latency_ms_p50": 5.0}
    else:
        report["train_examples"] = 100
    reports.write_report(report, y, pred, *eval_paths(DATASET, model, adapter, root),
                         [f"row{i}" for i in range(len(y))])
    return report


def test_reports_write_intervals_next_to_the_metrics_and_the_per_row_file(tmp_path):
    rng = np.random.default_rng(8)
    y = rng.integers(0, CLASSES, 2000)
    pred = with_accuracy(y, 0.79, rng)
    report = write_scored(tmp_path, "m", "lora", y, pred)
    keys = list(report["test"])
    for metric in ("accuracy", "macro_f1", "micro_f1"):
        assert keys[keys.index(metric) + 1] == f"{metric}_ci95"  # right after its metric
        low, high = stats.ends(report["test"][f"{metric}_ci95"])
        assert low < report["test"][metric] < high and high - low < 0.05
    assert "weighted_f1_ci95" not in report["test"]
    assert report["official_ci95"] == report["test"]["accuracy_ci95"]
    assert report["bootstrap"] == {"resamples": stats.RESAMPLES, "seed": stats.BOOTSTRAP_SEED, "confidence": 0.95}
    saved = json.loads(eval_paths(DATASET, "m", "lora", tmp_path)[0].read_text())
    rows = stats.run_predictions(saved, predictions_path(DATASET, "m", "lora", tmp_path).read_bytes())
    assert stats.point_estimates(rows)["accuracy"] == saved["official"] == pytest.approx(0.79)


def test_leaderboard_compares_every_row_with_the_best_run_on_the_same_rows(tmp_path):
    """Best 0.80; a run 0.5 point behind on 2,000 rows: tied for best; one 10 points behind and the
    majority baseline: not; a run from before per-row files: the unpaired fallback."""
    rng = np.random.default_rng(9)
    y = rng.integers(0, CLASSES, 2000)
    best = with_accuracy(y, 0.80, rng)
    close, far = best.copy(), best.copy()
    right, wrong = np.flatnonzero(best == y), np.flatnonzero(best != y)
    close[right[:60]] = (y[right[:60]] + 1) % CLASSES  # 60 rows broken, 50 fixed: 10 rows behind
    close[wrong[:50]] = y[wrong[:50]]
    far[right[:200]] = (y[right[:200]] + 1) % CLASSES
    for adapter, pred in (("full", best), ("lora", close), ("head", far)):
        write_scored(tmp_path, "m", adapter, y, pred)
        write(tmp_path / f"metrics/train/{DATASET}/m/{adapter}.json",
              {"params": {"trainable": 10**4, "total": 10**6}, "adapter_bytes": 2**20, "train_time_s": 60.0,
               "train_examples": 100, "train_examples_per_s": 10.0, "peak_memory_mb": 500.0})
    fake_run(tmp_path, "m", "ia3", 0.60, 10**3, 10.0)  # no interval, no per-row file
    for name in BASELINES:
        write_scored(tmp_path, "baseline", name, y, np.full_like(y, np.bincount(y).argmax()), "baseline")
    runs = [(DATASET, "m", a) for a in ("full", "lora", "head", "ia3")]
    rows = {r["adapter"]: r for r in ag.write_leaderboard(Params(runs), tmp_path)}
    assert rows["full"]["best"] and rows["full"]["tied_for_best"] and rows["full"]["vs_best_verdict"] == "best"
    assert rows["lora"]["tied_for_best"] is True and rows["lora"]["vs_best_paired"] is True
    assert rows["lora"]["vs_best"] == pytest.approx(-0.005) and rows["lora"]["vs_best_ci95"]["low"] < 0
    assert rows["head"]["tied_for_best"] is False and rows["head"]["vs_best_verdict"] == stats.WORSE
    assert rows["head"]["vs_best_ci95"]["high"] < 0 and rows["head"]["vs_best_mcnemar_p"] < 1e-10
    assert rows["majority"]["tied_for_best"] is False and rows["majority"]["vs_best_paired"] is True
    assert rows["ia3"]["vs_best_paired"] is False and rows["ia3"]["vs_best"] == pytest.approx(-0.2)
    assert rows["ia3"]["vs_best_verdict"] == stats.WORSE  # unpaired: the best run's interval counted twice
    assert {r["method_vs_best"] for r in rows.values()} == {ag.ONE_SEED}
    md = (tmp_path / "metrics/leaderboard.md").read_text()
    low, high = stats.ends(rows["full"]["official_ci95"])
    assert f"| m | full | **0.800** [{low:.3f}, {high:.3f}] |" in md
    low, high = stats.ends(rows["lora"]["vs_best_ci95"])
    assert f"-0.005 [{low:+.3f}, {high:+.3f}] tied for best" in md
    assert "Question 1" in md and "Question 2" in md and ag.ONE_SEED in md and "(unpaired)" in md
    csv = pd.read_csv(tmp_path / "metrics/leaderboard.csv")
    lora = csv[csv["adapter"] == "lora"].iloc[0]
    assert (lora["official_ci95_low"], lora["vs_best_ci95_high"]) == (rows["lora"]["official_ci95"]["low"],
                                                                     rows["lora"]["vs_best_ci95"]["high"])


def test_pull_request_verdicts_pair_with_the_base_revision_or_say_why_not(tmp_path):
    """scripts/cml_report.py against a git base: paired when the base committed the run's per-row file,
    else the unpaired fallback, named in the report."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import cml_report

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    rng = np.random.default_rng(10)
    y = rng.integers(0, CLASSES, 2000)
    base = with_accuracy(y, 0.70, rng)
    git("init", "-q")
    write_scored(tmp_path, "m", "lora", y, base)
    git("add", "-A")
    git("commit", "-qm", "base")
    better = base.copy()
    better[np.flatnonzero(base != y)[:200]] = y[np.flatnonzero(base != y)[:200]]  # 10 points better
    write_scored(tmp_path, "m", "lora", y, better)
    board = [{"dataset": DATASET, "model": "m", "adapter": "lora"}]
    text = "\n".join(cml_report.verdict_section(tmp_path, "HEAD", board))
    assert "| m/lora" not in text and f"| {DATASET}/m/lora | accuracy | 0.700 | 0.800 | +0.100 [" in text
    assert "| better | paired, 2,000 test rows |" in text and "within noise" not in text.split("|---|")[-1], text
    predictions_path(DATASET, "m", "lora", tmp_path).unlink()  # a base from before per-row files
    git("add", "-A")
    git("commit", "-qm", "no per-row file")
    write_scored(tmp_path, "m", "lora", y, base)
    text = "\n".join(cml_report.verdict_section(tmp_path, "HEAD", board))
    assert "| worse | unpaired: `HEAD` has no per-row predictions of this run |" in text, text
    git("add", "-A")
    git("commit", "-qm", "same again")
    assert "No run decides any test row differently" in "\n".join(
        cml_report.verdict_section(tmp_path, "HEAD", board))


def test_bootstrap_speed_bench_runs_tiny(tmp_path):
    """bench/bootstrap_speed.py --tiny: every timing measured, none of them how fast this machine is."""
    from test_bench import bench_json

    result = bench_json("bench.bootstrap_speed", tmp_path)
    assert (result["rows"], result["resamples"]) == (500, 200)
    for key in ("intervals_single_label_s", "intervals_multi_label_s", "paired_difference_s",
                "scipy_bootstrap_accuracy_only_s"):
        assert result[key] > 0, key
