"""CPU training: emotune's train stage vs the notebook recipe and vs a fair Trainer peer, same data,
model and hyper-parameters.

    python -m bench.train_vs_notebook                 # dair-ai/emotion, MiniLM + LoRA, writes metrics/bench/train_vs_notebook.json
    python -m bench.train_vs_notebook --adapter ia3   # another adapter (train_vs_notebook_ia3.json)
    python -m bench.train_vs_notebook --adapter ia3 --arms emotune,peer   # fair peer only (train_vs_peer_ia3.json,
                                                      # the file `python -m bench.report` tabulates per adapter)
    python -m bench.train_vs_notebook --tiny          # CI smoke run: tiny BERT, toy data, a temporary JSON

The three arms:
* `emotune`: `stages.train.train(plan, paths)`, the train stage itself, on the tokenize stage's output
  (transformers.Trainer with emotune's TrainingArguments: length-grouped batches, dynamic padding, fused
  AdamW, one validation pass per epoch, checkpoints).
* `peer`: what a user who knows Trainer writes: pre-tokenized rows without padding,
  `DataCollatorWithPadding`, `train_sampling_strategy="group_by_length"`, fused AdamW (Trainer's default
  on torch >= 2.8) over the same parameter groups as emotune's (the fresh head at the plan's head_lr; an
  expert passes them as `optimizers=(AdamW(groups, fused=True), None)`), no evaluation during training.
* `notebook`: the common notebook: `datasets.map(tokenizer(..., padding="max_length", max_length=128))`,
  random batches, Trainer's defaults (fp32, eval batch 8, no evaluation during training).

Shared by all three: the adapter (`--adapter`: full, head, lora, dora, ia3 or qlora; each arm builds the
same model: emotune's peft config, head modules and 4-bit config, so they differ in the loop and not in
what they train), the training rows (a seeded subset of the audited train split, the same rows in
every arm of a seed), the test split, the model, LoRA r/alpha/dropout/target modules and the head trained
in full, lr, batch size, epochs, warmup ratio, weight decay, max grad norm, the seed and the number of
torch threads. Each arm runs in a fresh subprocess (so peak RSS is its own), and the arms alternate:
emotune, peer, notebook for the first seed, notebook, peer, emotune for the next, and so on. A
torch.profiler pass over a few steps of each batch shape counts the FLOPs of the training step; the
achieved FLOP/s are reported as a fraction of this machine's matmul peak measured at the model's shapes
(fp32 and bf16) in the same run.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench import common

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PARAMS_FILE = ROOT / "params.yaml"


NAME = "train_vs_notebook"
DATASET = "emotion"
DEFAULT_ADAPTER = "lora"
NOTEBOOK_MAX_LENGTH = 128


# ---------------------------------------------------------------------------------------------
# Preparation (parent process): the data, the tokenized splits and the plan both arms share
# ---------------------------------------------------------------------------------------------
def audited_emotion(work: Path) -> Path:
    """data/audited/emotion of this checkout (`dvc checkout data/audited/emotion` or `dvc repro`);
    without it, the cleaned splits straight from the mirror (no audit columns: tokenize reads id, text,
    labels only)."""
    folder = ROOT / "data" / "audited" / DATASET
    if (folder / "train.parquet").exists():
        return folder
    from emotune.clean import clean_splits
    from emotune.config import load_params
    from emotune.data_registry import fetch_dataset

    print(f"{folder} is missing; building the cleaned splits from the mirror", flush=True)
    params = load_params()
    spec = params.dataset(DATASET)
    splits, _ = clean_splits(fetch_dataset(spec, params.fetch, params.seed).splits, spec, params.clean)
    out = work / "audited" / DATASET
    out.mkdir(parents=True)
    for split, frame in splits.items():
        frame.to_parquet(out / f"{split}.parquet", index=False)
    (out / "meta.json").write_text(json.dumps({"checksums": {}, "rows": {k: len(v) for k, v in splits.items()}}))
    return out


def tiny_setup(work: Path) -> tuple[dict, dict, Path]:
    """A tiny random BERT and a learnable toy dataset (CI)."""
    from emotune.config import parse_params
    from emotune.testing import save_tiny_model

    labels = ["joy", "anger", "sadness"]
    model_dir = save_tiny_model("bert", work / "tiny-bert")
    audited = work / "audited" / "toy"
    audited.mkdir(parents=True)
    for k, (split, n) in enumerate((("train", 96), ("validation", 32), ("test", 48))):
        common.toy_texts(n, 100 + k, labels).to_parquet(audited / f"{split}.parquet", index=False)
    (audited / "meta.json").write_text(json.dumps({"checksums": {}, "rows": {}}))
    params = parse_params({
        "seed": 42, "datasets": [], "fetch": {}, "clean": {}, "audit": {},
        "adapter": {"r": 4, "alpha": 8, "dropout": 0.1}, "tokenize": {"max_length": NOTEBOOK_MAX_LENGTH},
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "lr": 1e-2, "threads": 1},
        "dataset_registry": {"toy": {"task": "single_label", "labels": labels, "official_metric": "accuracy",
                                     "files": {"train": "t.csv", "test": "t.csv"}, "format": "csv",
                                     "label_column": "label"}}})
    model = {"name": "tiny-bert", "kind": "local", "folder": str(model_dir), "files": {}}
    return params, model, audited


def real_setup(work: Path, adapter: str) -> tuple[dict, dict, Path]:
    import yaml

    from emotune.config import parse_params
    from emotune.plan import model_entry

    raw = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    raw.update(datasets=[DATASET], models=["minilm"], adapters=[adapter],
               large={"datasets": [], "models": [], "adapters": []},
               generative={"datasets": [], "models": [], "adapters": []},
               reference={"models": [], "adapters": []})
    raw["baseline"]["zero_shot"]["datasets"] = []
    params = parse_params(raw)
    return params, model_entry("minilm", params), audited_emotion(work)


def jsonable_peft_config(config) -> dict:
    """A peft config as JSON (sets as sorted lists), for peft.get_peft_config in the arm's process."""
    return {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in config.to_dict().items()}


