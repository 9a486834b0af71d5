"""The rows a run or baseline learns from: reading a tokenized split, the seeded sample of
`train.max_train_examples`, length-sorted evaluation batches, and label names -> targets. Shared by the
classifier and generative recipes (emotune/train.py, generative.py), evaluate and the baselines, so every
arm of a comparison sees the same rows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emotune.errors import EmotuneError


def label_targets(labels: pd.Series, classes: list[str], multi_label: bool, where: str) -> list:
    """Class id per row (single-label) or a multi-hot float list (multi-label)."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({n for names in labels for n in names if n not in index})
    if unknown:
        raise EmotuneError(f"{where}: labels {unknown} are not among the dataset's labels {classes}")
    if multi_label:
        out = []
        for names in labels:
            row = [0.0] * len(classes)
            for n in names:
                row[index[n]] = 1.0
            out.append(row)
        return out
    bad = [i for i, names in enumerate(labels) if len(names) != 1]
    if bad:
        raise EmotuneError(f"{where}: single-label dataset, but row {bad[0]} has labels {list(labels.iloc[bad[0]])}")
    return [index[names[0]] for names in labels]


def load_rows(data_dir: Path, split: str, generative: bool = False) -> pd.DataFrame:
    path = Path(data_dir) / (f"gen_{split}.parquet" if generative else f"{split}.parquet")
    if not path.exists():
        raise EmotuneError(f"{path}: missing; run the tokenize stage first (`dvc repro`)"
                           + (" (only decoder models get gen_*.parquet)" if generative else ""))
    return pd.read_parquet(path)


def sample_rows(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` rows, a seeded random sample kept in the original order."""
    if cap is None or cap >= len(frame):
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=cap, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def eval_batches(lengths, batch_size: int) -> list[np.ndarray]:
    """Evaluation needs no randomness: sort by length once, cut into batches."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
