"""A classifier export (`emotune export`), loaded for inference by `emotune predict` and `emotune serve`.

An ONNX export (emotune/onnx_export.py) runs with onnxruntime and the `tokenizers` library only: no torch,
no transformers, so a command on it starts in a fraction of a second. Its folder holds

    model.onnx       the classifier: input_ids, attention_mask (int64, batch x tokens) -> logits
    tokenizer.json   the run's fast tokenizer, as transformers saved it
    export.json      labels, task, thresholds, max_length, normalisation, the export check

A transformers export (emotune/export.py: safetensors + the same tokenizer.json and export.json) runs the
same way with `AutoModelForSequenceClassification` computing the logits.

Texts are normalised as the run's training data was (emotune/text.py), tokenized as the tokenize stage did
(special tokens added, cut at the run's max_length), and classified in length-sorted batches padded to
their longest row, like emotune/train.py ClassifierRecipe.predict.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from emotune import metrics
from emotune.atomic import read_json
from emotune.errors import EmotuneError

ONNX_FILE = "model.onnx"
EXPORT_FILE = "export.json"  # as emotune/export.py
TOKENIZER_FILE = "tokenizer.json"
INPUT_NAMES = ("input_ids", "attention_mask")


def is_export(path: Path) -> bool:
    """A folder `emotune export` wrote (transformers or ONNX): it has export.json."""
    return Path(path).is_dir() and (Path(path) / EXPORT_FILE).is_file()


def is_onnx_export(path: Path) -> bool:
    return is_export(path) and (Path(path) / ONNX_FILE).is_file()


def session_options(threads: int | None = None):
    """onnxruntime session options: every graph optimisation; `threads` intra-op threads (None: the
    OMP_NUM_THREADS the process was given, else onnxruntime's default of one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def pad_batch(rows: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 input_ids and attention_mask, as wide as the longest row."""
    width = max(map(len, rows))
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def batched_logits(logits_of: Callable[[dict[str, np.ndarray]], np.ndarray], rows: list[list[int]], pad_id: int,
                   batch_size: int) -> np.ndarray:
    """Logits of token-id rows, in row order, from length-sorted batches (little padding)."""
    order = np.argsort([len(r) for r in rows], kind="stable")
    out: np.ndarray | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        logits = logits_of(pad_batch([rows[i] for i in idx], pad_id))
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def onnx_session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def onnx_runner(session) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    return lambda batch: session.run(["logits"], batch)[0]


def torch_runner(model) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A transformers classifier as a numpy batch -> logits function (imports torch: transformers exports)."""
    import torch

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.float().numpy()

    return run


@dataclass
class ExportedClassifier:
    """A loaded classifier export: `probabilities(texts)` for raw texts, `decide(probs)` for the label(s)."""

    folder: Path
    info: dict  # export.json
    logits_of: Callable[[dict[str, np.ndarray]], np.ndarray]  # a padded batch -> (batch, labels) logits
    tokenizer: object  # tokenizers.Tokenizer, truncating at the run's max_length, no padding
    pad_id: int
    runtime: str  # "onnxruntime" or "transformers"

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def multi_label(self) -> bool:
        return self.info["task"] == "multi_label"

    @property
    def thresholds(self) -> np.ndarray | None:
        return np.asarray(self.info["thresholds"], dtype=np.float64) if self.multi_label else None

    def normalise(self, text: str) -> str:
        from emotune.config import CleanConfig, build
        from emotune.text import normalise

        settings = dict(self.info["normalisation"])
        tweets = bool(settings.pop("tweets", False))
        return normalise(text, build(CleanConfig, settings, f"{self.folder / EXPORT_FILE}: normalisation"), tweets)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def probabilities(self, texts: list[str], batch_size: int = 32, normalised: bool = False) -> np.ndarray:
        """(texts, labels) softmax or sigmoid probabilities; texts are normalised first unless `normalised`."""
        prepared = texts if normalised else [self.normalise(t) for t in texts]
        logits = batched_logits(self.logits_of, self.token_ids(prepared), self.pad_id, batch_size)
        return metrics.probabilities(logits, self.multi_label)

    def decide(self, probs: np.ndarray) -> list[list[str]]:
        """Label names per row: the argmax, or (multi-label) every label at or above its tuned threshold,
        the evaluate stage's rule (emotune/metrics.py decide)."""
        chosen = metrics.decide(probs, self.multi_label, list(self.thresholds) if self.multi_label else None)
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(row)] for row in chosen]
        return [[self.labels[int(i)]] for i in chosen]


def read_export_info(folder: Path) -> dict:
    path = Path(folder) / EXPORT_FILE
    try:
        info = read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise EmotuneError(f"{path}: cannot read the export's metadata ({exc}); re-export the run") from None
    if info.get("kind") == "causal_lm":
        raise EmotuneError(f"{path.parent}: a generative (causal LM) export; predict and serve take classifier "
                           f"exports, or the run itself (emotune predict RUN)")
    missing = [k for k in ("labels", "task", "thresholds", "max_length", "normalisation") if k not in info]
    if missing:
        raise EmotuneError(f"{path}: missing {', '.join(missing)}; it was not written by `emotune export` "
                           f"(re-export the run)")
    return info


def load_tokenizer(folder: Path, max_length: int):
    """The export's tokenizer.json with the `tokenizers` library: special tokens added, cut at max_length."""
    from tokenizers import Tokenizer

    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise EmotuneError(f"{path}: missing; the export has no fast tokenizer (re-export the run)")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(max_length))
    return tokenizer


def load_export(folder: Path, threads: int | None = None) -> ExportedClassifier:
    """Load a classifier export folder: ONNX (onnxruntime, no torch) or transformers (safetensors)."""
    folder = Path(folder)
    if not is_export(folder):
        raise EmotuneError(f"{folder}: not an emotune export (no {EXPORT_FILE}); run `emotune export RUN` "
                           f"(add --format onnx for an ONNX model)")
    info = read_export_info(folder)
    tokenizer = load_tokenizer(folder, info["max_length"])
    pad = info.get("pad_token_id")
    if is_onnx_export(folder):
        runner, runtime = onnx_runner(onnx_session(folder / ONNX_FILE, threads)), "onnxruntime"
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
        pad = pad if pad is not None else model.config.pad_token_id
        runner, runtime = torch_runner(model), "transformers"
    return ExportedClassifier(folder, info, runner, tokenizer, int(pad) if pad is not None else 0, runtime)