def prepare(args, work: Path) -> dict:
    """Tokenize once (the tokenize stage's own function) and write the plan both arms read."""
    from emotune import plan as plan_stage
    from emotune import tokenize as tokenize_stage
    from emotune.paths import run_paths

    adapter = args.adapter
    params, model, audited = tiny_setup(work) if args.tiny else real_setup(work, adapter)
    dataset = "toy" if args.tiny else DATASET
    paths = run_paths(dataset, model["name"], adapter, work / "shared")
    paths.data.mkdir(parents=True)
    tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, dataset, model), audited, paths.data)
    main_matrix = SimpleNamespace(name="", train=params.train)  # the main matrix's train settings
    plan = plan_stage.run_plan(params, main_matrix, dataset, model, adapter)
    plan = plan.with_train(epochs=args.epochs, max_train_examples=args.rows, threads=args.threads)
    if args.lr is not None:
        plan = plan.with_train(lr=args.lr)

    # The peer's and the notebook's model is emotune's: the same peft config (target modules, the head
    # trained in full as modules_to_save: BERT's pooler + classifier, the modules kept out of the adapter),
    # the same trainable set for full and head, the same 4-bit config for qlora, so the arms differ in
    # the recipe (padding, batching, loop) and not in what they train.
    from emotune.adapters import check_adapter, load_base, peft_config
    from emotune.plan import model_source, resolve_entry

    entry = check_adapter(adapter)
    resolved = resolve_entry(model)
    name, registry = model_source(plan.model)
    loaded = load_base(name, adapter, plan.dataset.labels, registry=registry, hp=plan.hparams)
    config = peft_config(loaded, adapter, plan.hparams) if entry.peft else None
    targets = sorted(config.target_modules) if config is not None else []
    return {"plan": plan.to_json(), "adapter": adapter, "quantized": entry.quantized,
            "peft_config": jsonable_peft_config(config) if config is not None else None,
            "data": str(paths.data), "audited": str(audited), "model_dir": str(resolved.location),
            "lora_targets": targets, "modules_to_save": list(loaded.head_modules),
            "exclude_modules": sorted(config.exclude_modules or []) if config is not None else [],
            "max_length": NOTEBOOK_MAX_LENGTH, "test_rows": args.test_rows, "work": str(work)}


# ---------------------------------------------------------------------------------------------
# The arms (each in its own subprocess)
# ---------------------------------------------------------------------------------------------
def test_frame(spec: dict):
    import pandas as pd

    frame = pd.read_parquet(Path(spec["data"]) / "test.parquet")
    if spec["test_rows"] and spec["test_rows"] < len(frame):
        frame = frame.sample(spec["test_rows"], random_state=0).sort_index()
    return frame.reset_index(drop=True)


def train_sample(spec: dict, seed: int):
    """The training rows of a run with this seed: what stages.train.train() samples (sample_rows)."""
    from emotune.rows import load_rows, sample_rows

    return sample_rows(load_rows(Path(spec["data"]), "train"), spec["plan"]["train"]["max_train_examples"], seed)


