"""ONNX export: a classifier run -> model.onnx (float32, or int8 by dynamic quantisation) that onnxruntime runs
without torch (emotune/exported.py loads it for `emotune predict` and `emotune serve`).

    emotune export emotion/minilm/lora --format onnx                    # -> exports/emotion/minilm/lora-onnx/
    emotune export emotion/minilm/lora --format onnx --quantize int8    # -> .../lora-onnx-int8/

The model exported is emotune/export.py's standalone one (LoRA / DoRA / IA3 merged into the base with peft
`merge_and_unload`, head and full as trained), traced by torch's ONNX exporter (`torch.onnx.export`, the
dynamo exporter, opset 18) with the batch and token axes dynamic. `--quantize int8` then quantises its
weights with `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations quantised at run time:
no calibration data needed).

Before anything is written, the ONNX model and the run's own PyTorch model score the run's whole test split
(data/tokenized/.../test.parquet): agreement of their decisions (argmax, or the tuned multi-label thresholds)
and the official metric of each go into export.json, the ONNX model's metadata and the model card. An export
whose official metric is more than `--max-metric-loss` points (default 1) below the PyTorch model's is
refused, and nothing is left on disk (emotune/atomic.py).
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from emotune import metrics
from emotune.adapter_table import adapter_entry
from emotune.atomic import atomic_dir
from emotune.errors import EmotuneError
from emotune.exported import EXPORT_FILE, INPUT_NAMES, ONNX_FILE, batched_logits, onnx_runner, onnx_session
from emotune.runs import Run, clean_settings, evaluation_facts, thresholds

DEFAULT_MAX_METRIC_LOSS = 1.0  # points (official metric x 100) the ONNX model may lose to the PyTorch one
OPSET = 18
QUANTIZE = ("int8",)
CHECK_BATCH = 64


@dataclass
class OnnxCheck:
    """The ONNX model against the run's PyTorch model on the whole test split."""

    rows: int
    source: str
    metric: str
    run_metric: float  # the run's PyTorch model
    export_metric: float  # this ONNX model
    metric_loss_points: float  # (run - export) x 100; negative: the ONNX model scored higher
    max_metric_loss_points: float  # the bound the export was held to
    label_agreement: float  # share of rows with the same decision(s)
    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    skipped: None = None  # (the model card's check table reads this key of every export check)


def onnx_export_dir(run: Run, quantize: str | None) -> Path:
    suffix = "-onnx" + (f"-{quantize}" if quantize else "")
    return run.root / "exports" / run.dataset / run.model / f"{run.adapter}{suffix}"


