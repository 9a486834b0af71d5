"""predict: label new texts with a trained run.

    emotune predict emotion/minilm/lora --text "i feel great" --text "so tired of all this"
    emotune predict --best emotion --input reviews.csv --text-column review --output preds.csv
    cat texts.txt | emotune predict emotion/minilm/lora > preds.jsonl

A run is `<dataset>/<model>/<adapter>`, the folder `models/<dataset>/<model>/<adapter>/` the train stage
wrote, or `--best <dataset>`: the best run of that dataset on metrics/leaderboard.json. An export folder
(`emotune export`, transformers or ONNX) predicts the same way, with the same inputs and outputs; an ONNX
export runs on onnxruntime without importing torch (emotune/exported.py). Texts come from
`--text` (repeatable), `--input FILE` or stdin, as CSV, TSV, JSONL, Parquet or plain lines (.txt), by extension or
`--format`, read by emotune/readers.py (the reader of dataset files too). Each text is normalised exactly as
the clean stage normalised the training data, then classified in length-sorted batches. Output (CSV or
JSONL, by `--output`'s extension or `--output-format`): the label (multi-label: the set of labels whose
probability is above the run's tuned threshold) and every label's probability. Generative runs (gen_lora,
gen_qlora) answer with label words: their raw answer is written too, and an answer that names no valid
label is reported as invalid, never mapped to a label.

Finding and loading a run, shared with export and explain, is emotune/runs.py.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# Idle OpenMP threads sleep instead of spinning (see emotune/train.py); before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from emotune import metrics, readers  # noqa: E402
from emotune.atomic import write_atomic  # noqa: E402
from emotune.errors import EmotuneError, did_you_mean, run_cli  # noqa: E402
from emotune.paths import project_root  # noqa: E402
from emotune.runs import Run, add_run_arguments, evaluation_facts, normaliser, quiet_transformers, run_from_args, thresholds, warn  # noqa: E402

CHUNK_BATCHES = 8  # batches per progress-bar step: long enough to sort by length well, short enough to tick


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------
# Formats and their extensions are emotune/readers.py's, as for dataset files; stdin has no extension.
STDIN_FORMAT = "lines"
PICK_FORMAT = f"pass --format {' | '.join(readers.FORMATS)}"


@dataclass
class Inputs:
    texts: list[str]
    source: str  # for messages: a file name, "stdin" or "--text"
    rows: list[int]  # each text's line (files, stdin) or position (--text), 1-based
    ids: list[str] | None = None  # the input's id column, carried to the output


def input_format(path: Path | None, fmt: str | None) -> str:
    if path is None:
        return fmt or STDIN_FORMAT  # stdin: one text per line unless --format says otherwise
    return readers.file_format(path, fmt, PICK_FORMAT)


def read_inputs(texts: list[str] | None, path: Path | None, stdin, fmt: str | None = None,
                text_column: str = "text", id_column: str | None = "id") -> Inputs:
    """Texts from --text, a file, or `stdin` (a binary stream); see the module docstring."""
    if texts:
        if path is not None:
            raise EmotuneError("give texts with --text or --input, not both")
        empty = [i for i, t in enumerate(texts, 1) if not t.strip()]
        if empty:
            raise EmotuneError(f"--text number {empty[0]} is empty; give a text to classify")
        return Inputs(list(texts), "--text", list(range(1, len(texts) + 1)))
    if path is not None:
        if not path.is_file():
            raise EmotuneError(f"{path}: no such file (--input)")
        source, data = str(path), path.read_bytes()
    else:
        if stdin is None or stdin.isatty():
            raise EmotuneError("no texts: give them with --text \"...\", --input FILE, or on stdin")
        source, data = "stdin", stdin.read()
    fmt = input_format(path, fmt)
    table = readers.read_rows(data, fmt, source, wanted=(text_column,),
                              how_to_declare=f"{PICK_FORMAT} (or re-save the file as CSV)")
    records, lines, columns = table.rows, table.lines, table.columns
    if not records:
        raise EmotuneError(f"{source}: no texts to predict (the input is empty"
                           f"{' or has only a header' if fmt in ('csv', 'tsv') else ''})")
    if text_column not in columns:
        raise EmotuneError(f"{source}: no column {text_column!r}{did_you_mean(text_column, columns)}; its "
                           f"columns are {', '.join(map(repr, columns))}: pass --text-column NAME")
    values = [r.get(text_column) for r in records]
    bad = [line for line, v in zip(lines, values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise EmotuneError(f"{source}: line {bad[0]}: no text in column {text_column!r}"
                           f"{f' (and {len(bad) - 1} more lines)' if len(bad) > 1 else ''}; fill or remove "
                           f"{'it' if len(bad) == 1 else 'them'}")
    ids = [str(r.get(id_column, "")) for r in records] if id_column and id_column in columns else None
    return Inputs(values, source, lines, ids)


# ---------------------------------------------------------------------------------------------
# Predicting
# ---------------------------------------------------------------------------------------------
@dataclass
class Predictions:
    labels: list[str]
    multi_label: bool
    predicted: list[list[str] | None]  # label names per text; None: an invalid generated answer
    probabilities: np.ndarray | None = None  # (texts, labels); classifiers only
    answers: list[str] | None = None  # generative runs: the raw answers
    thresholds: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="text", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def classifier_probabilities(trained, run: Run, texts: list[str], batch_size: int, device: str = "cpu",
                             show_progress: bool = True) -> np.ndarray:
    """Softmax (single-label) or sigmoid (multi-label) probabilities, (texts, labels). Texts are tokenized
    as the tokenize stage does (truncated at the run's max_length, no padding); the batches go through
    emotune/train.py ClassifierRecipe.predict, the code that scored validation during training."""
    import contextlib

    import pandas as pd

    from emotune.train import ClassificationBatches, ClassifierRecipe

    tokenizer = trained.tokenizer
    encoded = tokenizer(texts, truncation=True, max_length=run.max_length)
    ids = [np.asarray(x, dtype=np.int32) for x in encoded["input_ids"]]
    dummy = [0.0] * len(run.labels) if run.multi_label else 0  # labels the recipe expects; never read
    frame = pd.DataFrame({"input_ids": ids, "attention_mask": [np.asarray(m, dtype=np.int8)
                                                               for m in encoded["attention_mask"]],
                          "labels": [dummy] * len(texts), "length": [len(x) for x in ids]})
    recipe = ClassifierRecipe(run.plan, run.folder, device)
    logits = np.zeros((len(texts), len(run.labels)), dtype=np.float32)
    # Length-sorted chunks: each chunk's batches pad little, and the progress bar ticks per chunk.
    order = np.argsort(frame["length"].to_numpy(), kind="stable")
    chunk = batch_size * CHUNK_BATCHES
    with progress(len(texts), show_progress) as bar:
        for start in range(0, len(order), chunk):
            idx = order[start:start + chunk]
            split = ClassificationBatches(frame.iloc[idx].reset_index(drop=True), tokenizer, run.multi_label)
            logits[idx] = recipe.predict(trained.model, split, batch_size, contextlib.nullcontext)["logits"]
            bar.update(len(idx))
    return metrics.probabilities(logits, run.multi_label)  # exactly what the evaluate stage scored


def predict(run: Run, texts: list[str], *, trained=None, batch_size: int = 32, device: str = "cpu",
            show_progress: bool = True) -> Predictions:
    """Predictions for raw `texts` (normalised here, as clean normalised the training data)."""
    clean = normaliser(run.dataset, run.root)
    prepared = [clean(t) for t in texts]
    trained = trained or run.load(None if device == "cpu" else device)
    if run.generative:
        predicted, answers = [], []
        with progress(len(texts), show_progress) as bar:
            for start in range(0, len(prepared), batch_size * CHUNK_BATCHES):
                labels, raw = trained.predict(prepared[start:start + batch_size * CHUNK_BATCHES],
                                              max_length=run.max_length, batch_size=batch_size, device=device)
                predicted += labels
                answers += raw
                bar.update(len(raw))
        result = Predictions(run.labels, run.multi_label, predicted, answers=answers)
        invalid = sum(p is None for p in predicted)
        if invalid:
            result.notes.append(f"{invalid} of {len(texts)} answers name no valid label (written with "
                                f"valid=false and their raw answer; not mapped to a label)")
        return result
    probs = classifier_probabilities(trained, run, prepared, batch_size, device, show_progress)
    if run.multi_label:
        cut = thresholds(run)
        chosen = metrics.decide(probs, True, list(cut))  # the evaluate stage's decision rule
        predicted = [[run.labels[j] for j in np.flatnonzero(row)] for row in chosen]
        return Predictions(run.labels, True, predicted, probs, thresholds=cut)
    return Predictions(run.labels, False, [[run.labels[int(i)]] for i in probs.argmax(1)], probs)


def predict_export(model, texts: list[str], batch_size: int = 32) -> Predictions:
    """Predictions of a loaded classifier export (emotune/exported.py ExportedClassifier) for raw `texts`:
    normalised as the run's training data, then the run's decision rule."""
    probs = model.probabilities(texts, batch_size)
    return Predictions(model.labels, model.multi_label, model.decide(probs), probs, thresholds=model.thresholds)


@dataclass
class Predictor:
    """What `emotune predict` and `emotune serve` run: a trained run or an export folder, loaded once."""

    name: str
    labels: list[str]
    multi_label: bool
    predict: Callable[..., Predictions]  # (texts, batch_size=32, show_progress=False) -> Predictions
    facts: dict  # what its model card says: dataset, task, labels, official metric (and interval) if known
    runtime: str  # "pytorch" (a run), "transformers" or "onnxruntime" (exports)


def run_predictor(run: Run, device: str = "cpu") -> Predictor:
    trained = run.load(None if device == "cpu" else device)

    def run_predict(texts: list[str], batch_size: int = 32, show_progress: bool = False) -> Predictions:
        return predict(run, texts, trained=trained, batch_size=batch_size, device=device, show_progress=show_progress)

    facts = {"source": "run", "run": run.name, "dataset": run.dataset, "task": run.plan.dataset.task,
             "labels": run.labels, "metric": {"name": run.plan.dataset.official_metric,
                                              **evaluation_facts(run.path("eval"))}}
    return Predictor(run.name, run.labels, run.multi_label, run_predict, facts, "pytorch")


def export_predictor(folder: Path, threads: int | None = None) -> Predictor:
    from emotune.exported import load_export

    model = load_export(folder, threads)
    info = model.info

    def export_predict(texts: list[str], batch_size: int = 32, show_progress: bool = False) -> Predictions:
        return predict_export(model, texts, batch_size)

    check = info.get("check") or {}
    metric = {"name": check.get("metric"), **(info.get("evaluation") or {})}
    if not check.get("skipped") and check.get("export_metric") is not None:
        metric.update({"export_check_value": check["export_metric"], "export_check_rows": check["rows"],
                       "pytorch_check_value": check["run_metric"]})
    facts = {"source": "export", "run": info.get("run"), "dataset": str(info.get("run", "")).split("/")[0] or None,
             "task": info["task"], "labels": model.labels, "format": info.get("format", "transformers"),
             "quantize": info.get("quantize"), "metric": metric}
    return Predictor(str(folder), model.labels, model.multi_label, export_predict, facts, model.runtime)


def load_predictor(target: str | None, best: str | None, root: Path, device: str = "cpu",
                   threads: int | None = None) -> Predictor:
    """`target`: a run name or an export folder (a path holding export.json); `best`: --best DATASET."""
    from emotune.exported import is_export

    if target and not best and is_export(Path(target)):
        return export_predictor(Path(target), threads)
    run = run_from_args(argparse.Namespace(run=target, best=best), root)
    return run_predictor(run, device)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def records(inputs: Inputs, result: Predictions) -> list[dict]:
    """One flat-ish dict per text: id (when the input had one), text, label or labels, and either the
    probabilities (classifiers) or the raw answer and its validity (generative runs)."""
    out = []
    for i, text in enumerate(inputs.texts):
        row = {"id": inputs.ids[i]} if inputs.ids else {}
        row["text"] = text
        names = result.predicted[i]
        if result.multi_label:
            row["labels"] = names
        else:
            row["label"] = names[0] if names else None
        if result.probabilities is not None:
            row["probabilities"] = {label: round(float(p), 6)
                                    for label, p in zip(result.labels, result.probabilities[i])}
        if result.answers is not None:
            row["answer"] = result.answers[i]
            row["valid"] = names is not None
        out.append(row)
    return out


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    flat = []
    for r in rows:  # CSV: labels joined with "|", one prob_<label> column per label
        f = {k: v for k, v in r.items() if k != "probabilities"}
        if "labels" in f:
            f["labels"] = "|".join(f["labels"]) if f["labels"] is not None else ""
        f.update({f"prob_{k}": v for k, v in r.get("probabilities", {}).items()})
        flat.append(f)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def output_format(path: Path | None, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path is None:
        return "jsonl"
    suffix = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower())
    if suffix is None:
        raise EmotuneError(f"{path}: cannot tell the output format from {path.suffix!r}; use .csv or .jsonl, "
                           f"or pass --output-format csv | jsonl")
    return suffix


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Label texts with a trained run or an export folder "
                                                 "(see docs/use.md)")
    add_run_arguments(parser)  # (the positional also takes an export folder: a path holding export.json)
    parser.add_argument("--text", action="append", help="a text to classify (repeatable)")
    parser.add_argument("--input", type=Path, help="CSV, TSV, JSONL or .txt (one text a line); default stdin")
    parser.add_argument("--format", choices=readers.FORMATS, help="input format (default: by extension; stdin: lines)")
    parser.add_argument("--text-column", default="text", help="column (CSV/TSV) or key (JSONL) of the texts")
    parser.add_argument("--output", type=Path, help="file to write (.csv or .jsonl); default stdout")
    parser.add_argument("--output-format", choices=("csv", "jsonl"), help="default: by --output's extension; jsonl")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    from emotune.exported import is_export

    exported = bool(args.run) and not args.best and is_export(Path(args.run))
    if not exported:
        run_from_args(args, project_root())  # a wrong run name fails before the input is read
    out_fmt = output_format(args.output, args.output_format)
    inputs = read_inputs(args.text, args.input, None if args.text or args.input else sys.stdin.buffer,
                         args.format, args.text_column)
    if exported:  # no torch for an ONNX export: neither devices nor transformers are imported
        predictor = export_predictor(Path(args.run))
    else:
        from emotune.devices import pick_device

        quiet_transformers()
        predictor = load_predictor(args.run, args.best, project_root(), device=pick_device())
    many = len(inputs.texts) > args.batch_size * CHUNK_BATCHES
    result = predictor.predict(inputs.texts, batch_size=args.batch_size, show_progress=not args.no_progress and many)
    for note in result.notes:
        warn(note)
    text = render(records(inputs, result), out_fmt)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomic(args.output, lambda p: p.write_text(text, encoding="utf-8"))
        warn(f"{len(inputs.texts)} predictions of {predictor.name} -> {args.output}")


if __name__ == "__main__":
    run_cli(main)
