"""train: one dataset x model x adapter run, trained by transformers' Trainer.

    python -m stages.train <dataset> <model> <adapter> [--seed <one of params seeds>] [--tuned]

--tuned: a tune-group run, whose plan the tune stage wrote (data/plans_tuned/).

The DVC stage's entry point; the work, and why it is done this way, is emotune/train.py.
"""
from __future__ import annotations

import os

from emotune.errors import run_cli
from emotune.paths import run_paths, tuned_run_paths
from emotune.plan import read_plan
from emotune.stage_args import run_args
from emotune.train import launch, train


def main(argv: list[str]) -> None:
    args = run_args(argv, "Train one dataset x model x adapter run")
    paths = (tuned_run_paths(args.dataset, args.model, args.adapter) if args.tuned
             else run_paths(args.dataset, args.model, args.adapter, seed=args.seed))
    plan = read_plan(paths.plan)  # validated: a missing or stale plan says `dvc repro plan`
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    launch(plan, "stages.train", argv)  # train.processes > 1: becomes torchrun, which runs this main() in each process
    rank = int(os.environ.get("RANK", 0))
    train(plan, paths, log=(lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()  # the other processes wait until rank 0 has written every output
        dist.destroy_process_group()


if __name__ == "__main__":
    run_cli(main)
