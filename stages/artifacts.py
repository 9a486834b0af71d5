"""Reading and writing stage outputs. Nothing is ever left half-written: every output is built
under a temporary name next to its final path and renamed into place only when complete."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pandas as pd

from stages.config import ROOT, SPLITS, EmotuneError


@contextmanager
def atomic_dir(final: Path):
    """Yield a fresh temporary directory that replaces `final` on success and vanishes on error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


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


def data_dir(kind: str, dataset: str) -> Path:
    return ROOT / "data" / kind / dataset


def metrics_path(kind: str, dataset: str, suffix: str = ".json") -> Path:
    return ROOT / "metrics" / kind / f"{dataset}{suffix}"


def run_stage(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main(); a user error prints one clear message instead of a traceback."""
    try:
        main(sys.argv[1:])
    except EmotuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
