"""CPU inference speed of every adapter on MiniLM, and LoRA vs the same LoRA merged into the base weights.

    python -m bench.inference            # MiniLM, dair-ai/emotion test texts, writes metrics/bench/inference.json
    python -m bench.inference --tiny     # CI smoke run: tiny BERT, toy texts, a temporary JSON

Each variant is the base model with a freshly applied adapter (stages.adapters.load_base + apply_adapter,
exactly what training starts from), not a trained one: speed does not depend on the weight values. A
fresh LoRA's B matrices are zero, which would make "merged equals unmerged" trivially true, so they are
filled with small random values first; the merged model (peft `merge_and_unload`) must then give the
unmerged model's logits (checked, max difference recorded).

`--onnx` measures a TRAINED run instead, in three arms: the run's PyTorch fp32 model (what `emotune predict`
runs), its ONNX fp32 export and its ONNX int8 export (emotune/onnx_export.py, run by emotune/exported.py
with onnxruntime), arms alternating in a rotating order, each with the official metric of its own
predictions on the whole test split. With no trained run at hand it trains one inside the bench (MiniLM,
`--adapter` full by default, `--train-rows` seeded train rows, the project's other settings) in a project
under `--keep` (.cache/bench/onnx/), where bench/serve_load.py then finds the int8 export. Writes
metrics/bench/inference_onnx.json.

Measured from text to predicted label, tokenization included:
* batched: the texts sorted by length, cut into batches of `--batch-size`, each padded to its longest
  row (how emotune evaluates); examples/s over `--passes` passes (median);
* single text: one text at a time (tokenize, forward, argmax), p50/p95/mean latency in ms.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common

NAME = "inference"
VARIANTS = ("full", "head", "lora", "lora_merged", "ia3", "qlora")


def texts_and_model(tiny: bool, work: Path) -> tuple[list[str], str, dict | None, list[str]]:
    import pandas as pd

    if tiny:
        from emotune.testing import save_tiny_model

        labels = ["joy", "anger", "sadness"]
        folder = save_tiny_model("bert", work / "tiny-bert")
        return common.toy_texts(96, 1, labels)["text"].tolist(), str(folder), None, labels
    from bench.train_vs_notebook import audited_emotion
    from emotune.config import load_params

    labels = list(load_params().dataset("emotion").labels)
    frame = pd.read_parquet(audited_emotion(work) / "test.parquet")
    return frame["text"].tolist(), "minilm", None, labels


def build(variant: str, name: str, registry, labels: list[str], seed: int):
    """(model in eval mode, tokenizer, facts) for one variant, freshly applied."""
    import torch

    from emotune.adapters import apply_adapter, load_base, parameter_counts
    from emotune.config import AdapterHParams

    adapter = "lora" if variant == "lora_merged" else variant
    torch.manual_seed(seed)
    loaded = load_base(name, adapter, labels, registry=registry)
    model = apply_adapter(loaded, adapter, AdapterHParams())
    if adapter in ("lora", "qlora"):
        with torch.no_grad():  # fresh B = 0; make the adapter's contribution real
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.normal_(0.0, 0.02)
    facts = {"adapter": adapter, "params": parameter_counts(model)}
    if variant == "lora_merged":
        model = model.merge_and_unload()
        facts["merged"] = True
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    facts["weights_mb"] = round(weights / 2**20, 1)
    return model.eval(), loaded.tokenizer, facts


def predict(model, tokenizer, texts: list[str], max_length: int):
    import torch

    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits


def batched(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> tuple[float, np.ndarray]:
    order = np.argsort([len(t) for t in texts], kind="stable")
    logits = [None] * len(texts)
    tick = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        out = predict(model, tokenizer, [texts[i] for i in idx], max_length).float().numpy()
        for row, i in enumerate(idx):
            logits[i] = out[row]
    seconds = time.perf_counter() - tick
    return seconds, np.stack(logits)


def measure(model, tokenizer, texts: list[str], single: list[str], args) -> tuple[dict, np.ndarray]:
    batched(model, tokenizer, texts[:args.batch_size], args.batch_size, args.max_length)  # warm-up
    for text in single[:5]:
        predict(model, tokenizer, [text], args.max_length)
    runs = []
    logits = None
    for _ in range(args.passes):
        seconds, logits = batched(model, tokenizer, texts, args.batch_size, args.max_length)
        runs.append(len(texts) / seconds)
    latencies = []
    for text in single:
        tick = time.perf_counter()
        predict(model, tokenizer, [text], args.max_length).argmax(-1)
        latencies.append((time.perf_counter() - tick) * 1000)
    return {
        "batched_examples_per_s": round(float(np.median(runs)), 1),
        "batched_examples_per_s_each_pass": [round(r, 1) for r in runs],
        "single_p50_ms": round(common.percentile(latencies, 50), 2),
        "single_p95_ms": round(common.percentile(latencies, 95), 2),
        "single_mean_ms": round(float(np.mean(latencies)), 2),
    }, logits


# ---------------------------------------------------------------------------------------------
# --onnx: PyTorch fp32 vs ONNX fp32 vs ONNX int8 on a trained run
# ---------------------------------------------------------------------------------------------
ONNX_NAME = "inference_onnx"
ONNX_DATASET = "emotion"
ONNX_ARMS = ("pytorch_fp32", "onnx_fp32", "onnx_int8")
KEEP = common.ROOT / ".cache" / "bench" / "onnx"


def trained_project(work: Path, adapter: str, train_rows: int, epochs: int, threads: int | None,
                    tiny: bool) -> tuple[Path, str]:
    """A project under `work` with one trained classifier run (trained here unless already there)."""
    import yaml

    from emotune import plan as planning
    from emotune import train as tr
    from emotune.config import parse_params
    from emotune.paths import run_paths
    from emotune.tokenize import tokenize_dataset

    root = work / "project"
    dataset = "toy" if tiny else ONNX_DATASET
    if tiny:
        from emotune.testing import save_tiny_model

        labels = ["joy", "anger", "sadness"]
        audited = root / "data" / "audited" / dataset
        audited.mkdir(parents=True, exist_ok=True)
        for k, (split, n) in enumerate((("train", 160), ("validation", 48), ("test", 96))):
            common.toy_texts(n, 100 + k, labels).to_parquet(audited / f"{split}.parquet", index=False)
        (audited / "meta.json").write_text(json.dumps({"checksums": {}, "rows": {}}))
        raw = {"seed": 42, "datasets": [], "fetch": {}, "clean": {}, "audit": {}, "tokenize": {"max_length": 64},
               "train": {"epochs": epochs, "batch_size": 16, "lr": 2e-3},
               "dataset_registry": {dataset: {"task": "single_label", "labels": labels, "official_metric": "accuracy",
                                              "files": {"train": "t.csv", "test": "t.csv"}, "format": "csv",
                                              "label_column": "label"}}}
        model = {"name": "tiny-bert", "kind": "local", "folder": str(save_tiny_model("bert", work / "tiny-bert")),
                 "files": {}}
    else:
        raw = yaml.safe_load((common.ROOT / "params.yaml").read_text(encoding="utf-8"))
        raw.update(datasets=[dataset], models=["minilm"], adapters=[adapter])
        for section in ("large", "generative"):
            if section in raw:
                raw[section] = {"datasets": [], "models": [], "adapters": []}
        raw["reference"] = {"models": [], "adapters": []}  # it follows `datasets`: no models, no runs
        raw["baseline"]["zero_shot"]["datasets"] = []
        raw["train"].update(max_train_examples=train_rows, epochs=epochs)
        model = None
    if threads:
        raw["train"]["threads"] = threads
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = parse_params(raw)
    model = model or planning.model_entry("minilm", params)
    if not tiny and not (root / "data" / "audited" / dataset / "meta.json").exists():
        common.audited_slice(root, dataset, sizes=(train_rows, 500, None))  # the whole test split
    paths = run_paths(dataset, model["name"], adapter, root)
    name = f"{dataset}/{model['name']}/{adapter}"
    if (root / "models" / name / "run.json").exists():
        print(f"reusing the trained run {root / 'models' / name}", flush=True)
        return root, name
    paths.data.mkdir(parents=True, exist_ok=True)
    tokenize_dataset(planning.tokenize_plan(params, dataset, model), root / "data" / "audited" / dataset, paths.data)
    plan = planning.run_plan(params, params.matrices()[0], dataset, model, adapter)
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json(), indent=2))
    tick = time.perf_counter()
    tr.train(plan, paths, log=lambda message: print(message, flush=True))
    print(f"trained {name} in {time.perf_counter() - tick:.0f} s", flush=True)
    return root, name


def onnx_arms(args) -> None:
    import pandas as pd
    import torch

    from emotune import metrics
    from emotune.exported import load_export
    from emotune.onnx_export import export_onnx, onnx_export_dir
    from emotune.runs import quiet_transformers, resolve_run

    threads = args.threads or 2
    torch.set_num_threads(threads)
    quiet_transformers()
    out_path = common.result_path(ONNX_NAME, args.tiny, args.out)
    result = common.header(ONNX_NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-onnx-")) if args.tiny else Path(args.keep)
    root, name = trained_project(work, args.adapter, args.train_rows, args.epochs, threads, args.tiny)
    run = resolve_run(name, root)
    exports, export_s = {}, {}
    for quantize in (None, "int8"):
        tick = time.perf_counter()
        exports[quantize] = export_onnx(run, onnx_export_dir(run, quantize), quantize)
        export_s["onnx_int8" if quantize else "onnx_fp32"] = round(time.perf_counter() - tick, 1)
    test = pd.read_parquet(root / "data" / "audited" / run.dataset / "test.parquet")
    texts = test["text"].tolist()  # the clean stage's output: already normalised
    y = np.array([run.labels.index(list(labels)[0]) for labels in test["labels"]])
    trained = run.load()
    model, tokenizer = trained.model.eval(), trained.tokenizer
    onnx = {arm: load_export(exports[q], threads) for arm, q in (("onnx_fp32", None), ("onnx_int8", "int8"))}

    def label_ids(arm: str, batch: list[str], batch_size: int) -> np.ndarray:
        if arm == "pytorch_fp32":
            _, logits = batched(model, tokenizer, batch, batch_size, run.max_length)
            return logits.argmax(1)
        return onnx[arm].probabilities(batch, batch_size, normalised=True).argmax(1)

    rng = np.random.default_rng(0)
    single = [texts[i] for i in rng.choice(len(texts), size=min(args.single or 200, len(texts)), replace=False)]
    for arm in ONNX_ARMS:  # warm-up
        label_ids(arm, texts[:args.batch_size], args.batch_size)
        for text in single[:5]:
            label_ids(arm, [text], 1)
    rates = {arm: [] for arm in ONNX_ARMS}
    predictions = {}
    passes = 2 if args.tiny else args.passes
    for p in range(passes):  # arms in a rotating order: load changes from other work hit every arm alike
        for arm in ONNX_ARMS[p % 3:] + ONNX_ARMS[:p % 3]:
            tick = time.perf_counter()
            predictions[arm] = label_ids(arm, texts, args.batch_size)
            rates[arm].append(len(texts) / (time.perf_counter() - tick))
    latencies = {arm: [] for arm in ONNX_ARMS}
    for i, text in enumerate(single):
        for arm in ONNX_ARMS[i % 3:] + ONNX_ARMS[:i % 3]:
            tick = time.perf_counter()
            label_ids(arm, [text], 1)
            latencies[arm].append((time.perf_counter() - tick) * 1000)
    official = run.plan.dataset.official_metric
    arms = {}
    for arm in ONNX_ARMS:
        score = metrics.scores(y, predictions[arm], False, len(run.labels))[official]
        arms[arm] = {
            "batched_examples_per_s": round(float(np.median(rates[arm])), 1),
            "batched_examples_per_s_each_pass": [round(r, 1) for r in rates[arm]],
            "single_p50_ms": round(common.percentile(latencies[arm], 50), 2),
            "single_p95_ms": round(common.percentile(latencies[arm], 95), 2),
            official: round(float(score), 4),
            "agreement_with_pytorch": round(float((predictions[arm] == predictions["pytorch_fp32"]).mean()), 4),
        }
        if arm != "pytorch_fp32":
            folder = exports["int8" if arm == "onnx_int8" else None]
            arms[arm].update(model_mb=round((folder / "model.onnx").stat().st_size / 2**20, 1),
                             export_s=export_s[arm],
                             export_check=json.loads((folder / "export.json").read_text())["check"])
        print(f"{arm:13s} batched {arms[arm]['batched_examples_per_s']:8.1f} ex/s   single p50 "
              f"{arms[arm]['single_p50_ms']:6.2f} ms  p95 {arms[arm]['single_p95_ms']:6.2f} ms   {official} "
              f"{arms[arm][official]:.4f}", flush=True)
    base = arms["pytorch_fp32"]
    ratios = {f"{arm}_over_pytorch_batched": common.ratio(arms[arm]["batched_examples_per_s"],
                                                          base["batched_examples_per_s"]) for arm in ONNX_ARMS[1:]}
    ratios |= {f"pytorch_over_{arm}_single_p50": common.ratio(base["single_p50_ms"], arms[arm]["single_p50_ms"])
               for arm in ONNX_ARMS[1:]}
    int8 = arms["onnx_int8"]
    targets = {"int8_batched_at_least_2.5x": ratios["onnx_int8_over_pytorch_batched"] >= 2.5,
               "int8_single_p50_at_most_10_ms": int8["single_p50_ms"] <= 10,
               "int8_metric_within_0.5_point": abs(int8[official] - base[official]) * 100 <= 0.5}
    result.update({
        "setup": {"run": name, "adapter": args.adapter, "model": "tiny-bert" if args.tiny else "minilm",
                  "train_rows": None if args.tiny else args.train_rows, "epochs": args.epochs,
                  "test_texts": len(texts), "single_texts": len(single), "passes": passes,
                  "batch_size": args.batch_size, "max_length": run.max_length, "threads": threads,
                  "official_metric": official,
                  "note": "arms alternate in a rotating order per pass and per single text; tokenization "
                          "included (transformers' tokenizer for PyTorch, `tokenizers` for ONNX)"},
        "arms": arms, "ratios": ratios, "targets_met": targets, "peak_rss_mb": common.peak_rss_mb(),
    })
    common.write_result(out_path, result)
    if args.tiny:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=None, help="texts of the batched pass (default 1000; tiny 96)")
    parser.add_argument("--single", type=int, default=None, help="texts timed one by one (default 200; tiny 20)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--onnx", action="store_true", help="PyTorch fp32 vs ONNX fp32 vs ONNX int8 on a trained run")
    parser.add_argument("--adapter", default="full", help="--onnx: the adapter of the run trained here")
    parser.add_argument("--train-rows", type=int, default=2000, help="--onnx: seeded train rows of that run")
    parser.add_argument("--epochs", type=int, default=2, help="--onnx: its epochs")
    parser.add_argument("--keep", default=str(KEEP), help="--onnx: where the trained project and exports stay")
    args = parser.parse_args(argv)
    if args.onnx:
        onnx_arms(args)
        return
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n_texts = args.texts or (96 if args.tiny else 1000)
    n_single = args.single or (20 if args.tiny else 200)
    if args.tiny:
        args.passes = min(args.passes, 2)
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-inference-"))
    try:
        pool, name, registry, labels = texts_and_model(args.tiny, work)
        rng = np.random.default_rng(0)
        texts = [pool[i] for i in rng.choice(len(pool), size=min(n_texts, len(pool)), replace=False)]
        single = [pool[i] for i in rng.choice(len(pool), size=min(n_single, len(pool)), replace=False)]
        variants = {}
        lora_logits = None
        for variant in args.variants.split(","):
            model, tokenizer, facts = build(variant, name, registry, labels, seed=42)
            figures, logits = measure(model, tokenizer, texts, single, args)
            variants[variant] = {**facts, **figures}
            if variant == "lora":
                lora_logits = logits
            if variant == "lora_merged" and lora_logits is not None:
                variants[variant]["max_abs_logit_diff_vs_unmerged"] = float(np.abs(logits - lora_logits).max())
                variants[variant]["same_predictions_as_unmerged"] = bool(
                    (logits.argmax(-1) == lora_logits.argmax(-1)).all())
            print(f"{variant:12s} batched {figures['batched_examples_per_s']:8.1f} ex/s   single p50 "
                  f"{figures['single_p50_ms']:7.2f} ms  p95 {figures['single_p95_ms']:7.2f} ms   weights "
                  f"{facts['weights_mb']} MB", flush=True)
            del model
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = {}
    if "lora" in variants and "lora_merged" in variants:
        lo, me = variants["lora"], variants["lora_merged"]
        ratios["merged_over_lora_batched"] = common.ratio(me["batched_examples_per_s"], lo["batched_examples_per_s"])
        ratios["lora_over_merged_single_p50"] = common.ratio(lo["single_p50_ms"], me["single_p50_ms"])
        print(f"merged LoRA: {ratios['merged_over_lora_batched']}x the batched throughput of unmerged LoRA; "
              f"single p50 LoRA/merged {ratios['lora_over_merged_single_p50']}x; max logit diff "
              f"{me.get('max_abs_logit_diff_vs_unmerged')}")
    if "full" in variants:
        ratios["batched_vs_full"] = {v: common.ratio(f["batched_examples_per_s"], variants["full"]["batched_examples_per_s"])
                                     for v, f in variants.items()}
    result.update({
        "setup": {"model": name if not args.tiny else "tiny-bert", "texts": "dair-ai/emotion test split (audited)"
                  if not args.tiny else "toy", "batched_texts": len(texts), "single_texts": len(single),
                  "passes": args.passes, "batch_size": args.batch_size, "max_length": args.max_length,
                  "weights": "freshly applied adapters (untrained; LoRA B filled with N(0, 0.02)); speed does not "
                             "depend on the weight values",
                  "threads": torch.get_num_threads(), "dtype": "float32 (qlora: NF4 body, float32 compute)"},
        "variants": variants, "ratios": ratios, "peak_rss_mb": common.peak_rss_mb(),
    })
    common.write_result(out_path, result)


if __name__ == "__main__":
    main()
