"""bf16 mixed precision on the CPU: is it faster at equal accuracy here? (`train.bf16: auto` decides by it)

    python -m bench.cpu_bf16 [--dataset emotion] [--rows 1000] [--adapters lora,full] [--pairs 2]

The same MiniLM run (emotune's train stage, Trainer's `bf16=True` = torch.autocast(cpu, bfloat16) around
the forward, fp32 master weights and optimizer) with bf16 off and on, in alternating pairs, on the same
rows; reports training examples per second and the test official metric of each, and the CPU's bf16
features (AVX512-BF16, AMX). Writes metrics/bench/cpu_bf16.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

from bench import common
from bench.reference_lr import prepare


def cpu_flags() -> dict:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "avx512f": "avx512f" in flags}


def run(root: Path, params, model: dict, dataset: str, adapter: str, bf16: bool, rows: int, epochs: int,
        threads: int) -> dict:
    from emotune import evaluate as evaluate_stage
    from emotune import plan as plan_stage
    from emotune import train as train_stage
    from emotune.paths import run_paths

    matrix = params.matrices()[0]
    train = dataclasses.replace(matrix.train, bf16=bf16, max_train_examples=rows, epochs=epochs, threads=threads,
                                early_stopping_patience=epochs + 1)
    plan = plan_stage.run_plan(params, dataclasses.replace(matrix, train=train), dataset, model, adapter)
    paths = run_paths(dataset, model["name"], adapter, root)
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json()))
    out = train_stage.train(plan, paths, device="cpu", log=lambda m: None)
    report = evaluate_stage.evaluate_run(dataset, model["name"], adapter, params.eval.threshold, 0, root, device="cpu")
    summary = out["summary"]
    return {"adapter": adapter, "bf16": bf16, "train_examples_per_s": summary["train_examples_per_s"],
            "best_val": round(summary["best_val"], 4), "test_official": round(report["official"], 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="emotion")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--adapters", default="lora,full")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out_path = common.result_path("cpu_bf16", args.tiny, args.out)
    result = common.header("cpu_bf16", args.tiny)
    result.update(dataset=args.dataset, model=args.model, rows=args.rows, epochs=args.epochs, cpu_flags=cpu_flags(),
                  runs=[], summary={})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, model, _, _ = prepare(root, args.dataset, args.model)
        for adapter in args.adapters.split(","):
            for pair in range(args.pairs):
                order = (False, True) if pair % 2 == 0 else (True, False)  # alternate which runs first
                for bf16 in order:
                    figures = run(root, params, model, args.dataset, adapter, bf16, args.rows, args.epochs,
                                  args.threads)
                    result["runs"].append(figures)
                    print(json.dumps(figures), flush=True)
                    common.write_result(out_path, result)
            mine = [r for r in result["runs"] if r["adapter"] == adapter]
            arms = {b: [r for r in mine if r["bf16"] is b] for b in (False, True)}
            speed = {b: statistics.median(r["train_examples_per_s"] for r in arms[b]) for b in arms}
            result["summary"][adapter] = {
                "fp32_examples_per_s": speed[False], "bf16_examples_per_s": speed[True],
                "bf16_speedup": common.ratio(speed[True], speed[False]),
                "fp32_test": statistics.mean(r["test_official"] for r in arms[False]),
                "bf16_test": statistics.mean(r["test_official"] for r in arms[True])}
    common.write_result(out_path, result)
    print(json.dumps(result["summary"], indent=1))
    print(f"-> {out_path}")


if __name__ == "__main__":
    main()
