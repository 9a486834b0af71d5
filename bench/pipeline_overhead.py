"""What DVC and the stage processes cost around training: a no-op `dvc repro` on a finished pipeline, and
`dvc exp run -S adapter.r=64` (which stages ran, and the time spent outside training itself).

    python -m bench.pipeline_overhead          # real MiniLM, a slice of dair-ai/emotion, the five default adapters
    python -m bench.pipeline_overhead --tiny   # CI smoke run: tiny BERT, toy data, lora + ia3

Runs in a throw-away copy of the project (stages/, dvc.yaml, params.yaml; git + DVC initialised in a
temporary folder), like tests/test_pipeline_dvc.py: one small CSV dataset, the `large` and `generative`
groups switched off (empty lists). Steps, each timed from the outside:
1. `dvc repro` from nothing (set-up; its time is reported but is not the point);
2. `dvc repro` again, three times: nothing changed, so nothing may run (median time);
3. `dvc exp run -S adapter.r=64`: only plan, the LoRA-family trains and evaluations, and aggregate may run.
For 3, the time inside training comes from each retrained run's metrics: `train_time_s` (the optimizer
steps) and `wall_time_s` (the whole `stages.train.train()` call: load, steps, validation, save). The rest is
DVC itself, the plan stage and the start of each stage process (Python, torch and transformers imports).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench import common
from emotune import testing

NAME = "pipeline_overhead"
VENV_BIN = Path(sys.executable).parent
DATASET = "emotion_slice"
LORA_FAMILY = ("lora", "dora", "qlora", "gen_lora", "gen_qlora")

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PARAMS_FILE = ROOT / "params.yaml"


# Run in a fresh process: seconds to import each library a train stage process loads, in the order it does.
IMPORTS = """
import json, time
out = {}
for name in ("numpy", "pandas", "torch", "transformers", "peft", "sklearn.metrics", "dvclive", "emotune.train"):
    tick = time.perf_counter()
    __import__(name)
    out[name] = round(time.perf_counter() - tick, 2)
