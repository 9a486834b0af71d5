"""Why multi-label BCE fine-tuning collapsed to "no label", measured through emotune's own stages.

    .venv/bin/python -m bench.multilabel [--train 800] [--seeds 0] [--arms lora_before,lora_after,...]

A SemEval-2018 E-c slice from the mirror (fetched and cleaned by emotune/data_registry.py and
emotune/clean.py with the project's params, then a seeded sample of `--train` / `--val` / `--test` rows),
tokenized by emotune/tokenize.py for MiniLM, planned by emotune/plan.py, trained by emotune/train.py and
scored like emotune/evaluate.py (per-label thresholds tuned on validation). Each arm changes one thing
against the code as it was (head LR = the adapter's LR, classifier bias 0): the classifier bias at the
label priors (`train.head_bias: prior`), the head's own learning rate (`train.head_lr`), both, and
BCE pos_weight (`train.class_weights`). TF-IDF + LR (emotune/baseline.py) is fitted on the same rows.
Arms run alternately within one seed, on the same rows, so machine noise hits every arm alike.
Writes metrics/bench/multilabel.json (`--tiny`: a temporary folder).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common  # (first: sets OMP_WAIT_POLICY before torch loads)

NAME = "multilabel"
DATASET = "semeval2018_ec"
MODEL = "minilm"
# Each arm: adapter and the plan's train overrides. "before" is the code as it was.
ARMS = {
    "lora_before": ("lora", {"head_bias": "zero", "head_lr": None}),
    "lora_prior_bias": ("lora", {"head_bias": "prior", "head_lr": None}),
    "lora_head_lr": ("lora", {"head_bias": "zero", "head_lr": 1e-2}),
    "lora_after": ("lora", {"head_bias": "prior", "head_lr": 1e-2}),
    "lora_pos_weight": ("lora", {"head_bias": "zero", "head_lr": None, "class_weights": True}),
    "full_before": ("full", {"head_bias": "zero", "head_lr": None}),
    "full_after": ("full", {"head_bias": "prior", "head_lr": 1e-2}),
}
DEFAULT_ARMS = ("lora_before", "lora_after", "lora_prior_bias", "lora_head_lr", "full_before", "full_after")


def mirror_available() -> bool:
    from emotune.config import load_params
    from emotune.data_registry import local_root

    params = load_params()
    spec = params.dataset(DATASET)
    return all((local_root(spec, params.fetch) / f).exists() for f in spec.files.values())


def write_slice(root: Path, sizes: tuple[int, int, int], seed: int = 0) -> Path:
    """data/audited/semeval2018_ec under `root`: a seeded sample of (train, validation, test) rows."""
    return common.audited_slice(root, DATASET, sizes, seed)[1]


def prepare(root: Path, sizes: tuple[int, int, int], *, epochs: int, max_length: int, threads: int | None):
    """Audited slice + MiniLM tokenization under `root`; returns (params, tokenized dir)."""
    import dataclasses

    from emotune import plan as plan_stage
    from emotune import tokenize as tokenize_stage
    from emotune.config import load_params

    audited = write_slice(root, sizes)
    params = load_params()
    params = dataclasses.replace(
        params, tokenize=dataclasses.replace(params.tokenize, max_length=max_length),
        train=dataclasses.replace(params.train, epochs=epochs, max_train_examples=None, threads=threads,
                                  checkpoint_every=10_000, early_stopping_patience=epochs))
    model = plan_stage.model_entry(MODEL, params)
    data = Path(root) / "data" / "tokenized" / DATASET / MODEL
    data.mkdir(parents=True, exist_ok=True)
    tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, DATASET, model), audited, data)
    return params, model


def run_arm(root: Path, params, model: dict, adapter: str, overrides: dict, seed: int, log=lambda m: None) -> dict:
    """Plan (with `overrides`), train and score one run on test; returns its figures."""
    import contextlib
    import dataclasses

    from emotune import metrics
    from emotune import plan as plan_stage
    from emotune import train as train_stage
    from emotune.paths import run_paths
    from emotune.rows import load_rows

    plan = plan_stage.run_plan(dataclasses.replace(params, seed=seed), params.matrices()[0], DATASET, model, adapter)
    plan = plan.with_train(**overrides)
    if plan.train.head_lr is None:
        plan = plan.with_train(head_lr=plan.train.lr)  # "before": the head at the adapter's LR
    paths = run_paths(DATASET, MODEL, adapter, root)
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json()))
    tick = time.perf_counter()
    out = train_stage.train(plan, paths, device="cpu", log=log)
    seconds = time.perf_counter() - tick
    recipe = train_stage.make_recipe(plan, paths.data, "cpu")
    recipe.multi_label = True
    model_ = out["model"]
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(paths.model)
    val = train_stage.ClassificationBatches(load_rows(paths.data, "validation"), tokenizer, True)
    test = train_stage.ClassificationBatches(load_rows(paths.data, "test"), tokenizer, True)
    val_probs = metrics.probabilities(recipe.predict(model_, val, 128, contextlib.nullcontext)["logits"], True)
    test_probs = metrics.probabilities(recipe.predict(model_, test, 128, contextlib.nullcontext)["logits"], True)
    n = test_probs.shape[1]
    per_label_f1 = metrics.tune_thresholds(val.targets, val_probs)  # the threshold search as it was
    on_jaccard = metrics.tune_thresholds(val.targets, val_probs, "jaccard")  # emotune/evaluate.py now
    tuned_f1 = metrics.scores(test.targets, metrics.decide(test_probs, True, per_label_f1), True, n)
    tuned = metrics.scores(test.targets, metrics.decide(test_probs, True, on_jaccard), True, n)
    at_half = metrics.scores(test.targets, metrics.decide(test_probs, True, None), True, test_probs.shape[1])
    summary = out["summary"]
    return {"adapter": adapter, "overrides": overrides, "seed": seed, "lr": plan.train.lr,
            "head_lr": plan.train.head_lr, "train_rows": summary["train_examples"],
            "val_jaccard_per_epoch": [round(e["val_jaccard"], 4) for e in out["history"]],
            "collapsed": summary["collapsed"], "constant_val": round(summary["constant_val"], 4),
            "test_roc_auc_macro": round(metrics.roc_auc_macro(test.targets, test_probs, True), 4),
            "test_jaccard_tuned": round(tuned["jaccard"], 4), "test_macro_f1_tuned": round(tuned["macro_f1"], 4),
            "test_jaccard_tuned_per_label_f1": round(tuned_f1["jaccard"], 4),
            "test_jaccard_at_0.5": round(at_half["jaccard"], 4),
            "test_labels_per_row_at_0.5": round(float(metrics.decide(test_probs, True, None).sum(1).mean()), 3),
            "seconds": round(seconds, 1)}


def tfidf(root: Path, params, seed: int) -> dict:
    """emotune/baseline.py's TF-IDF + LR on exactly the slice's training rows, tuned thresholds."""
    from emotune.artifacts import load_splits
    from emotune.baseline import run_baseline

    splits = load_splits(Path(root) / "data" / "audited" / DATASET)
    spec = params.dataset(DATASET)
    report, _, _ = run_baseline("tfidf_lr", splits, spec, None, seed, "tuned")  # thresholds on jaccard
    from emotune import metrics
    from emotune.baseline import fit_sklearn, targets

    labels = list(spec.labels)
    fitted = fit_sklearn("tfidf_lr", splits["train"]["text"].tolist(),
                         targets(splits["train"], labels, True, "train"), True, seed, len(labels))
    val_probs = fitted.predict_proba(splits["validation"]["text"].tolist())
    test_probs = fitted.predict_proba(splits["test"]["text"].tolist())
    per_label_f1 = metrics.tune_thresholds(targets(splits["validation"], labels, True, "validation"), val_probs)
    old = metrics.scores(targets(splits["test"], labels, True, "test"),
                         metrics.decide(test_probs, True, per_label_f1), True, len(labels))
    return {"test_jaccard_tuned_per_label_f1": round(old["jaccard"], 4), "test_jaccard_tuned": round(report["official"], 4), "test_macro_f1_tuned": round(report["test"]["macro_f1"], 4),
            "test_roc_auc_macro": round(report["test"]["roc_auc_macro"], 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--val", type=int, default=300)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    result.update(dataset=DATASET, model=MODEL, rows={"train": args.train, "validation": args.val, "test": args.test},
                  epochs=args.epochs, max_length=args.max_length, arms={}, runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, model = prepare(root, (args.train, args.val, args.test), epochs=args.epochs,
                                max_length=args.max_length, threads=args.threads)
        result["tfidf_lr"] = tfidf(root, params, params.seed)
        print(f"tfidf_lr: {result['tfidf_lr']}", flush=True)
        for seed in [int(s) for s in args.seeds.split(",")]:
            for arm in args.arms.split(","):
                adapter, overrides = ARMS[arm]
                figures = run_arm(root, params, model, adapter, overrides, seed)
                result["runs"].append({"arm": arm, **figures})
                print(f"{arm} seed {seed}: {json.dumps(figures)}", flush=True)
                common.write_result(out_path, result)  # partial results survive a kill
    for arm in dict.fromkeys(r["arm"] for r in result["runs"]):
        mine = [r for r in result["runs"] if r["arm"] == arm]
        result["arms"][arm] = {k: round(float(np.mean([r[k] for r in mine])), 4)
                               for k in ("test_roc_auc_macro", "test_jaccard_tuned", "test_jaccard_at_0.5",
                                         "test_jaccard_tuned_per_label_f1",
                                         "test_labels_per_row_at_0.5")}
        result["arms"][arm]["collapsed_runs"] = sum(r["collapsed"] for r in mine)
    common.write_result(out_path, result)
    print(json.dumps(result["arms"], indent=1))
    print(f"-> {out_path}")


if __name__ == "__main__":
    main()
