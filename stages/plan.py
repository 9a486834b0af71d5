"""plan: params.yaml -> data/plans/<dataset>/<model>/{tokenize,<adapter>}.json, one small JSON per run.

    python -m stages.plan

The DVC stage's entry point; the work, and why it is done this way, is emotune/plan.py.
"""
from __future__ import annotations

import argparse
import sys

from emotune.atomic import atomic_dir, write_json
from emotune.config import group_notes, load_params
from emotune.errors import run_cli
from emotune.paths import plans_dir, project_root
from emotune.plan import make_plans, max_length_warnings, zero_shot_plans


def main(argv: list[str]) -> None:
    argparse.ArgumentParser(description="Write one plan file per tokenize and train run").parse_args(argv)
    params = load_params()
    for note in group_notes(params):
        print(f"plan: {note}")
    plans = {**make_plans(params), **zero_shot_plans(params)}
    with atomic_dir(plans_dir()) as out:
        for rel, plan in plans.items():
            write_json(out / rel, plan.to_json())
    print(f"plan: {len(plans)} plan files in {plans_dir().relative_to(project_root())}")
    for warning in max_length_warnings(params):
        print(f"warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