print(json.dumps(out))
"""


def env() -> dict:
    out = common.bench_env()
    out.update(PATH=f"{VENV_BIN}{os.pathsep}{out.get('PATH', '')}", GIT_AUTHOR_NAME="bench",
               GIT_AUTHOR_EMAIL="bench@example.com", GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    return out


def sh(root: Path, *command: str, timeout: int = 3600) -> tuple[str, float]:
    tick = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env(), capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - tick
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done.stdout + done.stderr, seconds


def ran(output: str) -> list[str]:
    return sorted(set(re.findall(r"Running stage '([^']+)'", output)))


def skipped(output: str) -> list[str]:
    return sorted(set(re.findall(r"Stage '([^']+)' didn't change, skipping", output)))


def slice_frames(tiny: bool, rows: dict[str, int], work: Path):
    """{split: frame with id, text, labels} and the label names."""
    if tiny:
        labels = ["joy", "anger", "sadness"]
        return {split: common.toy_texts(n, 10 + k, labels) for k, (split, n) in enumerate(rows.items())}, labels
    import pandas as pd

    from bench.train_vs_notebook import audited_emotion
    from emotune.config import load_params

    folder = audited_emotion(work)
    labels = list(load_params().dataset("emotion").labels)
    frames = {}
    for split, n in rows.items():
        frame = pd.read_parquet(folder / f"{split}.parquet")
        frames[split] = frame.sample(min(n, len(frame)), random_state=0)[["id", "text", "labels"]]
    return frames, labels


def make_project(root: Path, tiny: bool, rows: dict[str, int], adapters: list[str], work: Path) -> dict:
    testing.copy_project_code(ROOT, root)
    frames, labels = slice_frames(tiny, rows, work)
    names = {"train": "train", "validation": "dev", "test": "test"}
    for split, frame in frames.items():
        path = root / "data/user" / DATASET / f"{names[split]}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.assign(label=frame["labels"].str[0])[["id", "text", "label"]].to_csv(path, index=False)
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"][DATASET] = {
        "description": "a seeded slice of dair-ai/emotion (bench.pipeline_overhead)" if not tiny else "toy",
        "task": "single_label", "labels": labels, "official_metric": "accuracy", "label_column": "label",
        "id_column": "id", "files": {split: f"data/user/{DATASET}/{name}.csv" for split, name in names.items()}}
    model = "minilm"
    if tiny:
        from emotune.testing import save_tiny_model

        save_tiny_model("bert", root / "tiny-bert")
        model = "tiny-bert"
        params["audit"].update(model="tfidf", folds=2)
        params["adapter"].update(r=4, alpha=8)
        params["train"].update(batch_size=16, threads=1)
        params["baseline"]["embedding_model"] = "tiny-bert"  # the tiny run's baselines use the tiny BERT too
        params["baseline"]["rnn"].update(tokenizer="tiny-bert", epochs=2)
    params.update(datasets=[DATASET], models=[model], adapters=adapters,
                  large={"datasets": [], "models": [], "adapters": []},
                  generative={"datasets": [], "models": [], "adapters": []},
                  reference={"models": [], "adapters": []})
    params["baseline"]["zero_shot"].update(datasets=[], models=[])  # no zero-shot stage either
    params["train"].update(epochs=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return {"model": model, "labels": labels}


def train_metrics(root: Path, model: str, adapter: str) -> dict:
    return json.loads((root / "metrics" / "train" / DATASET / model / f"{adapter}.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--adapters", default=None, help="default: params.yaml's adapters (tiny: lora,ia3)")
    parser.add_argument("--rows", default=None, help="train,validation,test rows of the slice (default 400,200,200; tiny 64,24,24)")
    parser.add_argument("--noop-repeats", type=int, default=3)
    parser.add_argument("--r", type=int, default=64, help="the adapter.r of the experiment")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away project")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    shipped = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    adapters = (args.adapters or ("lora,ia3" if args.tiny else ",".join(shipped["adapters"]))).split(",")
    counts = [int(x) for x in (args.rows or ("64,24,24" if args.tiny else "400,200,200")).split(",")]
    rows = dict(zip(("train", "validation", "test"), counts))
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-pipeline-"))
    root = work / "project"
    dvc = str(VENV_BIN / "dvc")
    try:
        facts = make_project(root, args.tiny, rows, adapters, work)
        model = facts["model"]
        for command in (("git", "init", "-q"), (dvc, "init", "-q"), ("git", "add", "-A"),
                        ("git", "commit", "-qm", "project")):
            sh(root, *command)
        print("dvc repro (from nothing) ...", flush=True)
        out, first_s = sh(root, dvc, "repro")
        first = {"seconds": round(first_s, 1), "ran": ran(out)}
        first["train_s"] = round(sum(train_metrics(root, model, a)["train_time_s"] for a in adapters), 1)
        print(f"  {first_s:.1f} s, {len(first['ran'])} stages ran", flush=True)
        sh(root, "git", "add", "-A")
        sh(root, "git", "commit", "-qm", "baseline")

        noop = []
        for _ in range(args.noop_repeats):
            out, seconds = sh(root, dvc, "repro")
            noop.append({"seconds": round(seconds, 2), "ran": ran(out), "skipped": len(skipped(out)),
                         "up_to_date": "up to date" in out.lower() or not ran(out)})
        noop_s = statistics.median(n["seconds"] for n in noop)
        print(f"no-op dvc repro: {noop_s:.2f} s (median of {len(noop)}), stages ran: "
              f"{sorted({s for n in noop for s in n['ran']}) or 'none'}", flush=True)
        status_out, status_s = sh(root, dvc, "status")

        before = {a: train_metrics(root, model, a) for a in adapters}
        print(f"dvc exp run -S adapter.r={args.r} ...", flush=True)
        out, exp_s = sh(root, dvc, "exp", "run", "-S", f"adapter.r={args.r}")
        exp_ran, exp_skipped = ran(out), skipped(out)
        retrained = [a for a in adapters if f"train@{DATASET}-{model}-{a}" in exp_ran]
        after = {a: train_metrics(root, model, a) for a in retrained}
        steps_s = sum(after[a]["train_time_s"] for a in retrained)
        train_call_s = sum(after[a]["wall_time_s"] for a in retrained)
        # what starting one stage process costs before any work: Python + the libraries a train stage imports
        printed, import_s = sh(root, sys.executable, "-c", IMPORTS)
        # the JSON line; stderr may follow it (bitsandbytes on an AVX512-BF16 CPU logs a kernels notice)
        imports = json.loads(next(line for line in reversed(printed.splitlines()) if line.startswith("{")))
        exp = {
            "command": f"dvc exp run -S adapter.r={args.r}", "seconds": round(exp_s, 1), "ran": exp_ran,
            "skipped": exp_skipped, "retrained_adapters": retrained,
            # the LoRA-family trains, their evaluations and the leaderboard: nothing else
            "expected_to_run": sorted(["plan", "aggregate"] + [f"{stage}@{DATASET}-{model}-{a}" for a in adapters
                                                                if a in LORA_FAMILY for stage in ("train", "evaluate")]),
            "train_steps_s": round(steps_s, 1),
            "train_function_s": round(train_call_s, 1),
            "in_train_function_outside_steps_s": round(train_call_s - steps_s, 1),
            "outside_train_function_s": round(exp_s - train_call_s, 1),
            "outside_training_s": round(exp_s - steps_s, 1),
            "outside_training_fraction": round((exp_s - steps_s) / exp_s, 3),
            "per_run": {a: {"train_time_s": after[a]["train_time_s"], "wall_time_s": after[a]["wall_time_s"],
                            "trainable_before": before[a]["params"]["trainable"],
                            "trainable_after": after[a]["params"]["trainable"]} for a in retrained},
            "stage_process_import_s": round(import_s, 1),
            "stage_process_imports_s": imports,
        }
        exp["only_expected_ran"] = exp["ran"] == exp["expected_to_run"]
        print(f"exp run: {exp_s:.1f} s; ran {exp_ran}; training steps {steps_s:.1f} s, train() calls "
              f"{train_call_s:.1f} s, outside training {exp['outside_training_s']} s "
              f"({exp['outside_training_fraction']:.0%}); a train stage process's imports {import_s:.1f} s {imports}",
              flush=True)
        result.update({
            "setup": {"dataset": f"{DATASET}: " + ("toy rows" if args.tiny else "seeded sample of the audited "
                      "dair-ai/emotion splits"), "rows": rows, "model": model, "adapters": adapters,
                      "epochs": 1, "groups": "large and generative switched off (empty lists)",
                      "audit": "tfidf, 2 folds" if args.tiny else "params.yaml defaults"},
            "first_repro": first,
            "noop_repro": {"median_s": noop_s, "runs": noop, "any_stage_ran": any(n["ran"] for n in noop)},
            "dvc_status_s": round(status_s, 2),
            "exp_run": exp,
        })
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    common.write_result(out_path, result)


if __name__ == "__main__":
    main()
