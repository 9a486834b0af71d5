"""export: a trained run -> a standalone model folder that plain transformers loads, with a model card.

    emotune export emotion/minilm/lora                 # -> exports/emotion/minilm/lora/
    emotune export --best emotion --out my-model

Classifier runs become an `AutoModelForSequenceClassification` folder (safetensors weights, tokenizer,
`id2label`/`label2id`, `problem_type`) that `transformers.pipeline("text-classification", model=<folder>)`
loads with no emotune code:

* lora / dora / ia3: the adapter is merged into the base weights (peft `merge_and_unload`), head included.
* full / head: the trained model as is (head: the frozen base with the trained head).
* qlora: a float32 model. The LoRA update was trained on top of the 4-bit NF4 base, so by default
  (`--qlora-base dequantized`) it is merged into the dequantised NF4 weights: the export computes what the
  evaluated 4-bit model computes. `--qlora-base original` merges into the original float weights instead
  (what a plain "load the base in float32, merge" gives); the base then differs from the one the adapter
  was trained against by the NF4 rounding error, and the check below measures what that costs.

Generative runs (gen_lora, gen_qlora) become the merged causal LM (`AutoModelForCausalLM`); its card gives
the prompt and how to parse the answer. They are exported rather than refused because the merged model is
the useful artefact (no peft, no 4-bit kernels needed); it is not a text-classification pipeline model.

Every export is checked before it is written: the exported model and the run's own (unmerged, for qlora
4-bit) model score the same test rows (data/tokenized/...; `--check-rows`), and the largest probability
difference, the label agreement and both official metrics go into the model card (README.md) and
export.json. A classifier export whose probabilities differ by more than `TOLERANCE` is refused, except for
`--qlora-base original`, where a difference is the expected, reported cost.

`--push-to-hub owner/name` then uploads the checked folder (weights, tokenizer, export.json, the model
card README.md with its Hub front matter) with huggingface_hub: `HfApi.create_repo(exist_ok=True)`, then one
`HfApi.upload_folder` commit. The repo id is validated before any work; the token is huggingface_hub's
own (`HF_TOKEN` or `hf auth login`), never a command-line argument.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from emotune.adapter_table import adapter_entry  # noqa: E402
from emotune.atomic import atomic_dir, read_json  # noqa: E402
from emotune.errors import EmotuneError, run_cli
from emotune.merge import _test_rows, merged_model
from emotune.paths import project_root  # noqa: E402
from emotune.runs import (
    Run,
    add_run_arguments,
    clean_settings,
    evaluation_facts,
    quiet_transformers,
    run_from_args,
    thresholds,
)

TOLERANCE = 1e-4  # max |probability difference| between the exported and the run's model
EXPORT_FILE = "export.json"


# ---------------------------------------------------------------------------------------------
# The check: exported vs the run's own model on test rows
# ---------------------------------------------------------------------------------------------
@dataclass
class Check:
    rows: int
    source: str
    max_abs_prob_diff: float | None = None  # classifiers
    mean_abs_prob_diff: float | None = None
    label_agreement: float | None = None  # share of rows with the same predicted label(s) / answer
    metric: str = ""
    run_metric: float | None = None  # the run's model (4-bit for qlora) on these rows
    export_metric: float | None = None
    skipped: str | None = None


def check_classifier(run: Run, reference, exported, tokenizer, limit: int) -> Check:
    import torch

    from emotune.metrics import scores
    from emotune.train import ClassificationBatches, ClassifierRecipe

    frame, source = _test_rows(run, limit, False)
    if frame is None:
        return Check(0, "", skipped=source)
    batches = ClassificationBatches(frame, tokenizer, run.multi_label)
    recipe = ClassifierRecipe(run.plan, run.folder, "cpu")
    metric = run.plan.dataset.official_metric
    cut = thresholds(run) if run.multi_label else None
    probs, preds = [], []
    for model in (reference, exported):
        logits = torch.from_numpy(recipe.predict(model, batches, 64, contextlib.nullcontext)["logits"])
        p = (torch.sigmoid(logits) if run.multi_label else torch.softmax(logits, -1)).numpy().astype(np.float64)
        probs.append(p)
        preds.append((p > cut).astype(np.float32) if run.multi_label else p.argmax(1))
    diff = np.abs(probs[0] - probs[1])
    agree = np.all(preds[0] == preds[1], axis=1) if run.multi_label else preds[0] == preds[1]
    run_score, export_score = (scores(batches.targets, p, run.multi_label, len(run.labels))[metric] for p in preds)
    return Check(len(frame), source, float(diff.max()), float(diff.mean()), float(agree.mean()), metric,
                 run_score, export_score)


def check_generative(run: Run, reference, exported, tokenizer, limit: int) -> Check:
    from emotune.generative import GenerativeBatches, decode_predictions, generate
    from emotune.metrics import scores
    from emotune.prompts import eos_id

    frame, source = _test_rows(run, limit, True)
    if frame is None:
        return Check(0, "", skipped=source)
    batches = GenerativeBatches(frame, tokenizer.pad_token_id, run.multi_label)
    idx = list(range(len(frame)))
    answers = []
    for model in (reference, exported):
        ids = []
        for start in range(0, len(idx), 32):
            ids += generate(model, batches, idx[start:start + 32], run.metadata["prompt"]["max_new_tokens"],
                            eos_id(tokenizer), "cpu", contextlib.nullcontext)
        answers.append([tokenizer.decode(a, skip_special_tokens=True) for a in ids])
    metric = run.plan.dataset.official_metric
    values = []
    for texts in answers:
        pred, invalid = decode_predictions(texts, run.labels, run.multi_label)
        values.append(scores(batches.targets, pred, run.multi_label, len(run.labels), invalid)[metric])
    agree = float(np.mean([a == b for a, b in zip(*answers)]))
    return Check(len(frame), source, label_agreement=agree, metric=metric, run_metric=values[0],
                 export_metric=values[1])


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
def export_dir(run: Run) -> Path:
    return run.root / "exports" / run.dataset / run.model / run.adapter


def export(run: Run, out: Path | None = None, qlora_base: str = "dequantized", check_rows: int = 256) -> Path:
    """Write the standalone model, export.json and the model card to `out` (replaced atomically)."""
    from emotune.model_card import model_card

    out = Path(out) if out is not None else export_dir(run)
    trained = run.load()
    exported = merged_model(run, trained, qlora_base)
    tokenizer = trained.tokenizer
    checker = check_generative if run.generative else check_classifier
    check = checker(run, trained.model, exported, tokenizer, check_rows)
    quantized = adapter_entry(run.adapter).quantized
    lossy = quantized and qlora_base == "original"
    if check.max_abs_prob_diff is not None and check.max_abs_prob_diff > TOLERANCE and not lossy:
        raise EmotuneError(f"export of {run.name}: the exported model's probabilities differ from the run's by "
                           f"up to {check.max_abs_prob_diff:.2e} (> {TOLERANCE}) on {check.rows} test rows; "
                           f"nothing was written. Please report this with the run's run.json")
    if check.label_agreement is not None and check.label_agreement < 1 and run.generative and not lossy:
        raise EmotuneError(f"export of {run.name}: the merged model answers {1 - check.label_agreement:.1%} of "
                           f"{check.rows} test prompts differently from the adapter; nothing was written")
    if not run.generative:  # pipeline(..., truncation=True) then cuts texts where training did
        tokenizer.model_max_length = run.max_length
    clean, tweets = clean_settings(run.dataset, run.root)
    cut = thresholds(run) if not run.generative else None
    info = {
        "run": run.name, "adapter": run.adapter, "qlora_base": qlora_base if quantized else None,
        "kind": "causal_lm" if run.generative else "sequence_classification",
        "labels": run.labels, "task": run.plan.dataset.task,
        "thresholds": cut.tolist() if cut is not None else None,
        "max_length": run.max_length,
        "normalisation": {**asdict(clean), "tweets": tweets},
        "prompt": run.metadata.get("prompt"),
        "check": asdict(check),
        "evaluation": evaluation_facts(run.path("eval")),  # what `emotune serve` reports at GET /model
    }
    with atomic_dir(out) as tmp:
        exported.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(run, info))
        # A folder only the emotune loader reads would defeat the point: refuse one without weights.
        if not list(tmp.glob("*.safetensors")):
            raise EmotuneError(f"export of {run.name}: save_pretrained wrote no *.safetensors in {tmp}")
    return out


# ---------------------------------------------------------------------------------------------
# Hub push
# ---------------------------------------------------------------------------------------------
HUB_FILES = ("README.md", EXPORT_FILE, "config.json")  # an exported folder has these, and *.safetensors


def check_repo_id(repo_id: str) -> str:
    """owner/name as the Hub accepts it (huggingface_hub's own validator), before any work is done."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1:
        raise EmotuneError(f"--push-to-hub {repo_id!r}: give the repository as owner/name (your user or "
                           f"organisation, then the model's name), e.g. me/emotion-minilm-lora")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise EmotuneError(f"--push-to-hub {repo_id!r}: not a valid Hub repository id: {exc}") from None
    return repo_id


def push_to_hub(folder: Path, repo_id: str, *, private: bool = False, commit_message: str | None = None,
                api=None) -> str:
    """Upload an exported folder to the Hub model repository `repo_id` (created if missing); returns the
    commit URL. `api` defaults to `huggingface_hub.HfApi()` (tests pass a stand-in that records the calls)."""
    folder = Path(folder)
    check_repo_id(repo_id)
    missing = [name for name in HUB_FILES if not (folder / name).is_file()]
    if missing or not list(folder.glob("*.safetensors")):
        raise EmotuneError(f"{folder}: not an exported model folder (missing {missing or ['*.safetensors']}); "
                           f"run `emotune export <run>` first")
    info = read_json(folder / EXPORT_FILE)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    message = commit_message or f"emotune export of {info['run']}"
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                   commit_message=message)
    except Exception as exc:  # network, auth, offline mode: the export stays where it is
        raise EmotuneError(f"push of {folder} to {repo_id} failed: {type(exc).__name__}: {exc}. The export "
                           f"is complete on disk; log in (`hf auth login` or HF_TOKEN with write access), "
                           f"unset HF_HUB_OFFLINE, and rerun with --push-to-hub") from None
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Export a run as a standalone transformers model + model card")
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default exports/<dataset>/<model>/<adapter>)")
    parser.add_argument("--qlora-base", choices=("dequantized", "original"), default="dequantized",
                        help="qlora runs: merge into the dequantised 4-bit base (default: what was evaluated) "
                             "or into the original float weights")
    parser.add_argument("--check-rows", type=int, default=256, help="test rows compared before writing")
    parser.add_argument("--format", choices=("transformers", "onnx"), default="transformers",
                        help="transformers: safetensors folder (default); onnx: model.onnx that onnxruntime runs "
                             "without torch (emotune/onnx_export.py; checked on the whole test split)")
    parser.add_argument("--quantize", choices=("int8",), help="with --format onnx: dynamic int8 quantisation")
    parser.add_argument("--max-metric-loss", type=float, default=1.0, metavar="POINTS",
                        help="with --format onnx: refuse an export whose official test metric is more than "
                             "POINTS (x100) below the PyTorch model's (default 1)")
    parser.add_argument("--push-to-hub", metavar="OWNER/NAME", help="then upload the export to this Hub model "
                        "repository (created if missing; token from HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    args = parser.parse_args(argv)
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)  # before the export's minutes of work
    if args.quantize and args.format != "onnx":
        raise EmotuneError("--quantize int8 is for ONNX exports: add --format onnx")
    run = run_from_args(args, project_root())  # the project the command runs in (emotune/paths.py)
    quiet_transformers()
    if args.format == "onnx":
        if args.push_to_hub:
            raise EmotuneError("--push-to-hub uploads transformers exports; push an ONNX export with "
                               "huggingface_hub's `hf upload` instead")
        from emotune.onnx_export import export_onnx

        out = export_onnx(run, args.out, args.quantize, args.max_metric_loss)
        check = read_json(out / EXPORT_FILE)["check"]
        print(f"export {run.name} -> {out} (ONNX{', ' + args.quantize if args.quantize else ''})\n"
              f"check: {check['rows']} test rows, decisions agree on {check['label_agreement']:.4f}, "
              f"{check['metric']} {check['run_metric']:.4f} (PyTorch) vs {check['export_metric']:.4f} (ONNX), "
              f"{check['metric_loss_points']:+.2f} points lost (bound {check['max_metric_loss_points']})")
        return
    out = export(run, args.out, args.qlora_base, args.check_rows)
    info = read_json(out / EXPORT_FILE)["check"]
    summary = (f"skipped ({info['skipped']})" if info["skipped"] else
               f"{info['rows']} test rows, label agreement {info['label_agreement']:.3f}, {info['metric']} "
               f"{info['run_metric']:.4f} (run) vs {info['export_metric']:.4f} (export)"
               + (f", max |prob diff| {info['max_abs_prob_diff']:.2e}" if info["max_abs_prob_diff"] is not None
                  else ""))
    print(f"export {run.name} -> {out}\ncheck: {summary}")
    if args.push_to_hub:
        url = push_to_hub(out, args.push_to_hub, private=args.private, api=hub_api())
        print(f"pushed to https://huggingface.co/{args.push_to_hub}: {url}")


def hub_api():
    """The HfApi the command pushes with: the boundary tests replace (stages.export.hub_api)."""
    from huggingface_hub import HfApi

    return HfApi()


if __name__ == "__main__":
    run_cli(main)
