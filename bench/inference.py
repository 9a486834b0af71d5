"""CPU inference speed of every adapter on MiniLM, and LoRA vs the same LoRA merged into the base weights.

    python -m bench.inference            # MiniLM, dair-ai/emotion test texts, writes metrics/bench/inference.json
    python -m bench.inference --tiny     # CI smoke run: tiny BERT, toy texts, a temporary JSON

Each variant is the base model with a freshly applied adapter (stages.adapters.load_base + apply_adapter,
exactly what training starts from), not a trained one: speed does not depend on the weight values. A
fresh LoRA's B matrices are zero, which would make "merged equals unmerged" trivially true, so they are
filled with small random values first; the merged model (peft `merge_and_unload`) must then give the
unmerged model's logits (checked, max difference recorded).

Measured from text to predicted label, tokenization included:
* batched: the texts sorted by length, cut into batches of `--batch-size`, each padded to its longest
  row (how emotune evaluates); examples/s over `--passes` passes (median);
* single text: one text at a time (tokenize, forward, argmax), p50/p95/mean latency in ms.
"""
from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
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