def ids_digest(ids) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def run_emotune(spec: dict, seed: int, out: Path) -> dict:
    import torch
    from transformers import AutoTokenizer

    from emotune import train as tr
    from emotune.paths import RunPaths
    from emotune.plan import RunPlan

    plan = dataclasses.replace(RunPlan.from_json(spec["plan"]), seed=seed)
    root = out / "run"
    data = Path(spec["data"])
    paths = RunPaths(plan=root / "plan.json", data=data, model=root / "model", checkpoints=root / "checkpoints",
                        live=root / "live", metrics=root / "metrics.json")
    started = time.perf_counter()
    result = tr.train(plan, paths, log=lambda m: print(m, flush=True))
    call_s = time.perf_counter() - started
    summary = result["summary"]
    model = result["model"]

    # test accuracy: the stage's own evaluation path (length-sorted batches, dynamic padding)
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"], local_files_only=True)
    recipe = tr.ClassifierRecipe(plan, data, "cpu")
    test = tr.ClassificationBatches(test_frame(spec), tokenizer, recipe.multi_label)
    tick = time.perf_counter()
    pred = recipe.predict(model, test, plan.train.eval_batch_size, contextlib.nullcontext)["pred"]
    eval_s = time.perf_counter() - tick
    train = train_sample(spec, seed)
    lengths = train["length"].to_numpy()
    padded = padded_tokens(lengths, plan.train.batch_size, seed)
    return {
        "arm": "emotune", "seed": seed, "train_rows": int(summary["train_examples"]),
        "train_ids_sha256": ids_digest(train["id"]),
        "examples_per_s": summary["train_examples_per_s"], "tokens_per_s": summary["tokens_per_s"],
        "train_loop_s": summary["train_time_s"],
        "real_tokens_per_epoch": int(lengths.sum()), "padded_tokens_per_epoch": padded,
        "pad_fraction": round(1 - lengths.sum() / padded, 4),
        # from tokens_per_s (real tokens over the unrounded loop seconds): the summary's train_time_s is
        # rounded to 0.1 s, and the tiny head-only CI run trains in under 0.05 s on a fast CPU (it was 0.0)
        "padded_tokens_per_s": round(summary["tokens_per_s"] * padded / max(int(lengths.sum()), 1), 1),
        "train_call_s": round(call_s, 1),
        "test_accuracy": float((pred == test.targets).mean()), "test_rows": len(test),
        "test_examples_per_s": round(len(test) / eval_s, 1),
        "val_accuracy": summary["val"]["accuracy"],
        "trainable_params": summary["params"]["trainable"],
        "peak_rss_mb": common.peak_rss_mb(), "threads": torch.get_num_threads(),
    }


def grouped_batches(lengths, batch_size: int, seed: int) -> list[np.ndarray]:
    """Batches as Trainer's `group_by_length` sampler cuts them (emotune and the peer both use it)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    order = np.asarray(get_length_grouped_indices(list(map(int, lengths)), batch_size,
                                                  generator=torch.Generator().manual_seed(seed)))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(lengths, batch_size: int, seed: int) -> int:
    """Tokens incl. padding of one epoch of length-grouped batches, each padded to its longest row."""
    return sum(int(lengths[b].max()) * len(b) for b in grouped_batches(lengths, batch_size, seed))


def notebook_rows(spec: dict, seed: int):
    """(train, test) frames of the audited texts of the arm's rows, with an integer `label`."""
    import pandas as pd

    labels = spec["plan"]["dataset"]["labels"]
    audited = pd.read_parquet(Path(spec["audited"]) / "train.parquet").set_index("id")
    train_ids = train_sample(spec, seed)["id"].tolist()
    train_df = audited.loc[train_ids].reset_index()
    test_ids = test_frame(spec)["id"].tolist()
    test_df = pd.read_parquet(Path(spec["audited"]) / "test.parquet").set_index("id").loc[test_ids].reset_index()
    label2id = {label: i for i, label in enumerate(labels)}
    for frame in (train_df, test_df):
        frame["label"] = frame["labels"].map(lambda names: label2id[names[0]])
    return train_df, test_df, train_ids


def in_head(parameter: str, heads) -> bool:
    """Whether a parameter (`bert.pooler.dense.weight`) belongs to one of the head modules (`pooler`):
    the very test emotune's loader uses to pick the modules it trains fully."""
    from emotune.model_registry import _covered, _owner

    return _covered(_owner(parameter), heads)


