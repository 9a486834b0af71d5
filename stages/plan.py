"""plan: params.yaml -> data/plans/<dataset>/<model>/{tokenize,<adapter>}.json, one small JSON per run.

Why this stage exists: DVC can only depend on whole params keys it can name in dvc.yaml, and a matrix
stage cannot say "the lora runs read adapter.r, the ia3 runs do not". So this stage reads the params
once and writes, for every run of the matrix, exactly the settings that run reads. Each train stage
depends on its own plan file (a file inside this stage's output folder), so `-S adapter.r=64` rewrites
every plan but changes the bytes of the LoRA-family ones only, and DVC reruns only those trains.
`tokenize.json` does the same for the tokenize stage (dataset labels, tokenizer, max_length): no
adapter or train setting is in it.

The folder is `cache: false` in dvc.yaml: plans are committed to git, so `git diff data/plans` shows
what a params change does to each run.

    python -m stages.plan"""
from __future__ import annotations

import argparse

from emotune.atomic import atomic_dir, write_json
from emotune.config import load_params
from emotune.errors import run_cli
from emotune.paths import plans_dir, project_root
from emotune.plan import make_plans


def main(argv: list[str]) -> None:
    argparse.ArgumentParser(description="Write one plan file per tokenize and train run").parse_args(argv)
    params = load_params()
    plans = make_plans(params)
    with atomic_dir(plans_dir()) as out:
        for rel, plan in plans.items():
            write_json(out / rel, plan.to_json())
    print(f"plan: {len(plans)} plan files in {plans_dir().relative_to(project_root())}")


if __name__ == "__main__":
    run_cli(main)
