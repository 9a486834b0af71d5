"""How fetch + clean + audit scale with a user dataset's size, at what planted-noise recovery.

A user-style dataset is derived from dair-ai/emotion (mirror): each row joins two texts of the same
label ("A, and B"), so there are as many distinct rows as asked for (50k by default) with the real
label-text association. 8% of the train rows get another label (seeded, known). The three stages run as
DVC runs them (`python -m stages.<stage> scale` in a throw-away project copy, the data under data/user/),
each timed by wall clock; recovery is scored on the audited train+validation rows.

    python -m bench.data_scale                      # 50k rows, writes metrics/bench/data_scale.json
    python -m bench.data_scale --rows 5000 --model tfidf
    python -m bench.data_scale --tiny               # 1500 rows, tfidf, 2 folds (CI); writes nothing
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from emotune.atomic import write_json
from emotune.config import load_params
from emotune.data_registry import fetch_dataset

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PARAMS_FILE = ROOT / "params.yaml"

DATASET = "scale"
RATE = 0.08


def derived_rows(rows: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """`rows` distinct texts, each two dair-ai/emotion texts of one label joined, and that label."""
    params = load_params()
    spec = params.dataset("emotion")
    source = pd.concat(fetch_dataset(spec, params.fetch, params.seed).splits.values(), ignore_index=True)
    source["label"] = source["labels"].str[0]
    rng = np.random.default_rng(seed)
    by_label = {label: group["text"].to_numpy() for label, group in source.groupby("label")}
    weights = source["label"].value_counts(normalize=True)
    labels = rng.choice(weights.index.to_numpy(), size=rows, p=weights.to_numpy())
    texts, seen = [], set()
    for label in labels:
        while True:
            a, b = rng.choice(by_label[label], size=2, replace=False)
            text = f"{a}, and {b}"
            if text not in seen:
                seen.add(text)
                texts.append(text)
                break
    return pd.DataFrame({"id": [f"r{i:07d}" for i in range(rows)], "text": texts, "label": labels}), spec.labels


def write_project(root: Path, frame: pd.DataFrame, labels: list[str], model: str, folds: int, seed: int):
    """A project copy with the dataset `scale` (train with planted flips, test clean) under data/user/."""
    for package in ("stages", "emotune"):  # the code its dvc.yaml hashes
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    rng = np.random.default_rng(seed + 1)
    n_test = len(frame) // 5
    test, train = frame.iloc[:n_test], frame.iloc[n_test:].copy()
    planted = rng.random(len(train)) < RATE
    train.loc[planted, "label"] = [rng.choice([c for c in labels if c != lab]) for lab in train.loc[planted, "label"]]
    folder = root / "data/user" / DATASET
    folder.mkdir(parents=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"][DATASET] = {
        "task": "single_label", "labels": labels, "official_metric": "accuracy", "label_column": "label",
        "id_column": "id", "files": {"train": f"data/user/{DATASET}/train.csv", "test": f"data/user/{DATASET}/test.csv"}}
    params.update(datasets=[DATASET], large={"datasets": []}, generative={"datasets": []},
                  reference={"adapters": []})
    params["baseline"]["zero_shot"]["datasets"] = []  # groups may only name datasets of `datasets`
    params["audit"].update(model=model, folds=folds)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return set(train.loc[planted, "id"])


def recovery(root: Path, planted_ids: set[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    audited = pd.concat([pd.read_parquet(root / f"data/audited/{DATASET}/{s}.parquet") for s in ("train", "validation")])
    planted = audited["id"].isin(planted_ids).to_numpy()
    quality = audited["label_quality"].to_numpy()
    flags = audited["is_label_issue"].to_numpy()
    worst = np.argsort(quality, kind="stable")[: planted.sum()]
    hits = int((flags & planted).sum())
    return {"audited_rows": len(audited), "planted": int(planted.sum()), "flagged": int(flags.sum()),
            "precision": round(hits / max(int(flags.sum()), 1), 3), "recall": round(hits / int(planted.sum()), 3),
            "auroc": round(float(roc_auc_score(planted, -quality)), 3),
            "precision_at_k": round(float(planted[worst].mean()), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--model", default=None, help="audit.model (default: params.yaml's)")
    parser.add_argument("--folds", type=int, default=None, help="audit.folds (default: params.yaml's)")
    parser.add_argument("--tiny", action="store_true", help="1500 rows, tfidf, 2 folds; writes nothing")
    args = parser.parse_args(argv)
    params = load_params()
    rows = 1500 if args.tiny else args.rows
    model = "tfidf" if args.tiny else (args.model or params.audit.model)
    folds = 2 if args.tiny else (args.folds or params.audit.folds)
    frame, labels = derived_rows(rows, params.seed)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emotune-scale-") as tmp:
        root = Path(tmp)
        planted = write_project(root, frame, labels, model, folds, params.seed)
        seconds = {}
        for stage in ("fetch", "clean", "audit"):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", f"stages.{stage}", DATASET], cwd=root,
                                    capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            seconds[stage] = round(time.perf_counter() - start, 1)
            if result.returncode:
                raise SystemExit(f"{stage} failed:\n{result.stderr[-3000:]}")
            print(f"{stage}: {seconds[stage]} s", flush=True)
        scores = recovery(root, planted)
    seconds["total"] = round(sum(seconds.values()), 1)
    load_after = os.getloadavg()
    print(f"{rows} rows, audit.model={model}, {folds} folds: {seconds}; recovery {scores}")
    if args.tiny:
        return
    runs_path = ROOT / "metrics" / "bench" / "data_scale.json"
    previous = yaml.safe_load(runs_path.read_text()) if runs_path.exists() else {}
    run = {"rows": rows, "audit_model": model, "folds": folds, "seconds": seconds, "recovery": scores,
           "date": datetime.date.today().isoformat(),
           "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)]}
    runs = [r for r in previous.get("runs", []) if (r["rows"], r["audit_model"], r["folds"]) != (rows, model, folds)]
    write_json(runs_path, {
        "command": "python -m bench.data_scale [--rows N] [--model tfidf|embeddings|both]",
        "dataset": "derived from dair-ai/emotion: two texts of one label joined per row; 80/20 train/test, "
                   "validation carved; 8% planted label flips in train",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
        "runs": sorted(runs + [run], key=lambda r: (r["rows"], r["audit_model"])),
    })


if __name__ == "__main__":
    main()
