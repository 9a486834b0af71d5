"""aggregate: every evaluated run and baseline -> one leaderboard.

    python -m stages.aggregate

The DVC stage's entry point; the work, and why it is done this way, is emotune/aggregate.py.
"""
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