def hf_model(spec: dict):
    """The arm's model, built the way a Trainer user builds it from the adapter emotune's run trains:
    peft's get_peft_model with emotune's peft config (prepare_model_for_kbit_training first on a 4-bit
    body, as peft's QLoRA guide does), the whole model for full, the head only for head."""
    from transformers import AutoModelForSequenceClassification

    labels = spec["plan"]["dataset"]["labels"]
    extra = {}
    if spec["quantized"]:
        from emotune.model_registry import bnb_4bit_config

        extra["quantization_config"] = bnb_4bit_config(spec["modules_to_save"])
    model = AutoModelForSequenceClassification.from_pretrained(
        spec["model_dir"], num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, local_files_only=True, **extra)
    if spec["peft_config"] is None:  # full, head
        for name, p in model.named_parameters():
            p.requires_grad_(spec["adapter"] == "full" or in_head(name, spec["modules_to_save"]))
        return model
    from peft import get_peft_config, get_peft_model, prepare_model_for_kbit_training

    if spec["quantized"]:
        from emotune.model_registry import keep_4bit_layout_trainable

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        # bitsandbytes 0.50 on AVX512-BF16 CPUs breaks 4-bit training after an eval-mode forward
        # (emotune/model_registry.py); the peer gets the same work-around, or it would not train there.
        keep_4bit_layout_trainable(model)
    return get_peft_model(model, get_peft_config(spec["peft_config"]))


def peer_optimizer(model, cfg: dict, heads):
    """Fused AdamW over emotune's parameter groups (the head at head_lr, no decay on biases and norms):
    the same steps as emotune's run, so the two arms reach the same accuracy and differ only in speed."""
    import torch

    from emotune.adapters import param_groups

    groups = param_groups(model, heads, cfg["lr"], cfg["head_lr"], cfg["weight_decay"])
    return torch.optim.AdamW(groups, lr=cfg["lr"], fused=True)


def hf_arm_start(spec: dict, seed: int):
    """What the peer and notebook arms set up alike: threads, seed, the same rows emotune trains on
    (emotune.rows.sample_rows with this seed: their audited texts), the tokenizer. Returns (train_df,
    test_df, train_ids, tokenizer, the perf_counter tick the set-up time counts from)."""
    import torch
    from transformers import AutoTokenizer, set_seed

    cfg = spec["plan"]["train"]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    set_seed(seed)
    train_df, test_df, train_ids = notebook_rows(spec, seed)
    tick = time.perf_counter()
    return train_df, test_df, train_ids, AutoTokenizer.from_pretrained(spec["model_dir"], local_files_only=True), tick


def hf_arm_figures(arm: str, seed: int, train_ids, rows: int, epochs: int, runtime: float, real: int,
                   padded: int, train_call_s: float, predictions, test_rows: int, eval_s: float) -> dict:
    """The figures the peer and notebook arms report alike (throughput per real and padded token, test)."""
    return {
        "arm": arm, "seed": seed, "train_rows": rows, "train_ids_sha256": ids_digest(train_ids),
        "examples_per_s": round(rows * epochs / runtime, 2),
        "tokens_per_s": round(real * epochs / runtime, 1),
        "train_loop_s": round(runtime, 1),
        "real_tokens_per_epoch": real, "padded_tokens_per_epoch": padded,
        "pad_fraction": round(1 - real / padded, 4),
        "padded_tokens_per_s": round(padded * epochs / runtime, 1),
        "train_call_s": round(train_call_s, 1),
        "test_accuracy": float((predictions.predictions.argmax(-1) == predictions.label_ids).mean()),
        "test_rows": test_rows, "test_examples_per_s": round(test_rows / eval_s, 1),
    }