def export_graph(model, path: Path, example: dict) -> None:
    """Trace `model` (a transformers sequence classifier, float32, eval) to a single-file ONNX graph with
    dynamic batch and token axes; `example` is one padded batch of input_ids and attention_mask."""
    import torch

    model = model.float().eval()
    model.config.return_dict = True
    inputs = tuple(torch.from_numpy(example[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(model, inputs, str(path), input_names=list(INPUT_NAMES), output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=True, external_data=False,
                          verbose=False)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic quantisation: int8 weights (per channel), int8 activations scaled at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser re-runs ONNX shape inference; the dynamo exporter's recorded intermediate shapes can
    # contradict it ("Inferred shape and existing shape differ", seen on a merged LoRA classifier), so the
    # graph goes in without them and shape inference derives them afresh.
    model = onnx.load(str(source))
    del model.graph.value_info[:]
    quantize_dynamic(model, str(target), weight_type=QuantType.QInt8, per_channel=True)


def set_metadata(path: Path, props: dict[str, str]) -> None:
    """Write string metadata into the ONNX file (onnxruntime reads it as InferenceSession.get_modelmeta())."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def pytorch_logits(run: Run, model, frame, tokenizer) -> np.ndarray:
    """The run's own model on tokenized rows, through the code that scored validation in training."""
    from emotune.train import ClassificationBatches, ClassifierRecipe

    batches = ClassificationBatches(frame, tokenizer, run.multi_label)
    return ClassifierRecipe(run.plan, run.folder, "cpu").predict(model, batches, CHECK_BATCH,
                                                                 contextlib.nullcontext)["logits"]


def check_onnx(run: Run, reference, tokenizer, onnx_path: Path, max_loss: float) -> OnnxCheck:
    from emotune.merge import _test_rows

    frame, source = _test_rows(run, None, False)
    if frame is None:
        raise EmotuneError(f"ONNX export of {run.name}: no test split to check the ONNX model on ({source}); "
                           f"nothing was written")
    rows = [np.asarray(ids).tolist() for ids in frame["input_ids"]]
    session = onnx_session(onnx_path)
    cut = list(thresholds(run)) if run.multi_label else None
    probs = [metrics.probabilities(pytorch_logits(run, reference, frame, tokenizer), run.multi_label),
             metrics.probabilities(batched_logits(onnx_runner(session), rows, int(tokenizer.pad_token_id or 0),
                                                  CHECK_BATCH), run.multi_label)]
    decisions = [metrics.decide(p, run.multi_label, cut) for p in probs]
    targets = (np.stack(frame["labels"].map(np.asarray).to_numpy()).astype(np.float32) if run.multi_label
               else frame["labels"].to_numpy().astype(np.int64))
    metric = run.plan.dataset.official_metric
    run_score, export_score = (metrics.scores(targets, d, run.multi_label, len(run.labels))[metric]
                               for d in decisions)
    same = (np.all(decisions[0] == decisions[1], axis=1) if run.multi_label else decisions[0] == decisions[1])
    diff = np.abs(probs[0] - probs[1])
    return OnnxCheck(len(frame), source, metric, float(run_score), float(export_score),
                     round(float(run_score - export_score) * 100, 4), float(max_loss), float(same.mean()),
                     float(diff.max()), float(diff.mean()))


def standalone_model(run: Run, trained):
    """The model to trace: emotune/export.py's merged one. peft 0.21's IA3 `merge_and_unload` fails on BERT
    (AttributeError: 'BertPooler' object has no attribute 'weight', the pooler being a module to save); the
    IA3 scales are then merged in place (`merge_adapter`) and the wrapped model is traced, which computes the
    same (the merged layers run their base weights only)."""
    from emotune.merge import merged_model

    try:
        return merged_model(run, trained)
    except AttributeError:
        if run.adapter != "ia3":
            raise
        model = run.load().model
        model.merge_adapter()
        return model.eval()


def export_onnx(run: Run, out: Path | None = None, quantize: str | None = None,
                max_metric_loss: float = DEFAULT_MAX_METRIC_LOSS) -> Path:
    """Write model.onnx, the tokenizer, export.json and the model card to `out` (atomically), or refuse."""
    from emotune.model_card import model_card

    if run.generative:
        raise EmotuneError(f"{run.name}: ONNX export is for classifier runs; export a generative run as a "
                           f"transformers model (`emotune export {run.name}`)")
    if quantize is not None and quantize not in QUANTIZE:
        raise EmotuneError(f"--quantize {quantize!r}: one of {', '.join(QUANTIZE)}")
    if max_metric_loss < 0:
        raise EmotuneError(f"--max-metric-loss {max_metric_loss}: a number of points >= 0")
    out = Path(out) if out is not None else onnx_export_dir(run, quantize)
    # params.yaml's normalisation and the run's thresholds are read before the minute of export and
    # checking, so a bad params file or a stale evaluation stops the export at once
    clean, tweets = clean_settings(run.dataset, run.root)
    cut = thresholds(run)
    trained = run.load()
    standalone = standalone_model(run, trained)
    tokenizer = trained.tokenizer
    tokenizer.model_max_length = run.max_length
    # Two rows of different lengths: the traced graph sees padding, and no axis is specialised to 1.
    encoded = tokenizer(["i feel fine today, thanks for asking", "so tired"], padding=True)
    example = {name: np.asarray(encoded[name], dtype=np.int64) for name in INPUT_NAMES}
    with atomic_dir(out) as tmp:
        graph = tmp / ONNX_FILE
        export_graph(standalone, graph if quantize is None else tmp / "float32.onnx", example)
        if quantize == "int8":
            quantize_int8(tmp / "float32.onnx", graph)
            (tmp / "float32.onnx").unlink()
        check = check_onnx(run, trained.model, tokenizer, graph, max_metric_loss)
        if check.metric_loss_points > max_metric_loss:
            raise EmotuneError(
                f"ONNX export of {run.name}{f' ({quantize})' if quantize else ''}: {check.metric} "
                f"{check.export_metric:.4f} vs the PyTorch model's {check.run_metric:.4f} on {check.rows} test "
                f"rows, {check.metric_loss_points:.2f} points lost (> --max-metric-loss {max_metric_loss}); "
                f"decisions agree on {check.label_agreement:.1%} of rows. Nothing was written; export without "
                f"--quantize, or raise --max-metric-loss to accept the loss")
        info = {
            "run": run.name, "adapter": run.adapter, "qlora_base": "dequantized" if adapter_entry(run.adapter).quantized
            else None, "kind": "sequence_classification", "format": "onnx", "quantize": quantize,
            "labels": run.labels, "task": run.plan.dataset.task,
            "thresholds": cut.tolist() if cut is not None else None,
            "max_length": run.max_length, "pad_token_id": tokenizer.pad_token_id,
            "normalisation": {**asdict(clean), "tweets": tweets},
            "prompt": None, "opset": OPSET, "inputs": list(INPUT_NAMES),
            "check": asdict(check),
            "evaluation": evaluation_facts(run.path("eval")),  # what `emotune serve` reports at GET /model
        }
        set_metadata(graph, {"emotune": json.dumps({k: info[k] for k in ("run", "labels", "task", "thresholds",
                                                                          "max_length", "quantize", "check")}),
                             "labels": json.dumps(run.labels), "task": info["task"],
                             "thresholds": json.dumps(info["thresholds"])})
        tokenizer.save_pretrained(tmp)
        standalone.config.save_pretrained(tmp)  # id2label / label2id, for tools that read config.json
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(run, info))
        if not (tmp / "tokenizer.json").is_file():
            raise EmotuneError(f"ONNX export of {run.name}: the run's tokenizer is not a fast tokenizer (no "
                               f"tokenizer.json), which the torch-free runtime needs; nothing was written")
    return out
