"""train: one dataset x model x adapter run, trained by transformers' Trainer.

    python -m stages.train <dataset> <model> <adapter>

Reads data/plans/<dataset>/<model>/<adapter>.json (every setting this run uses, written by the plan
stage) and data/tokenized/<dataset>/<model>/. Writes
  models/<dataset>/<model>/<adapter>/              the trained adapter or weights (emotune/adapters.py
                                                   save_trained) and run.json, the run card
  metrics/train/<dataset>/<model>/<adapter>.json   the small summary that git tracks
  metrics/train/<dataset>/<model>/<adapter>/       DVCLive: train loss per log step, validation per epoch
  models/checkpoints/<dataset>/<model>/<adapter>/  Trainer's checkpoint-<step>/ folders while the run is
                                                   in progress (resumable; emptied when it ends)

The loop is `transformers.Trainer` with `TrainingArguments` built from the plan (`training_arguments`,
the README's "Training" table maps every `train:` param to its TrainingArguments name): length-grouped
batches with dynamic padding (`train_sampling_strategy="group_by_length"`), the `optim` and
`lr_scheduler_type` of the plan, one validation pass per epoch on the dataset's official metric,
`EarlyStoppingCallback`, `load_best_model_at_end`, checkpoints at each epoch end and every
`train.checkpoint_every` optimizer steps, resumed with `resume_from_checkpoint`. What emotune adds is
small and lives in `EmotuneTrainer`: the recipe's loss (class weights / BCE pos_weight, the generative
answer-token loss), the validation pass through the recipe (so the generative recipe is scored on its
generated answers), and length groups cut from the global batch (so N processes see the batches one
does).

The generative recipe (adapters gen_lora / gen_qlora, decoders only) runs through the same Trainer with
the batches, loss and predictions of emotune/generative.py.

Data parallel: with `train.processes: N` the stage runs itself under torchrun as N processes; Trainer
(through accelerate) runs DistributedDataParallel, each process taking batch_size / N rows of each
global batch. `torchrun` or `accelerate launch` (with an FSDP config too) can also start it. Only rank 0
writes outputs (Trainer writes each process's RNG state into the checkpoint)."""
from __future__ import annotations

import os

from emotune.errors import run_cli
from emotune.paths import run_paths
from emotune.plan import read_plan
from emotune.stage_args import run_args
from emotune.train import launch, train


def main(argv: list[str]) -> None:
    args = run_args(argv, "Train one dataset x model x adapter run")
    paths = run_paths(args.dataset, args.model, args.adapter)
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