def run_peer(spec: dict, seed: int, out: Path) -> dict:
    """The fair peer: plain Trainer the way its documentation recommends for speed: dynamic padding,
    length grouping, its default fused AdamW."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    cfg = spec["plan"]["train"]
    train_df, test_df, train_ids, tokenizer, tick = hf_arm_start(spec, seed)

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=spec["max_length"])

    train_ds = Dataset.from_pandas(train_df[["text", "label"]]).map(encode, batched=True, remove_columns=["text"])
    test_ds = Dataset.from_pandas(test_df[["text", "label"]]).map(encode, batched=True, remove_columns=["text"])
    model = hf_model(spec)
    optimizer = peer_optimizer(model, cfg, spec["modules_to_save"])
    setup_s = time.perf_counter() - tick
    args = TrainingArguments(
        output_dir=str(out / "trainer"), learning_rate=cfg["lr"], per_device_train_batch_size=cfg["batch_size"],
        per_device_eval_batch_size=cfg["eval_batch_size"], num_train_epochs=cfg["epochs"],
        warmup_steps=cfg["warmup_ratio"], weight_decay=cfg["weight_decay"], max_grad_norm=cfg["max_grad_norm"],
        train_sampling_strategy="group_by_length", seed=seed, report_to="none", use_cpu=True, disable_tqdm=True,
        save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tokenizer),
                      optimizers=(optimizer, None))  # Trainer builds the scheduler (linear, the warmup)
    tick = time.perf_counter()
    metrics = trainer.train().metrics
    trainer_call_s = time.perf_counter() - tick
    runtime = metrics["train_runtime"]
    tick = time.perf_counter()
    predictions = trainer.predict(test_ds)
    eval_s = time.perf_counter() - tick
    lengths = np.asarray([len(ids) for ids in train_ds["input_ids"]])
    real, padded = int(lengths.sum()), padded_tokens(lengths, cfg["batch_size"], seed)
    return {
        **hf_arm_figures("peer", seed, train_ids, len(train_ds), cfg["epochs"], runtime, real, padded,
                         setup_s + trainer_call_s, predictions, len(test_ds), eval_s),
        "optim": f"{type(optimizer).__name__}(fused={optimizer.defaults.get('fused')}), head lr {cfg['head_lr']}",
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "peak_rss_mb": common.peak_rss_mb(), "threads": torch.get_num_threads(),
    }


def run_notebook(spec: dict, seed: int, out: Path) -> dict:
    """The notebook recipe, written the way the seeds' notebooks write it."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    cfg = spec["plan"]["train"]
    train_df, test_df, train_ids, tokenizer, tick = hf_arm_start(spec, seed)

    def encode(batch):
        return tokenizer(batch["text"], padding="max_length", truncation=True, max_length=spec["max_length"])

    train_ds = Dataset.from_pandas(train_df[["text", "label"]]).map(encode, batched=True)
    test_ds = Dataset.from_pandas(test_df[["text", "label"]]).map(encode, batched=True)
    model = hf_model(spec)  # Trainer's default optimizer: one LR for the head and the body, as notebooks do
    setup_s = time.perf_counter() - tick
    args = TrainingArguments(
        output_dir=str(out / "trainer"), learning_rate=cfg["lr"], per_device_train_batch_size=cfg["batch_size"],
        num_train_epochs=cfg["epochs"], warmup_steps=cfg["warmup_ratio"], weight_decay=cfg["weight_decay"],
        max_grad_norm=cfg["max_grad_norm"], seed=seed, report_to="none", use_cpu=True, disable_tqdm=True,
        save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=train_ds)
    tick = time.perf_counter()
    metrics = trainer.train().metrics
    trainer_call_s = time.perf_counter() - tick
    runtime = metrics["train_runtime"]
    tick = time.perf_counter()
    predictions = trainer.predict(test_ds)
    eval_s = time.perf_counter() - tick
    real = int(np.asarray(train_ds["attention_mask"]).sum())
    padded = len(train_ds) * spec["max_length"]
    return {
        **hf_arm_figures("notebook", seed, train_ids, len(train_ds), cfg["epochs"], runtime, real, padded,
                         setup_s + trainer_call_s, predictions, len(test_ds), eval_s),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "peak_rss_mb": common.peak_rss_mb(), "threads": torch.get_num_threads(),
    }


def arm_main(args) -> None:
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.result).parent / f"{args.arm}-{args.seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run = {"emotune": run_emotune, "peer": run_peer, "notebook": run_notebook}[args.arm]
    result = run(spec, args.seed, out)
    Path(args.result).write_text(json.dumps(result, indent=2))


