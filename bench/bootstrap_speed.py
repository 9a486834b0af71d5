"""How long the row-level statistics take (emotune/stats.py, issue 29: "seconds, not minutes, for 5,000
test rows"): the headline intervals of one run (official, macro F1, micro F1) single- and multi-label, a
paired difference of two runs, and scipy.stats.bootstrap on accuracy alone for scale.

    python -m bench.bootstrap_speed            # 5,000 rows, 2,000 resamples: metrics/bench/bootstrap_speed.json
    python -m bench.bootstrap_speed --tiny     # 500 rows, 200 resamples (CI), to --out or a temporary file

Synthetic predictions (6 classes at 0.79 accuracy; 11 labels, as SemEval-2018 E-c): the time depends on
the rows, resamples and classes, not on what the rows say. Best of --repeats, one process, one thread.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core of the shared machine: the evaluate stage's worst case

import numpy as np  # noqa: E402

from bench.common import header, result_path, write_result  # noqa: E402
from emotune import stats  # noqa: E402


def best_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        work()
        times.append(time.perf_counter() - tick)
    return round(min(times), 3)


def synthetic(rows: int, seed: int = 0) -> dict[str, stats.Predictions]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, rows)
    a = np.where(rng.random(rows) < 0.79, y, (y + 1) % 6)
    b = np.where(rng.random(rows) < 0.05, (a + 1) % 6, a)
    gold = (rng.random((rows, 11)) < 0.25).astype(int)
    guess = np.where(rng.random((rows, 11)) < 0.85, gold, 1 - gold)
    ids = np.arange(rows)
    return {"single": stats.predictions(ids, y, a, 6, False), "single_b": stats.predictions(ids, y, b, 6, False),
            "multi": stats.predictions(ids, gold, guess, 11, True)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="500 rows, 200 resamples, 1 repeat")
    parser.add_argument("--out", help="result JSON (default metrics/bench/bootstrap_speed.json)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.resamples, args.repeats = 500, 200, 1
    from scipy.stats import bootstrap

    runs = synthetic(args.rows)
    correct = (runs["single"].y_true == runs["single"].y_pred).astype(float)
    timed = {
        "intervals_single_label_s": lambda: stats.bootstrap_intervals(
            runs["single"], stats.headline_metrics("accuracy"), args.resamples),
        "intervals_multi_label_s": lambda: stats.bootstrap_intervals(
            runs["multi"], stats.headline_metrics("jaccard"), args.resamples),
        "paired_difference_s": lambda: stats.paired_difference(runs["single_b"], runs["single"], "accuracy",
                                                               args.resamples),
        "scipy_bootstrap_accuracy_only_s": lambda: bootstrap(
            (correct,), np.mean, n_resamples=args.resamples, method="percentile", vectorized=True, random_state=0),
    }
    result = {**header("bootstrap_speed", args.tiny), "rows": args.rows, "resamples": args.resamples,
              "repeats": args.repeats, "classes": 6, "labels_multi": 11, "threads": 1,
              **{name: best_seconds(work, args.repeats) for name, work in timed.items()}}
    for name in timed:
        print(f"{name:34s} {result[name]:7.3f} s  ({args.rows:,} rows, {args.resamples:,} resamples)")
    write_result(result_path("bootstrap_speed", args.tiny, args.out), result)


if __name__ == "__main__":
    main()
