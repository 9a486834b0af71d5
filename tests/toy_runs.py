"""Helpers for the tokenize/train/pipeline tests: a learnable synthetic emotion dataset written in the
words the tiny models' tokenizers know, and one-call set-up of a run (plan + tokenized data) under a
temporary root, so that emotune/train.py `train()` can run in-process on it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from emotune import plan as plan_stage
from emotune import tokenize as tokenize_stage
from emotune.config import parse_params
from emotune.paths import run_paths

LABELS = ["joy", "anger", "sadness"]
# Each label has its own cue words; the filler words are shared. All are in emotune/testing.py TINY_WORDS.
CUES = {"joy": ["happy", "joy", "great", "wonderful", "love"], "anger": ["angry", "hate", "awful", "terrible"],
        "sadness": ["sad", "lonely", "tired", "sorry"]}
FILLER = "i am you are we they so very really the a and but today night people work home life time".split()
DATASET = "toy"


def toy_frame(n: int, task: str, seed: int, split: str, long_every: int = 0) -> pd.DataFrame:
    """`n` rows in the audited format. Single-label rows carry one cue of their label; multi-label rows
    one cue per label (at least one label). Every `long_every`-th row is made 200 words long."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if task == "single_label":
            labels = [LABELS[rng.integers(len(LABELS))]]
        else:
            labels = [c for c in LABELS if rng.random() < 0.4] or [LABELS[rng.integers(len(LABELS))]]
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 10))))
        if long_every and i % long_every == 0:
            words = list(rng.choice(FILLER, size=200))
        for label in labels:
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(CUES[label])))
        rows.append({"id": f"{split}-{i:04d}", "text": " ".join(words), "labels": labels,
                     "label_quality": 1.0, "is_label_issue": False, "suggested_labels": labels})
    return pd.DataFrame(rows)


def write_audited(folder: Path, task: str = "single_label", sizes=(160, 60, 40), seed: int = 0,
                  long_every: int = 0) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (split, n) in enumerate(zip(("train", "validation", "test"), sizes)):
        toy_frame(n, task, seed + k, split, long_every).to_parquet(folder / f"{split}.parquet", index=False)
    meta = {"name": DATASET, "task": task, "labels": LABELS, "checksums": {"train.csv": "0" * 64},
            "rows": dict(zip(("train", "validation", "test"), sizes))}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def registry_entry(task: str) -> dict:
    entry = {"task": task, "labels": LABELS, "files": {"train": "t.csv", "test": "t.csv"}, "format": "csv"}
    if task == "single_label":
        return {**entry, "official_metric": "accuracy", "label_column": "label"}
    return {**entry, "official_metric": "jaccard", "label_columns": LABELS}


def toy_params(task: str = "single_label", adapter: dict | None = None, tokenize: dict | None = None, **train):
    """Params as parse_params builds them, with small fast training settings (override via **train)."""
    train = {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "threads": 1, "checkpoint_every": 1000,
             "warmup_ratio": 0.0, **train}
    return parse_params({"seed": 7, "datasets": [], "fetch": {}, "clean": {}, "audit": {},
                         "adapter": {"r": 4, "alpha": 8, "dropout": 0.0, **(adapter or {})},
                         "tokenize": {"max_length": 32, **(tokenize or {})}, "train": train,
                         "dataset_registry": {DATASET: registry_entry(task)}})


def local_entry(folder: Path) -> dict:
    """A plan's model entry for a tiny model folder outside the repository (tests only)."""
    return {"name": Path(folder).name, "kind": "local", "folder": str(folder), "files": {}}


def prepare_run(root: Path, model_folder: Path, adapter: str, task: str = "single_label", *,
                sizes=(160, 60, 40), lr: float | None = None, params=None, **train):
    """Audited toy data, its tokenization for `model_folder` and the run's plan under `root`;
    returns (plan, RunPaths). Tokenization is reused when the run's folder already has it."""
    root = Path(root)
    params = params or toy_params(task, **train)
    model = local_entry(model_folder)
    audited = root / "data" / "audited" / DATASET
    if not (audited / "meta.json").exists():
        write_audited(audited, task, sizes)
    paths = run_paths(DATASET, model["name"], adapter, root)
    if not (paths.data / "meta.json").exists():
        paths.data.mkdir(parents=True, exist_ok=True)
        tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, DATASET, model), audited, paths.data)
    plan = plan_stage.run_plan(params, params.matrices()[0], DATASET, model, adapter)
    if lr is not None:  # as train.lr would set it: the head follows (plan.head_lr)
        plan = plan.with_train(lr=lr)
        plan = plan.with_train(head_lr=plan_stage.head_lr(adapter, lr, params.train.head_lr))
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json(), indent=2))
    return plan, paths