# ---------------------------------------------------------------------------------------------
# Profile: where the FLOPs and the time go, per batch shape
# ---------------------------------------------------------------------------------------------
def profile(spec: dict, steps: int) -> dict:
    """`steps` forward+backward+optimizer steps of the same model and adapter on emotune's batches (length-
    grouped, padded to their longest row) and on the notebook's (random rows padded to max_length),
    under torch.profiler with FLOP counting."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from emotune import train as tr
    from emotune.adapters import apply_adapter, load_base
    from emotune.plan import RunPlan, model_source
    from emotune.rows import load_rows, sample_rows

    plan, cfg = RunPlan.from_json(spec["plan"]), spec["plan"]["train"]
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(plan.seed)
    name, registry = model_source(plan.model)
    loaded = load_base(name, spec["adapter"], plan.dataset.labels, registry=registry, hp=plan.hparams)
    model = apply_adapter(loaded, spec["adapter"], plan.hparams)
    model.train()
    # Trainer's default optimizer (fused AdamW), over the trainable parameters
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"],
                                  weight_decay=cfg["weight_decay"], fused=True)
    train = sample_rows(load_rows(Path(spec["data"]), "train"), cfg["max_train_examples"], plan.seed)
    data = tr.ClassificationBatches(train, loaded.tokenizer, False)
    bs = cfg["batch_size"]
    grouped = grouped_batches(data.lengths, bs, plan.seed)
    grouped = grouped[::max(1, len(grouped) // steps)][:steps]  # spread over the epoch: the first is the longest
    rng = np.random.default_rng(plan.seed)
    random_batches = [rng.choice(len(data), size=min(bs, len(data)), replace=False) for _ in range(steps)]
    pad_id = loaded.tokenizer.pad_token_id

    def padded(idx):  # what padding="max_length" produces
        ids = torch.full((len(idx), spec["max_length"]), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            seq = data.rows[i]["input_ids"][:spec["max_length"]]
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([data.rows[i]["labels"] for i in idx])}

    shapes = {"emotune": [data.collate(b) for b in grouped], "notebook": [padded(b) for b in random_batches]}
    report = {}
    for arm, batches in shapes.items():
        step(model, optimizer, batches[0])  # warm-up, outside the profile
        with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            tick = time.perf_counter()
            for batch in batches:
                step(model, optimizer, batch)
            seconds = time.perf_counter() - tick
        events = prof.key_averages()
        flops = sum(e.flops for e in events if e.flops)
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        total = sum(b["attention_mask"].numel() for b in batches)
        rows = sum(len(b["labels"]) for b in batches)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        self_total = sum(e.self_cpu_time_total for e in events) or 1
        report[arm] = {
            "steps": len(batches), "rows": rows, "seconds": round(seconds, 2),
            "examples_per_s": round(rows / seconds, 2), "real_tokens": real, "tokens_incl_pad": total,
            "pad_fraction": round(1 - real / total, 4), "gflops": round(flops / 1e9, 1),
            "gflops_per_real_token": round(flops / 1e9 / real, 4),
            "achieved_gflops_per_s": round(flops / 1e9 / seconds, 3),  # 3 places: the tiny CI model
            "top_ops_self_cpu": [{"op": e.key, "share": round(e.self_cpu_time_total / self_total, 3),
                                  "count": e.count} for e in top],
        }
        print(f"profile {arm:8s}: {report[arm]['examples_per_s']} ex/s, pad fraction "
              f"{report[arm]['pad_fraction']:.1%}, {report[arm]['gflops_per_real_token']} GFLOP per real token, "
              f"{report[arm]['achieved_gflops_per_s']} GFLOP/s; top ops: "
              + ", ".join(f"{o['op']} {o['share']:.0%}" for o in report[arm]["top_ops_self_cpu"][:4]), flush=True)
    report["flops_ratio_notebook_over_emotune_per_real_token"] = common.ratio(
        report["notebook"]["gflops_per_real_token"], report["emotune"]["gflops_per_real_token"])
    # The machine's matmul peak at this model's shapes: rows = the tokens of an average emotune batch
    config = loaded.model.config
    rows = max(1, round(report["emotune"]["tokens_incl_pad"] / report["emotune"]["steps"]))
    report["matmul_peak"] = matmul_peak(rows, config.hidden_size, config.intermediate_size)
    for arm in ("emotune", "notebook"):
        for dtype in ("float32", "bfloat16"):
            report[arm][f"fraction_of_{dtype}_matmul_peak"] = common.ratio(
                report[arm]["achieved_gflops_per_s"], report["matmul_peak"][dtype]["gflops_per_s"], 4)
    print(f"matmul peak at {rows} x {config.hidden_size} x {config.intermediate_size}: float32 "
          f"{report['matmul_peak']['float32']['gflops_per_s']} GFLOP/s, bfloat16 "
          f"{report['matmul_peak']['bfloat16']['gflops_per_s']} GFLOP/s; the emotune training step achieves "
          f"{report['emotune']['fraction_of_float32_matmul_peak']:.1%} of the float32 peak", flush=True)
    return report


def matmul_peak(rows: int, hidden: int, intermediate: int, seconds: float = 1.0) -> dict:
    """Best GFLOP/s of the model's three matmul shapes (attention projections rows x hidden x hidden,
    feed-forward up and down), each timed for about `seconds`, in float32 and bfloat16."""
    import torch

    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = {}
        for k, n in ((hidden, hidden), (hidden, intermediate), (intermediate, hidden)):
            a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            torch.mm(a, b)  # warm-up
            count, tick = 0, time.perf_counter()
            while time.perf_counter() - tick < seconds / 3:
                torch.mm(a, b)
                count += 1
            best[f"{rows}x{k}x{n}"] = round(2 * rows * k * n * count / (time.perf_counter() - tick) / 1e9, 1)
        out[str(dtype).split(".")[1]] = {"gflops_per_s": max(best.values()), "each_shape": best}
    return out


def step(model, optimizer, batch) -> None:
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    loss = F.cross_entropy(model(**inputs).logits.float(), batch["labels"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
ARMS = ("emotune", "peer", "notebook")
CLASSIFIER_ADAPTERS = ("full", "head", "lora", "dora", "ia3", "qlora")


def summarise(runs: list[dict]) -> dict:
    arms = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:  # --arms left it out
            continue
        arms[arm] = {
            "runs": len(mine),
            **{key: round(float(np.mean([r[key] for r in mine])), 4 if "accuracy" in key or "fraction" in key else 1)
               for key in ("examples_per_s", "tokens_per_s", "padded_tokens_per_s", "train_loop_s", "train_call_s",
                           "test_accuracy", "test_examples_per_s", "pad_fraction")},
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "examples_per_s_each_run": [r["examples_per_s"] for r in mine],
            "test_accuracy_each_run": [round(r["test_accuracy"], 4) for r in mine],
        }
    out = {"arms": arms, "ratios": None, "ratios_vs_peer": None, "target": None}
    if "emotune" not in arms:
        return out
    e = arms["emotune"]

    def versus(other: str) -> dict:
        n = arms[other]
        pairs = [(a, b) for a in runs for b in runs if a["arm"] == "emotune" and b["arm"] == other
                 and a["seed"] == b["seed"]]
        return {
            "examples_per_s": common.ratio(e["examples_per_s"], n["examples_per_s"]),
            "examples_per_s_each_pair": [common.ratio(a["examples_per_s"], b["examples_per_s"]) for a, b in pairs],
            "tokens_per_s": common.ratio(e["tokens_per_s"], n["tokens_per_s"]),
            f"train_call_s_{other}_over_emotune": common.ratio(n["train_call_s"], e["train_call_s"]),
            "peak_rss": common.ratio(e["peak_rss_mb"], n["peak_rss_mb"]),
            "test_examples_per_s": common.ratio(e["test_examples_per_s"], n["test_examples_per_s"]),
            "test_accuracy_difference_points": round(100 * (e["test_accuracy"] - n["test_accuracy"]), 2),
        }

    if "notebook" in arms:
        out["ratios"] = versus("notebook")
    if "peer" in arms:
        out["ratios_vs_peer"] = peer = versus("peer")
        # Issue 16: emotune's train stage at least as fast as the fair peer at equal accuracy
        out["target"] = {"peer_examples_per_s_ratio_at_least": 1.0, "accuracy_within_points": 0.5,
                         "peer_speed_met": peer["examples_per_s"] is not None and peer["examples_per_s"] >= 1.0,
                         "accuracy_met": abs(peer["test_accuracy_difference_points"]) <= 0.5}
    return out


def default_result_name(adapter: str, arm_names: list[str]) -> str:
    """metrics/bench/<name>.json: the fair-peer pair per adapter is `train_vs_peer_<adapter>` (what
    bench/report.py reads for its per-adapter table); otherwise `train_vs_notebook[_<adapter>]`."""
    if arm_names == ["emotune", "peer"]:
        return f"train_vs_peer_{adapter}"
    return NAME if adapter == DEFAULT_ADAPTER else f"{NAME}_{adapter}"


def main(argv: list[str] | None = None) -> None:
    from emotune.plan import RunPlan

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="seeded subset of train rows (default 2000; tiny: 64 of 96)")
    parser.add_argument("--test-rows", type=int, default=None, help="test rows (default all 2000)")
    parser.add_argument("--seeds", default=None, help="comma-separated; one emotune+notebook pair per seed (default 42,43)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--adapter", default=DEFAULT_ADAPTER, choices=CLASSIFIER_ADAPTERS,
                        help="what all arms train (default lora; another's JSON: train_vs_notebook_<adapter>.json, "
                             "or train_vs_peer_<adapter>.json with --arms emotune,peer)")
    parser.add_argument("--lr", type=float, default=None, help="default: the plan's (the adapter's default LR)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both arms (default: torch's)")
    parser.add_argument("--profile-steps", type=int, default=None, help="steps per batch shape under the profiler (0: none)")
    parser.add_argument("--tiny", action="store_true", help="tiny random BERT on toy data (CI)")
    parser.add_argument("--arms", default="emotune,peer,notebook", help="which arms to run (default all three)")
    parser.add_argument("--out", help="result JSON (default metrics/bench/train_vs_notebook.json; tiny: a temp file)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    # one arm in a subprocess (internal)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        return arm_main(args)

    args.rows = args.rows if args.rows is not None else (64 if args.tiny else 2000)
    args.test_rows = args.test_rows if args.test_rows is not None else None
    arm_names = [a for a in ARMS if a in args.arms.split(",")]
    if not arm_names:
        raise SystemExit(f"--arms {args.arms!r}: name some of {', '.join(ARMS)}")
    seeds = [int(s) for s in (args.seeds or ("42" if args.tiny else "42,43")).split(",")]
    profile_steps = args.profile_steps if args.profile_steps is not None else (2 if args.tiny else 6)
    out_path = common.result_path(default_result_name(args.adapter, arm_names), args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-train-"))
    try:
        spec = prepare(args, work)
        spec_file = work / "spec.json"
        spec_file.write_text(json.dumps(spec))
        plan = RunPlan.from_json(spec["plan"])
        runs = []
        for i, seed in enumerate(seeds):
            # each in a fresh process; the arms take turns going first (emotune, peer, ... for the first
            # seed, ..., peer, emotune for the second), so a machine that speeds up or slows down over the
            # run does not favour one arm (measured with emotune first in both pairs: the first pair within 2%,
            # the second pair's peer 1.12x (LoRA) and 1.33x (QLoRA) faster)
            for arm in (arm_names if i % 2 == 0 else arm_names[::-1]):
                result_file = work / f"{arm}-{seed}.json"
                print(f"--- {arm}, seed {seed}", flush=True)
                done = subprocess.run([sys.executable, "-m", "bench.train_vs_notebook", "--arm", arm, "--spec",
                                       str(spec_file), "--seed", str(seed), "--result", str(result_file)],
                                      cwd=ROOT, env=common.bench_env(args.threads), capture_output=True, text=True)
                if done.returncode != 0:
                    sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
                    raise SystemExit(f"the {arm} arm (seed {seed}) failed")
                run = json.loads(result_file.read_text())
                runs.append(run)
                print(f"{arm:8s} seed {seed}: {run['examples_per_s']} ex/s, {run['tokens_per_s']} real tokens/s, "
                      f"pad {run['pad_fraction']:.1%}, peak RSS {run['peak_rss_mb']} MB, test accuracy "
                      f"{run['test_accuracy']:.4f}", flush=True)
        result.update(summarise(runs))
        result["runs"] = runs
        if profile_steps:
            print("--- profile", flush=True)
            result["profile"] = profile(spec, profile_steps)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["setup"] = {
        "dataset": plan.dataset.name, "model": plan.model["name"], "adapter": args.adapter,
        "train_rows": runs[0]["train_rows"], "train_subset": "seeded sample of the audited train split "
        "(emotune.rows.sample_rows with the pair's seed; identical rows in both arms of a pair)"
        if args.rows else "the whole audited train split",
        "test_rows": runs[0]["test_rows"], "seeds": seeds, "epochs": plan.train.epochs,
        "lr": plan.train.lr, "head_lr": plan.train.head_lr, "batch_size": plan.train.batch_size,
        "warmup_ratio": plan.train.warmup_ratio, "weight_decay": plan.train.weight_decay,
        "max_grad_norm": plan.train.max_grad_norm, "adapter_hparams": plan.to_json()["adapter"]["hparams"],
        "lora_targets": spec["lora_targets"], "modules_to_save": spec["modules_to_save"],
        "notebook_max_length": NOTEBOOK_MAX_LENGTH,
        "threads": runs[0]["threads"],
        "examples_per_s": "training rows / training-loop seconds (emotune: the seconds inside its optimizer "
                          "steps, collation included, validation excluded; peer and notebook: Trainer's "
                          "train_runtime, which has no validation in them)",
        "tokens_per_s": "real (non-pad) tokens / training-loop seconds",
        "train_call_s": "emotune: stages.train.train() (load, loop, validation passes, checkpoints, save); "
                        "peer and notebook: tokenize + load + Trainer.train()",
    }
    a = result["arms"]
    for arm, m in a.items():
        print(f"{arm}: {m['examples_per_s']} ex/s, pad {m['pad_fraction']:.1%}, test accuracy {m['test_accuracy']:.4f}")
    for key, other in (("ratios_vs_peer", "peer"), ("ratios", "notebook")):
        r = result[key]
        if r is not None:
            print(f"emotune / {other}: examples/s {r['examples_per_s']}x (each pair {r['examples_per_s_each_pair']}), "
                  f"tokens/s {r['tokens_per_s']}x, peak RSS {r['peak_rss']}x, test accuracy "
                  f"{r['test_accuracy_difference_points']:+.2f} points")
    if result["target"]:
        t = result["target"]
        print(f"target: at least 1.0x the peer ({'met' if t['peer_speed_met'] else 'MISSED'}) within 0.5 points "
              f"({'met' if t['accuracy_met'] else 'MISSED'})")
    common.write_result(out_path, result)


if __name__ == "__main__":
    main()
