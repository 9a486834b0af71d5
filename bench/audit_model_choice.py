"""Which out-of-fold model should the audit use? Plants 8% label flips in a real slice of each
dataset and measures how well each model's cleanlab audit finds them.

    python -m bench.audit_model_choice            # full run, writes metrics/bench/audit_model_choice.json
    python -m bench.audit_model_choice --tiny     # smoke run (CI), writes nothing under metrics/
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import time
from pathlib import Path

import torch

from emotune.atomic import write_json
from emotune.clean import clean_splits
from emotune.config import load_params
from emotune.data_registry import fetch_dataset
from emotune.testing import planted_noise_recovery

ROOT = Path(__file__).resolve().parent.parent  # the checkout

MODELS = ("tfidf", "embeddings", "both")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000, help="train rows sampled per dataset")
    parser.add_argument("--tiny", action="store_true", help="300 rows, one dataset, no output file")
    args = parser.parse_args()
    params = load_params()
    datasets = params.datasets[:1] if args.tiny else params.datasets
    rows = 300 if args.tiny else args.rows
    results = {}
    for name in datasets:
        spec = params.dataset(name)
        splits, _ = clean_splits(fetch_dataset(spec, params.fetch, params.seed).splits, spec, params.clean)
        train = splits["train"].sample(min(rows, len(splits["train"])), random_state=0).reset_index(drop=True)
        for model in MODELS:
            cfg = dataclasses.replace(params.audit, model=model)
            start = time.perf_counter()
            r = planted_noise_recovery(train, spec, cfg, params.seed)
            r["seconds"] = round(time.perf_counter() - start, 1)
            results.setdefault(name, {})[model] = {k: round(v, 3) if isinstance(v, float) else v
                                                   for k, v in r.items()}
            print(f"{name:20s} {model:10s} " + " ".join(f"{k}={v}" for k, v in results[name][model].items()),
                  flush=True)
    mean_auroc = {m: round(sum(results[d][m]["auroc"] for d in results) / len(results), 3) for m in MODELS}
    print("mean AUROC:", mean_auroc)
    if args.tiny:
        return
    write_json(ROOT / "metrics" / "bench" / "audit_model_choice.json", {
        "command": "python -m bench.audit_model_choice",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, no GPU",
        "planted_rate": 0.08, "rows_per_dataset": rows, "results": results, "mean_auroc": mean_auroc,
    })


if __name__ == "__main__":
    main()
