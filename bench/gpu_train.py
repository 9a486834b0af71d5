"""GPU training speed and memory: full, LoRA and QLoRA sequence classification on TinyLlama-1.1B and
Mistral-7B architectures, emotune's batches vs the padded notebook recipe.

    python -m bench.gpu_train          # on a CUDA GPU; elsewhere writes a JSON that says skipped and why
    python -m bench.gpu_train --tiny   # a 2-layer Llama config on the CPU: the same code path, in seconds (CI)

The models are built from their configs (written below, no download) with random weights: speed and
memory do not depend on the weight values. bf16 weights; bf16 autocast; LoRA adapters are kept in
float32 by peft; full fine-tuning trains the bf16 weights directly (AdamW states in bf16), which is what
fits a 7B model's full fine-tuning on one 141 GB card. QLoRA: every Linear of the body quantised to NF4
with double quantisation and bf16 compute (bitsandbytes Linear4bit, as `BitsAndBytesConfig(load_in_4bit,
nf4, double quant)` loads them), then peft `prepare_model_for_kbit_training` and LoRA, as
emotune/adapters.py does. LoRA r=16, alpha=32, dropout 0.1 on q/k/v/o/gate/up/down (the llama/mistral
defaults of emotune/model_registry.py).

Batches are tweet-length: token lengths drawn from a seeded log-normal (median 30, p95 about 70 tokens,
capped at 128). Recipes:
* `emotune`: Trainer's length grouping (`train_sampling_strategy="group_by_length"`) over one mega-batch, each batch padded to its longest row;
* `notebook`: random rows, every row padded to max_length 128.

Figures per run: real (non-pad) tokens/s, peak GPU memory (torch.cuda.max_memory_allocated over the timed
steps and the warm-up, weights included), model FLOPs utilisation
MFU = tokens/s x FLOPs per token / peak, with FLOPs per token = 4N for LoRA/QLoRA (forward 2N + backward
through the activations 2N, no weight gradients of the frozen body) and 6N for full fine-tuning, N the
parameters outside the embedding table; attention's own FLOPs are left out (small at these lengths).
Peak: 989 TFLOP/s, the H100/H200 SXM bf16 dense figure (`--peak-tflops` to change it).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np

from bench import common

NAME = "gpu_train"
H100_BF16_DENSE_TFLOPS = 989.0
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# The architectures, from their published config.json (no weights are downloaded).
CONFIGS = {
    "tinyllama-1.1b": ("llama", dict(  # TinyLlama/TinyLlama-1.1B-Chat-v1.0
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
        num_key_value_heads=4, max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
        hidden_act="silu", tie_word_embeddings=False)),
    "mistral-7b": ("mistral", dict(  # mistralai/Mistral-7B-v0.1 (sliding window irrelevant at 128 tokens)
        vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0,
        hidden_act="silu", sliding_window=None, tie_word_embeddings=False)),
    "tiny-llama": ("llama", dict(  # --tiny: the same code path on the CPU
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu",
        tie_word_embeddings=False)),
}
NUM_LABELS = 4  # TweetEval emotion
PAD_ID = 0


def make_config(name: str):
    from transformers import AutoConfig

    model_type, values = CONFIGS[name]
    return AutoConfig.for_model(model_type, num_labels=NUM_LABELS, pad_token_id=PAD_ID, bos_token_id=1,
                                eos_token_id=2, **values)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def quantize_nf4(model, skip: tuple[str, ...], compute_dtype, device) -> int:
    """Replace every nn.Linear outside `skip` with a bitsandbytes NF4 Linear4bit (double quantisation),
    quantising the current weights on `device`; returns how many were replaced."""
    import bitsandbytes as bnb
    import torch

    replaced = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(child, torch.nn.Linear) or any(s in full.split(".") for s in skip):
                continue
            layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                                      device="meta")
            layer.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                             quant_type="nf4").to(device)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, child_name, layer)
            del child
            replaced += 1
    model.is_loaded_in_4bit = True  # what peft reads to pick its bitsandbytes LoRA layers
    return replaced


def build(model_name: str, adapter: str, device: str, dtype, r: int):
    """(model to train, N: parameters outside the embedding table, facts)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = make_config(model_name)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype)
    n_total = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    facts = {"params": n_total, "params_non_embedding": n_total - n_embed}
    if adapter == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

        if adapter == "qlora":
            facts["quantized_linears"] = quantize_nf4(model, ("score",), dtype, device)
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=r, lora_alpha=2 * r, lora_dropout=0.1,
                                                 target_modules=LLAMA_TARGETS, bias="none"))
        if adapter == "qlora":  # peft's bitsandbytes LoRA layers, not its plain ones
            facts["lora_layers_on_4bit"] = sum(type(m).__name__ == "Linear4bit" and hasattr(m, "lora_A")
                                               for m in model.modules())
    facts["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, n_total - n_embed, facts


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
def tweet_lengths(n: int, seed: int, cap: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(30), 0.5, size=n)), 4, cap).astype(int)


