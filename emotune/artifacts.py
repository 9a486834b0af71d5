"""Reading and writing a stage's data splits (parquet), written atomically (emotune/atomic.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from emotune.errors import EmotuneError
from emotune.paths import SPLITS


def save_splits(folder: Path, splits: dict[str, pd.DataFrame]) -> None:
    for split, frame in splits.items():
        frame.to_parquet(Path(folder) / f"{split}.parquet", index=False)


def load_splits(folder: Path) -> dict[str, pd.DataFrame]:
    folder = Path(folder)
    missing = [s for s in SPLITS if not (folder / f"{s}.parquet").exists()]
    if missing:
        raise EmotuneError(f"{folder}: missing {', '.join(s + '.parquet' for s in missing)}; "
                           f"run the upstream stage first (`dvc repro`)")
    splits = {s: pd.read_parquet(folder / f"{s}.parquet") for s in SPLITS}
    for frame in splits.values():  # parquet hands back numpy arrays; stages expect lists
        frame["labels"] = frame["labels"].map(list)
    return splits
