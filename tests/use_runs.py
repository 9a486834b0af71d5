"""Helpers for the predict/export/explain tests: a throw-away project root holding params.yaml and tiny
runs trained (in-process, seconds each) on the learnable toy dataset of toy_runs.py."""
from __future__ import annotations

from pathlib import Path

import yaml
from toy_runs import DATASET, prepare_run, registry_entry

from emotune import train as tr
from emotune.config import parse_params

LR = {"full": 2e-3, "head": 2e-2, "lora": 1e-2, "dora": 1e-2, "ia3": 5e-2, "qlora": 1e-2,
      "gen_lora": 2e-2, "gen_qlora": 2e-2}
# Texts built from one label's cue words (toy_runs.CUES); a trained toy run gets them right.
CUE_TEXTS = {"joy": "i am so happy and great today", "anger": "they hate this awful terrible day",
             "sadness": "we are lonely and sad tonight"}


def raw_params(task: str) -> dict:
    # tweets: true so that normalisation masks mentions and URLs, as for the tweet datasets
    return {"seed": 7, "datasets": [DATASET], "fetch": {}, "clean": {}, "audit": {},
            "adapter": {"r": 4, "alpha": 8, "dropout": 0.0}, "tokenize": {"max_length": 32},
            "train": {"epochs": 3, "batch_size": 16, "eval_batch_size": 64, "threads": 1,
                      "checkpoint_every": 1000, "warmup_ratio": 0.0},
            "dataset_registry": {DATASET: {**registry_entry(task), "tweets": True}}}


def make_project(root: Path, task: str = "single_label") -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params(task), sort_keys=False))
    return root


# A tiny-Llama LoRA run that names every cue text right (CUE_TEXTS), for the tests that check labels. Under
# Trainer (3 epochs of 10 steps, shuffled length groups) lr 1e-2 called the joy text "sadness"; 2e-2 gets all
# three (measured 2026-12-01; 1.5e-2, 3e-2 and 2e-2 x 4 epochs each missed one: the toy run is on a knife edge).
CUE_LORA_LR = 2e-2


def train_run(root: Path, model_folder: Path, adapter: str, task: str = "single_label", lr: float | None = None,
              **train) -> str:
    """Train one toy run under `root` (made with make_project); returns its name dataset/model/adapter."""
    raw = raw_params(task)
    raw["train"].update(train)
    if adapter.startswith("gen_"):
        raw["train"]["batch_size"] = 8
    params = parse_params(raw)
    plan, paths = prepare_run(root, model_folder, adapter, task, lr=lr or LR[adapter], params=params)
    tr.train(plan, paths, log=lambda message: None)
    return f"{DATASET}/{plan.model['name']}/{adapter}"