def make_batches(recipe: str, batch_size: int, count: int, vocab: int, max_length: int, seed: int):
    """`count` batches of `batch_size` rows: (input_ids, attention_mask, labels) CPU tensors."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    pool = batch_size * max(50, count)  # 50: Trainer's length-grouping mega-batch
    lengths = tweet_lengths(pool, seed, max_length)
    if recipe == "emotune":  # the train stage's batches: Trainer's group_by_length sampler
        order = np.asarray(get_length_grouped_indices(lengths.tolist(), batch_size, mega_batch_mult=50,
                                                      generator=torch.Generator().manual_seed(seed)))
        groups = [order[i:i + batch_size] for i in range(0, pool, batch_size)]
    else:
        order = np.random.default_rng(seed + 1).permutation(pool)
        groups = [order[i:i + batch_size] for i in range(0, pool, batch_size)]
    groups = [g for g in groups if len(g) == batch_size][:count]
    rng = np.random.default_rng(seed + 2)
    batches = []
    for idx in groups:
        width = int(lengths[idx].max()) if recipe == "emotune" else max_length
        ids = torch.full((len(idx), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, :lengths[i]] = torch.from_numpy(rng.integers(3, vocab, size=lengths[i]))
            mask[row, :lengths[i]] = 1
        batches.append((ids, mask, torch.from_numpy(rng.integers(0, NUM_LABELS, size=len(idx)))))
    return batches


# ---------------------------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------------------------
def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_one(model_name: str, adapter: str, recipe: str, args, device: str) -> dict:
    import contextlib

    import torch
    import torch.nn.functional as F

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.startswith("cuda") \
        else contextlib.nullcontext
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tick = time.perf_counter()
    model, n, facts = build(model_name, adapter, device, dtype, args.r)
    model.train()
    build_s = time.perf_counter() - tick
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01,
                                  fused=device.startswith("cuda") or None)
    batches = make_batches(recipe, args.batch_size, args.warmup + args.steps, make_config(model_name).vocab_size,
                           args.max_length, seed=0)
    weights_mb = torch.cuda.memory_allocated() / 2**20 if device.startswith("cuda") else None

    def train_step(batch):
        ids, mask, labels = (t.to(device, non_blocking=True) for t in batch)
        with autocast():
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for batch in batches[:args.warmup]:
        train_step(batch)
    sync(device)
    tick = time.perf_counter()
    for batch in batches[args.warmup:]:
        loss = train_step(batch)
    sync(device)
    seconds = time.perf_counter() - tick
    timed = batches[args.warmup:]
    real = sum(int(b[1].sum()) for b in timed)
    padded = sum(b[1].numel() for b in timed)
    flops_per_token = (6 if adapter == "full" else 4) * n
    tokens_per_s = real / seconds
    peak = args.peak_tflops * 1e12
    out = {
        "model": model_name, "adapter": adapter, "recipe": recipe, **facts,
        "batch_size": args.batch_size, "steps": len(timed), "seconds": round(seconds, 3),
        "examples_per_s": round(args.batch_size * len(timed) / seconds, 1),
        "tokens_per_s": round(tokens_per_s, 1), "padded_tokens_per_s": round(padded / seconds, 1),
        "pad_fraction": round(1 - real / padded, 4), "mean_real_tokens_per_row": round(real / (args.batch_size * len(timed)), 1),
        "flops_per_token": flops_per_token,
        "mfu": float(f"{tokens_per_s * flops_per_token / peak:.4g}"),
        "hardware_flops_utilisation_incl_pad": float(f"{padded / seconds * flops_per_token / peak:.4g}"),
        "final_loss": round(float(loss.detach()), 4), "build_s": round(build_s, 1),
    }
    if device.startswith("cuda"):
        out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["weights_memory_mb"] = round(weights_mb, 1)
    else:
        out["peak_memory_mb"] = common.peak_rss_mb()  # CPU (--tiny): the process's peak RSS
        out["peak_memory_kind"] = "cpu peak RSS (process-wide)"
    return out


def targets(runs: list[dict]) -> dict:
    def find(model, adapter, recipe="emotune"):
        return next((r for r in runs if r["model"] == model and r["adapter"] == adapter and r["recipe"] == recipe
                     and "error" not in r), None)

    models = sorted({r["model"] for r in runs})
    small, large = ("tiny-llama", "tiny-llama") if models == ["tiny-llama"] else ("tinyllama-1.1b", "mistral-7b")
    out = {}
    q, lo = find(large, "qlora"), find(large, "lora")
    if q and lo:
        value = common.ratio(q["peak_memory_mb"], lo["peak_memory_mb"], 3)
        out["qlora_over_lora_peak_memory_large"] = {"model": large, "value": value, "target_at_most": 0.45,
                                                    "met": value is not None and value <= 0.45}
    s = find(small, "lora")
    if s:
        out["lora_mfu_small"] = {"model": small, "value": s["mfu"], "target_at_least": 0.40, "met": s["mfu"] >= 0.40}
    for model in models:
        for adapter in ("full", "lora", "qlora"):
            a, b = find(model, adapter, "emotune"), find(model, adapter, "notebook")
            if a and b:
                out[f"emotune_over_notebook_tokens_per_s/{model}/{adapter}"] = common.ratio(a["tokens_per_s"], b["tokens_per_s"])
                out[f"emotune_over_notebook_examples_per_s/{model}/{adapter}"] = common.ratio(
                    a["examples_per_s"], b["examples_per_s"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated (default tinyllama-1.1b,mistral-7b; tiny: tiny-llama)")
    parser.add_argument("--adapters", default="full,lora,qlora")
    parser.add_argument("--notebook-adapters", default="lora,qlora", help="adapters also run with the padded notebook batches")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per batch (default 32; tiny 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    parser.add_argument("--tiny", action="store_true", help="tiny Llama config, runs on the CPU too")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import torch

    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        reason = (f"no CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
                  f"{common.cpu_model()}, {torch.get_num_threads()} threads)")
        print(f"skipped: {reason}")
        result.update(skipped=True, reason=reason, runs=[])
        common.write_result(out_path, result)
        return
    device = "cuda" if cuda else "cpu"
    args.batch_size = args.batch_size or (4 if args.tiny else 32)
    args.steps = args.steps or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    models = (args.models or ("tiny-llama" if args.tiny else "tinyllama-1.1b,mistral-7b")).split(",")
    plan = [(m, a, "emotune") for m in models for a in args.adapters.split(",") if a] + \
           [(m, a, "notebook") for m in models for a in args.notebook_adapters.split(",") if a]
    runs = []
    for model_name, adapter, recipe in plan:
        try:
            run = run_one(model_name, adapter, recipe, args, device)
        except torch.cuda.OutOfMemoryError as exc:
            gc.collect()
            torch.cuda.empty_cache()
            run = {"model": model_name, "adapter": adapter, "recipe": recipe, "error": "out of memory",
                   "detail": str(exc).splitlines()[0]}
        gc.collect()  # the run's model and optimizer are garbage now: free them before the next one
        if cuda:
            torch.cuda.empty_cache()
        runs.append(run)
        if "error" in run:
            print(f"{model_name:15s} {adapter:6s} {recipe:8s} {run['error']}", flush=True)
        else:
            print(f"{model_name:15s} {adapter:6s} {recipe:8s} {run['tokens_per_s']:10.1f} tokens/s  "
                  f"{run['examples_per_s']:8.1f} ex/s  MFU {run['mfu']:.1%}  peak {run['peak_memory_mb']:.0f} MB  "
                  f"pad {run['pad_fraction']:.0%}", flush=True)
    result.update(skipped=False, device=device, setup={
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup, "max_length": args.max_length,
        "lora": {"r": args.r, "alpha": 2 * args.r, "dropout": 0.1, "targets": LLAMA_TARGETS}, "lr": args.lr,
        "dtype": "bf16 weights + bf16 autocast" if cuda else "float32 (CPU)",
        "peak_tflops": args.peak_tflops,
        "peak_source": "H100/H200 SXM bf16 dense tensor-core peak (989 TFLOP/s)",
        "flops_per_token": "4N (LoRA, QLoRA), 6N (full); N = parameters outside the embedding table",
        "lengths": "seeded log-normal, median 30 tokens, capped at max_length",
    }, runs=runs, targets=targets(runs))
    common.write_result(out_path, result)


if __name__ == "__main__":
    sys.exit(main())
