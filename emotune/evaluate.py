"""evaluate: one trained run -> its test-set metrics, plots and inference cost.

    python -m stages.evaluate <dataset> <model> <adapter>

Reloads models/<dataset>/<model>/<adapter>/ the way a user would (emotune/adapters.py load_trained,
emotune/generative.py load_generative), predicts the tokenized validation and test splits, and writes
  metrics/eval/<dataset>/<model>/<adapter>.json          metrics (emotune/metrics.py), the decision
                                                         thresholds, inference cost
  metrics/eval/<dataset>/<model>/<adapter>/per_class.csv  per-class precision/recall/F1/support (plot)
  metrics/eval/<dataset>/<model>/<adapter>/confusion.csv  one row per (gold, predicted) pair (plot)
  metrics/eval/<dataset>/<model>/<adapter>/predictions.csv.gz  per test row: id, gold, prediction (git)

Multi-label decisions: `eval.threshold: 0.5` thresholds every sigmoid at 0.5; `tuned` picks one
threshold per label on the validation split (never on test) and applies it to test. Generated answers
(gen_* adapters) have no probabilities: no thresholds, ROC-AUC or ECE, and invalid answers are counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see emotune/train.py

import numpy as np  # noqa: E402

from emotune import metrics  # noqa: E402
from emotune.atomic import read_json  # noqa: E402
from emotune.errors import EmotuneError
from emotune.paths import eval_paths, project_root
from emotune.plan import RunPlan  # noqa: E402
from emotune.reports import scored, write_report  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Inference cost
# ---------------------------------------------------------------------------------------------
def latency_ms(predict_one, n_rows: int, samples: int) -> dict:
    """p50/p95 wall time of predicting one example at a time (after one warm-up call), over the first
    `samples` rows; tokenization is done beforehand, so this is the model's own latency."""
    rows = list(range(min(samples, n_rows)))
    if not rows:
        return {"latency_samples": 0}
    predict_one(rows[0])
    times = []
    for i in rows:
        tick = time.perf_counter()
        predict_one(i)
        times.append((time.perf_counter() - tick) * 1000)
    return {"latency_samples": len(rows), "latency_ms_p50": round(float(np.percentile(times, 50)), 2),
            "latency_ms_p95": round(float(np.percentile(times, 95)), 2)}


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
def evaluate_classifier(plan: RunPlan, folder: Path, data_dir: Path, threshold, samples: int, device: str) -> tuple:
    import torch

    from emotune.adapters import load_trained
    from emotune.rows import load_rows
    from emotune.train import ClassificationBatches, ClassifierRecipe

    dataset = plan.dataset
    multi = plan.multi_label
    trained = load_trained(folder, device=device if device != "cpu" else None)
    recipe = ClassifierRecipe(plan, data_dir, device)
    batch_size = plan.train.eval_batch_size
    val = ClassificationBatches(load_rows(data_dir, "validation"), trained.tokenizer, multi)
    test = ClassificationBatches(load_rows(data_dir, "test"), trained.tokenizer, multi)

    thresholds, mode = None, "argmax"
    if multi:
        mode = "tuned" if threshold == "tuned" else f"fixed {threshold}"
        thresholds = [threshold] * len(dataset.labels)
        if threshold == "tuned":
            val_probs = metrics.probabilities(recipe.predict(trained.model, val, batch_size, contextlib.nullcontext)["logits"], True)
            thresholds = metrics.tune_thresholds(val.targets, val_probs, dataset.official_metric)
    tick = time.perf_counter()
    logits = recipe.predict(trained.model, test, batch_size, contextlib.nullcontext)["logits"]
    batched = len(test) / max(time.perf_counter() - tick, 1e-9)
    probs = metrics.probabilities(logits, multi)
    y_pred = metrics.decide(probs, multi, thresholds)

    def predict_one(i):
        batch = {k: v.to(device) for k, v in test.collate([i]).items() if k != "labels"}
        with torch.inference_mode():
            trained.model(**batch)

    cost = {"batched_examples_per_s": round(batched, 2), "batch_size": batch_size, "device": device,
            "threads": torch.get_num_threads(), **latency_ms(predict_one, len(test), samples)}
    return test.targets, y_pred, probs, None, thresholds, mode, cost


def evaluate_generative(plan: RunPlan, folder: Path, data_dir: Path, samples: int, device: str) -> tuple:
    import torch

    from emotune.generative import GenerativeBatches, GenerativeRecipe, eos_id, generate, load_generative
    from emotune.rows import load_rows

    multi = plan.multi_label
    trained = load_generative(folder, device=device if device != "cpu" else None)
    recipe = GenerativeRecipe(plan, data_dir, device)
    recipe.tokenizer, recipe.eos = trained.tokenizer, eos_id(trained.tokenizer)
    recipe.max_new_tokens = trained.metadata["prompt"]["max_new_tokens"]
    test = GenerativeBatches(load_rows(data_dir, "test", True), trained.tokenizer.pad_token_id, multi)
    batch_size = plan.train.eval_batch_size
    tick = time.perf_counter()
    result = recipe.predict(trained.model, test, batch_size, contextlib.nullcontext)
    batched = len(test) / max(time.perf_counter() - tick, 1e-9)

    def predict_one(i):
        generate(trained.model, test, [i], recipe.max_new_tokens, recipe.eos, device, contextlib.nullcontext)

    cost = {"batched_examples_per_s": round(batched, 2), "batch_size": batch_size, "device": device,
            "threads": torch.get_num_threads(), "note": "batched figure includes the answer-token loss pass",
            **latency_ms(predict_one, len(test), samples)}
    return test.targets, result["pred"], None, result["invalid"], None, "generated", cost


def evaluate_run(dataset: str, model: str, adapter: str, threshold, samples: int, root: Path | None = None,
                 device: str | None = None, seed: int | None = None) -> dict:
    """`seed`: one of params `seeds` (an extra seed's run); None: the primary seed's run."""
    root = project_root() if root is None else Path(root)
    from emotune.devices import pick_device
    from emotune.paths import run_paths
    from emotune.rows import load_rows

    paths = run_paths(dataset, model, adapter, root, seed)
    card = paths.model / "run.json"
    if not card.exists():
        raise EmotuneError(f"{card}: missing; train the run first (`dvc repro train@{dataset}-{model}-{adapter}`)")
    plan = RunPlan.from_json(read_json(card)["plan"], str(card))
    device = device or pick_device()
    if plan.generative:
        y_true, y_pred, probs, invalid, thresholds, mode, cost = evaluate_generative(plan, paths.model, paths.data,
                                                                                      samples, device)
    else:
        y_true, y_pred, probs, invalid, thresholds, mode, cost = evaluate_classifier(
            plan, paths.model, paths.data, threshold, samples, device)
    report = scored("run", dataclasses.asdict(plan.dataset), model, adapter, y_true, y_pred, probs, invalid, thresholds, mode,
                    {"inference": cost})
    ids = load_rows(paths.data, "test", plan.generative)["id"]  # the order predict() returned the rows in
    write_report(report, y_true, y_pred, *eval_paths(dataset, model, adapter, root, seed), ids, invalid)
    return report
