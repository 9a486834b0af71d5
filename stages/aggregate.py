"""aggregate: every evaluated run and baseline -> one leaderboard.

    python -m stages.aggregate

Reads metrics/eval/<dataset>/<model>/<adapter>.json (test metrics) and
metrics/train/<dataset>/<model>/<adapter>.json (cost of training) for every run of the matrices in
params.yaml, and metrics/eval/<dataset>/baseline/*.json. Writes
  metrics/leaderboard.json   {"rows": [...]}: one row per run and baseline, `best` on the best run of
                             each dataset (by its official metric)
  metrics/leaderboard.md     the same as markdown tables, one per dataset, with the published reference
                             number and each run's gain over TF-IDF + LR on the same training rows
  metrics/leaderboard.csv    flat rows (dvc plots)
  metrics/pareto/<dataset>.png  official metric against trainable parameters and training time; the
                             runs no other run beats on both axes are joined (the Pareto front)"""
from __future__ import annotations

import argparse

from emotune.aggregate import write_leaderboard
from emotune.config import load_params
from emotune.errors import run_cli


def main(argv: list[str]) -> None:
    argparse.ArgumentParser(description="Collect every run and baseline into one leaderboard").parse_args(argv)
    rows = write_leaderboard(load_params())
    for r in (r for r in rows if r["best"]):
        print(f"best {r['dataset']}: {r['model']}/{r['adapter']} {r['official_metric']} {r['official']:.4f}")


if __name__ == "__main__":
    run_cli(main)
