"""Learning rate and epochs of the reference runs (params.yaml `reference:`), measured on all training rows.

    python -m bench.reference_lr [--datasets tweet_eval_emotion,semeval2025_eng] [--lrs 5e-5,1e-4,2e-4]
                                 [--epochs 3] [--adapter full] [--model minilm] [--train-set class_weights=true]

For each dataset: the mirror's rows through the project's fetch and clean (no audit: it only reports by
default), MiniLM's tokenization, then one run per learning rate with the reference group's settings
(all rows, `--epochs` epochs, every epoch run: early stopping off so the whole curve shows), trained by
emotune/train.py and scored on test by emotune/evaluate.py (thresholds tuned on validation), against
TF-IDF + LR on the same rows. The per-epoch validation curve says how many epochs pay; the test figure
says which LR. Writes metrics/bench/reference_lr.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import yaml

from bench import common


def prepare(root: Path, dataset: str, model_name: str):
    """data/audited/<dataset> (fetch + clean, every row) and its tokenization under `root`."""
    from emotune import plan as plan_stage
    from emotune import tokenize as tokenize_stage

    params, folder, splits = common.audited_slice(root, dataset)
    rows = {s: len(f) for s, f in splits.items()}
    model = plan_stage.model_entry(model_name, params)
    data = Path(root) / "data" / "tokenized" / dataset / model_name
    data.mkdir(parents=True, exist_ok=True)
    tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, dataset, model), folder, data)
    return params, model, splits, rows


def run(root: Path, params, model: dict, dataset: str, adapter: str, lr: float, epochs: int, threads: int | None,
        rows: int | None = None, matrix_name: str = "reference", overrides: dict | None = None):
    from emotune import evaluate as evaluate_stage
    from emotune import plan as plan_stage
    from emotune import train as train_stage
    from emotune.paths import run_paths

    matrix = next(m for m in params.matrices() if m.name == matrix_name)
    train = dataclasses.replace(matrix.train, lr=lr, epochs=epochs, early_stopping_patience=epochs + 1,
                                threads=threads, max_train_examples=rows, **(overrides or {}))
    plan = plan_stage.run_plan(params, dataclasses.replace(matrix, train=train), dataset, model, adapter)
    paths = run_paths(dataset, model["name"], adapter, root)
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json()))
    tick = time.perf_counter()
    out = train_stage.train(plan, paths, device="cpu", log=lambda m: print(m, flush=True))
    seconds = time.perf_counter() - tick
    report = evaluate_stage.evaluate_run(dataset, model["name"], adapter, params.eval.threshold, 0, root, device="cpu")
    metric = plan.dataset.official_metric
    return {"dataset": dataset, "adapter": adapter, "lr": lr, "head_lr": plan.train.head_lr,
            "epochs": epochs, "train_rows": out["summary"]["train_examples"],
            "val_per_epoch": [round(e[f"val_{metric}"], 4) for e in out["history"]],
            "best_epoch": out["summary"]["best_epoch"], "test_official": round(report["official"], 4),
            "official_metric": metric, "train_examples_per_s": out["summary"]["train_examples_per_s"],
            "seconds": round(seconds, 1), **({"train_overrides": overrides} if overrides else {})}


def tfidf_all(splits, params, dataset: str) -> float:
    from emotune.baseline import run_baseline

    report, _, _ = run_baseline("tfidf_lr_all", splits, params.dataset(dataset), None, params.seed,
                                params.eval.threshold, params)
    return round(report["official"], 4)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="tweet_eval_emotion,semeval2025_eng")
    parser.add_argument("--lrs", default="5e-5,1e-4,2e-4")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--adapter", default="full", help="one adapter, or several: lora,ia3")
    parser.add_argument("--lr-factors", help="instead of --lrs: multiples of each adapter's default LR (emotune/adapter_table.py), e.g. 0.33,1,3")
    parser.add_argument("--rows", type=int, help="training rows (default all; the main matrix uses 1000)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a train: setting for every run (YAML value), e.g. class_weights=true; repeatable")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out_path = common.result_path("reference_lr", args.tiny, args.out)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.train_set)}
    result = common.header("reference_lr", args.tiny)
    result.update(model=args.model, adapter=args.adapter, epochs=args.epochs, runs=[], tfidf_lr_all={}, rows={})
    for dataset in args.datasets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            params, model, splits, rows = prepare(root, dataset, args.model)
            result["rows"][dataset] = rows
            result["tfidf_lr_all"][dataset] = tfidf_all(splits, params, dataset)
            print(f"{dataset}: {rows}, tfidf_lr_all {result['tfidf_lr_all'][dataset]}", flush=True)
            from emotune.adapter_table import ADAPTERS

            for adapter in args.adapter.split(","):
                lrs = ([round(ADAPTERS[adapter].lr * float(f), 8) for f in args.lr_factors.split(",")]
                       if args.lr_factors else [float(v) for v in args.lrs.split(",")])
                for lr in lrs:
                    figures = run(root, params, model, dataset, adapter, lr, args.epochs, args.threads, args.rows,
                                  "reference" if args.rows is None else "", overrides)
                    result["runs"].append({**figures, "default_lr": ADAPTERS[adapter].lr})
                    print(json.dumps(figures), flush=True)
                    common.write_result(out_path, result)
    common.write_result(out_path, result)
    print(f"-> {out_path}")


if __name__ == "__main__":
    main()
