"""train: one dataset x model x adapter run.

    python -m stages.train <dataset> <model> <adapter>

Reads data/plans/<dataset>/<model>/<adapter>.json (every setting this run uses, written by the plan
stage) and data/tokenized/<dataset>/<model>/. Writes
  models/<dataset>/<model>/<adapter>/              the trained adapter or weights (stages/adapters.py
                                                   save_trained) and run.json, the run card
  metrics/train/<dataset>/<model>/<adapter>.json   the small summary that git tracks
  metrics/train/<dataset>/<model>/<adapter>/       DVCLive: per-epoch train loss and validation metrics
  models/checkpoints/<dataset>/<model>/<adapter>/  resumable state while the run is in progress

The loop is ours, top to bottom, in `train()`: length-grouped batches with dynamic padding, AdamW over
the trainable parameters with linear warmup and decay, gradient accumulation and clipping, one
validation pass per epoch with the dataset's official metric, early stopping, and the best epoch's
weights kept. A checkpoint every `train.checkpoint_every` optimizer steps and at each epoch end holds
everything the loop's future depends on (trainable weights, optimizer, scheduler, RNG states, position,
best-so-far), so a killed run restarts where it stopped and finishes with exactly the metrics an
uninterrupted run gets.

The generative recipe (adapters gen_lora / gen_qlora, decoders only) runs through the same loop with
the batches, loss and predictions of stages/generative.py.

Data parallel: with `train.processes: N` the stage runs itself under torchrun as N processes, one per
GPU (gloo on the CPU); `torchrun` or `accelerate launch` can also start it. Each process takes every
N-th row of each global batch (batch_size rows, length-grouped as above), DistributedDataParallel
averages their gradients, so the run matches a single-process one up to float rounding. Only rank 0
writes outputs; the others wait for it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

# Idle OpenMP threads sleep instead of spinning. On a shared CPU spinning threads fight the other
# processes: a 2-thread step measured 70x slower (1.8 s vs 0.026 s) while another job was busy. Must be
# set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from stages.artifacts import atomic_dir, read_json, run_stage, write_json  # noqa: E402
from stages.config import ROOT, AdapterHParams, EmotuneError  # noqa: E402
from stages.metrics import majority_rate, scores  # noqa: E402
from stages.plan import GENERATIVE, plan_path  # noqa: E402

MEGA_BATCH = 50  # batches per length-sorted group: long enough to sort well, short enough to stay random
CHECKPOINT_FILE = "checkpoint.pt"


# ---------------------------------------------------------------------------------------------
# Where a run reads and writes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPaths:
    plan: Path
    data: Path  # data/tokenized/<dataset>/<model>
    model: Path
    checkpoints: Path
    live: Path
    metrics: Path


def run_paths(dataset: str, model: str, adapter: str, root: Path = ROOT) -> RunPaths:
    root = Path(root)
    return RunPaths(
        plan=plan_path(dataset, model, adapter, root / "data" / "plans"),
        data=root / "data" / "tokenized" / dataset / model,
        model=root / "models" / dataset / model / adapter,
        checkpoints=root / "models" / "checkpoints" / dataset / model / adapter,
        live=root / "metrics" / "train" / dataset / model / adapter,
        metrics=root / "metrics" / "train" / dataset / model / f"{adapter}.json",
    )



def run_args(argv: list[str], description: str) -> argparse.Namespace:
    """The `<dataset> <model> <adapter>` command line of the per-run stages (train, evaluate)."""
    parser = argparse.ArgumentParser(description=description)
    for name in ("dataset", "model", "adapter"):
        parser.add_argument(name)
    return parser.parse_args(argv)

# ---------------------------------------------------------------------------------------------
# Data: rows, the seeded training sample, length-grouped batches
# ---------------------------------------------------------------------------------------------
def load_rows(data_dir: Path, split: str, generative: bool = False) -> pd.DataFrame:
    path = Path(data_dir) / (f"gen_{split}.parquet" if generative else f"{split}.parquet")
    if not path.exists():
        raise EmotuneError(f"{path}: missing; run the tokenize stage first (`dvc repro`)"
                           + (" (only decoder models get gen_*.parquet)" if generative else ""))
    return pd.read_parquet(path)


def sample_rows(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most `cap` rows, a seeded random sample kept in the original order."""
    if cap is None or cap >= len(frame):
        return frame.reset_index(drop=True)
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=cap, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def length_grouped_batches(lengths, batch_size: int, seed: int, epoch: int,
                           mega_batch: int = MEGA_BATCH) -> list[np.ndarray]:
    """Batches of row indices whose rows have similar lengths, so dynamic padding pads little.

    Shuffle all rows, cut them into mega-batches of `mega_batch` batches, sort each mega-batch by
    length, cut it into batches, then shuffle the batch order. The generator is seeded by (seed, epoch):
    every epoch differs, and a resumed run recomputes exactly the batches it was working through."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    size = batch_size * mega_batch
    batches = []
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(lengths, batch_size: int) -> list[np.ndarray]:
    """Evaluation needs no randomness: sort by length once, cut into batches."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class ClassificationBatches:
    """Rows of a tokenized split -> padded tensors. DataCollatorWithPadding pads each batch to its own
    longest row (never to max_length)."""

    def __init__(self, frame: pd.DataFrame, tokenizer, multi_label: bool):
        from transformers import DataCollatorWithPadding

        self.collator = DataCollatorWithPadding(tokenizer)
        self.rows = [{"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": label}
                     for ids, mask, label in zip(frame["input_ids"], frame["attention_mask"],
                                                 frame["labels"].map(lambda v: v.tolist() if hasattr(v, "tolist") else v))]
        self.lengths = frame["length"].to_numpy()
        self.multi_label = multi_label
        self.targets = (np.stack(frame["labels"].map(np.asarray).to_numpy()).astype(np.float32)
                        if multi_label else frame["labels"].to_numpy().astype(np.int64))

    def __len__(self):
        return len(self.rows)

    def collate(self, idx) -> dict:
        batch = self.collator([self.rows[i] for i in idx])
        if self.multi_label:
            batch["labels"] = batch["labels"].float()
        return batch


# ---------------------------------------------------------------------------------------------
# The classification recipe: a sequence-classification model, cross-entropy or BCE-with-logits
# ---------------------------------------------------------------------------------------------
def class_weights(targets: np.ndarray, multi_label: bool, n_classes: int):
    """Inverse-frequency weights for imbalanced data. Single-label: n / (C * n_c), the scikit-learn
    "balanced" weights, as CE class weights. Multi-label: BCE pos_weight = negatives / positives of each
    label, capped at 100 so one label seen twice cannot dominate the loss."""
    import torch

    if multi_label:
        pos = targets.sum(0)
        weights = np.clip((len(targets) - pos) / np.maximum(pos, 1), 1.0, 100.0)
    else:
        counts = np.bincount(targets, minlength=n_classes)
        weights = len(targets) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


class ClassifierRecipe:
    generative = False

    def __init__(self, plan: dict, data_dir: Path, device: str):
        self.plan, self.device = plan, device
        self.labels = plan["dataset"]["labels"]
        self.multi_label = plan["dataset"]["task"] == "multi_label"
        self.data_dir = data_dir
        self.weights = None

    def build(self):
        """The model to train (base + adapter) and the LoadedModel that save_trained needs."""
        from stages.adapters import apply_adapter, load_base
        from stages.plan import model_source

        name, registry = model_source(self.plan["model"])
        adapter = self.plan["adapter"]["name"]
        hp = AdapterHParams(**self.plan["adapter"]["hparams"])
        loaded = load_base(name, adapter, self.labels, self.plan["dataset"]["task"], hp, registry=registry,
                           device=self.device if self.device != "cpu" else None)
        model = apply_adapter(loaded, adapter, hp)
        return loaded, model.to(self.device) if not loaded.quantized else model

    def data(self, tokenizer, max_train: int | None, seed: int):
        self.train = ClassificationBatches(sample_rows(load_rows(self.data_dir, "train"), max_train, seed),
                                           tokenizer, self.multi_label)
        self.val = ClassificationBatches(load_rows(self.data_dir, "validation"), tokenizer, self.multi_label)
        if self.plan["train"]["class_weights"]:
            self.weights = class_weights(self.train.targets, self.multi_label, len(self.labels)).to(self.device)

    def collate_train(self, idx) -> dict:
        return self.train.collate(idx)

    def loss_of(self, logits, labels):
        import torch.nn.functional as F

        logits = logits.float()
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=self.weights)
        return F.cross_entropy(logits, labels, weight=self.weights)

    def loss(self, model, batch: dict):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return self.loss_of(model(**inputs).logits, batch["labels"])

    def predict(self, model, split: ClassificationBatches, batch_size: int, autocast) -> dict:
        """{"pred", "invalid", "loss", "logits"} for every row of `split`, in row order."""
        import torch

        model.eval()
        logits = np.zeros((len(split), len(self.labels)), dtype=np.float32)
        loss_sum = 0.0
        with torch.inference_mode():
            for idx in eval_batches(split.lengths, batch_size):
                batch = {k: v.to(self.device) for k, v in split.collate(idx).items()}
                labels = batch.pop("labels")
                with autocast():
                    out = model(**batch).logits.float()
                loss_sum += self.loss_of(out, labels).item() * len(idx)
                logits[idx] = out.cpu().numpy()
        pred = (logits > 0).astype(np.float32) if self.multi_label else logits.argmax(1)  # sigmoid > 0.5
        return {"pred": pred, "invalid": np.zeros(len(split), dtype=bool), "loss": loss_sum / max(len(split), 1),
                "logits": logits}

    def save(self, model, folder: Path, loaded, extra: dict) -> None:
        from stages.adapters import save_trained

        save_trained(model, folder, loaded, self.plan["adapter"]["name"],
                     AdapterHParams(**self.plan["adapter"]["hparams"]), extra=extra)


def make_recipe(plan: dict, data_dir: Path, device: str):
    if plan["adapter"]["name"] in GENERATIVE:
        from stages.generative import GenerativeRecipe

        return GenerativeRecipe(plan, data_dir, device)
    return ClassifierRecipe(plan, data_dir, device)


# ---------------------------------------------------------------------------------------------
# Optimiser and checkpoints
# ---------------------------------------------------------------------------------------------
def no_decay(name: str, param) -> bool:
    # Weight decay pulls a weight towards zero. That is a sane prior for matrices (and LoRA's A/B), not
    # for biases, norm scales, IA3 scaling vectors (neutral value 1) or DoRA magnitudes.
    return param.dim() < 2 or any(k in name for k in ("bias", "norm", "ia3_l", "lora_magnitude"))


def make_optimizer(model, lr: float, weight_decay: float):
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def trainable_state(model) -> dict:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model, state: dict) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, state: dict) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT_FILE}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)  # a kill mid-write leaves the previous checkpoint intact


def load_checkpoint(folder: Path, fingerprint: str, log) -> dict | None:
    import torch

    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    # Our own file, written by save_checkpoint; it holds Python RNG tuples, hence weights_only=False.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        # Left in place: the fresh run's first checkpoint replaces it (and other processes may be reading it).
        log(f"checkpoint {path} belongs to other settings or data; starting fresh")
        return None
    return state


def run_fingerprint(plan: dict, data_dir: Path) -> str:
    """What a checkpoint must match to be resumed: the plan and the tokenized files."""
    meta = read_json(Path(data_dir) / "meta.json")
    blob = json.dumps({"plan": plan, "files": meta.get("files")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Data parallel: train.processes copies of this stage, one per GPU, sharing every global batch
# ---------------------------------------------------------------------------------------------
def launch(plan: dict, argv: list[str]) -> None:
    """With train.processes > 1, replace this process by torchrun running that many copies of it. Under a
    launcher already (torchrun and accelerate launch set WORLD_SIZE), check that it started as many."""
    processes = plan["train"]["processes"]
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        # --standalone: a rendezvous on a free port, so runs side by side (a `dvc queue`) do not collide
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={processes}", "-m", "stages.train", *argv])
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world != processes:
        key = "train.processes" if plan["matrix"] == "main" else f"{plan['matrix']}.train.processes"
        raise EmotuneError(f"the launcher started {world} processes but {key} is {processes}: set {key} to "
                           f"{world} in params.yaml and run `dvc repro plan`")


def init_processes() -> int:
    """Join the launcher's process group (nccl between GPUs, gloo on the CPU); returns this process's
    rank, 0 when it runs alone."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return 0
    if torch.cuda.is_available():
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise EmotuneError(f"{os.environ['LOCAL_WORLD_SIZE']} processes on this machine but only "
                               f"{torch.cuda.device_count()} GPU(s) visible: lower train.processes or widen "
                               f"CUDA_VISIBLE_DEVICES")
        torch.cuda.set_device(local_rank)
    # Rank 0 alone writes checkpoints and the model while the others wait at their next collective: allow
    # far more than the 10-minute NCCL default for a large model.
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(hours=1))
    return dist.get_rank()


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This process's rows of a global batch, every world-th one (a batch is sorted by length, so each
    process gets the same mix), and the weight of their mean loss: n_rows * world / batch rows, since DDP
    averages the processes' gradients. A process left without rows (a last batch smaller than the process
    count) runs one with weight 0: every process must take part in each gradient all-reduce."""
    rows = idx[rank::world]
    return (rows, len(rows) * world / len(idx)) if len(rows) else (idx[:1], 0.0)


def all_sum(values: list[float], device: str) -> list[float]:
    """Each value summed over the processes (as given in a single process)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def all_gather(obj) -> list:
    """[rank 0's obj, rank 1's, ...]; [obj] in a single process."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def improves(entry: dict, best: dict | None, metric: str) -> bool:
    """Is this epoch's validation better than the best so far? Ties on the official metric go to the
    lower validation loss: a multi-label run that predicts nothing at the 0.5 threshold scores the same
    jaccard every epoch, and the later, better-calibrated epoch is the one threshold tuning can use."""
    if best is None:
        return True
    key = f"val_{metric}"
    return entry[key] > best[key] or (entry[key] == best[key] and entry["val_loss"] < best["val_loss"])


def pick_device() -> str:
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{os.environ['LOCAL_RANK']}" if "WORLD_SIZE" in os.environ else "cuda"  # a GPU per process


def peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def train(plan: dict, paths: RunPaths, device: str | None = None, log=print, stop_after_steps: int | None = None):
    """Train one run and write its outputs; returns a dict with the metrics summary and the final
    validation predictions. `stop_after_steps` (tests) stops the process-free way a kill would: after
    that many optimizer steps in this call, without writing outputs. Data parallel: the processes other
    than rank 0 write nothing and return None."""
    import contextlib

    import torch
    import torch.distributed as dist
    from transformers import get_linear_schedule_with_warmup

    cfg = plan["train"]
    seed = plan["seed"]
    device = device or pick_device()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)  # see main()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    # bf16 autocast on a GPU (the loss is taken in float32), plain float32 on the CPU.
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.startswith("cuda") \
        else contextlib.nullcontext
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()

    # Model first, from a fixed seed: the head's and the adapter's random init are the same every time,
    # in a fresh run and in a resumed one.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    recipe = make_recipe(plan, paths.data, device)
    loaded, model = recipe.build()
    # Several processes: training steps run through DDP, which averages the gradients; evaluation,
    # checkpoints and saving use the model itself.
    forward = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=None if device == "cpu" else [device]) if world > 1 else model
    recipe.data(loaded.tokenizer, cfg["max_train_examples"], seed)
    train_data, val_data = recipe.train, recipe.val
    metric = plan["dataset"]["official_metric"]

    batches_per_epoch = math.ceil(len(train_data) / cfg["batch_size"])
    steps_per_epoch = math.ceil(batches_per_epoch / cfg["grad_accum"])
    total_steps = cfg["epochs"] * steps_per_epoch
    optimizer = make_optimizer(model, cfg["lr"], cfg["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg["warmup_ratio"] * total_steps), total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]

    # Everything below `state` is what the rest of the run depends on; it is what a checkpoint saves.
    fingerprint = run_fingerprint(plan, paths.data)
    state = {"fingerprint": fingerprint, "epoch": 0, "step_in_epoch": 0, "global_step": 0,
             "best_metric": -math.inf, "best_epoch": 0, "best_state": None, "best_predictions": None,
             "bad_epochs": 0, "history": [],
             "epoch_sums": {"loss": 0.0, "batches": 0}, "counters": {"examples": 0, "tokens": 0, "seconds": 0.0}}
    resumed = load_checkpoint(paths.checkpoints, fingerprint, log)
    if resumed is not None:
        load_trainable(model, resumed.pop("trainable"))
        optimizer.load_state_dict(resumed.pop("optimizer"))
        scheduler.load_state_dict(resumed.pop("scheduler"))
        set_rng_state(resumed.pop("rng")[rank])
        state.update(resumed)
        log(f"resumed from checkpoint: epoch {state['epoch'] + 1}, step {state['step_in_epoch']} of "
            f"{steps_per_epoch} (global step {state['global_step']})")
    if len(set(all_gather(state["global_step"]))) > 1:
        raise EmotuneError(f"{paths.checkpoints}: only some processes found the checkpoint; with several "
                           f"machines it must be on a shared filesystem (or delete it to start afresh)")
    resumes = state.setdefault("resumes", [])
    if resumed is not None:
        resumes.append({"epoch": state["epoch"], "step_in_epoch": state["step_in_epoch"]})
    live = start_live(paths.live, state["history"]) if rank == 0 else None

    def checkpoint():
        rngs = all_gather(rng_state())  # every process's: each drew its own dropout masks
        if rank == 0:
            save_checkpoint(paths.checkpoints, {**state, "trainable": trainable_state(model),
                                                "optimizer": optimizer.state_dict(),
                                                "scheduler": scheduler.state_dict(), "rng": rngs})

    steps_this_call = 0
    while state["epoch"] < cfg["epochs"] and state["bad_epochs"] < cfg["early_stopping_patience"]:
        epoch = state["epoch"]
        batches = length_grouped_batches(train_data.lengths, cfg["batch_size"], seed, epoch)
        groups = [batches[i:i + cfg["grad_accum"]] for i in range(0, len(batches), cfg["grad_accum"])]
        model.train()
        # A resumed epoch skips the optimizer steps its checkpoint already holds.
        for step in range(state["step_in_epoch"], len(groups)):
            tick = time.perf_counter()
            for idx in groups[step]:
                rows, weight = shard(idx, rank, world)  # all of idx, weight 1, in a single process
                batch = {k: v.to(device) for k, v in recipe.collate_train(rows).items()}
                tokens = int(batch["attention_mask"].sum()) if weight else 0  # real tokens, padding excluded
                with autocast():
                    loss = recipe.loss(forward, batch) * weight
                # Each step averages its micro-batches, whether accumulation ran 1 or grad_accum of them.
                (loss / len(groups[step])).backward()
                batch_loss, tokens = all_sum([loss.item() / world, tokens], device)  # the whole batch's
                state["epoch_sums"]["loss"] += batch_loss
                state["epoch_sums"]["batches"] += 1
                state["counters"]["examples"] += len(idx)
                state["counters"]["tokens"] += int(tokens)
            torch.nn.utils.clip_grad_norm_(trainable, cfg["max_grad_norm"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["counters"]["seconds"] += time.perf_counter() - tick
            state["step_in_epoch"] = step + 1
            state["global_step"] += 1
            steps_this_call += 1
            if state["global_step"] % cfg["checkpoint_every"] == 0 and step + 1 < len(groups):
                checkpoint()
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                return None

        result = recipe.predict(model, val_data, cfg["eval_batch_size"], autocast)
        result = all_gather(result)[0]  # rank 0's: every process takes the same early-stopping decision
        val = scores(val_data.targets, result["pred"], recipe.multi_label, len(recipe.labels), result["invalid"])
        entry = {"epoch": epoch + 1, "train_loss": state["epoch_sums"]["loss"] / max(state["epoch_sums"]["batches"], 1),
                 "val_loss": result["loss"], **{f"val_{k}": v for k, v in val.items()}}
        if recipe.generative:
            entry["val_invalid_rate"] = float(result["invalid"].mean())
        state["history"].append(entry)
        if rank == 0:
            log_epoch(live, entry)
        if improves(entry, state["history"][state["best_epoch"] - 1] if state["best_epoch"] else None, metric):
            state.update(best_metric=val[metric], best_epoch=epoch + 1, best_state=trainable_state(model),
                         best_predictions={k: v for k, v in result.items() if k != "logits"}, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        log(f"epoch {epoch + 1}/{cfg['epochs']}: train loss {entry['train_loss']:.4f}, val loss "
            f"{entry['val_loss']:.4f}, val {metric} {val[metric]:.4f}"
            + (f", invalid {entry['val_invalid_rate']:.1%}" if recipe.generative else ""))
        state.update(epoch=epoch + 1, step_in_epoch=0, epoch_sums={"loss": 0.0, "batches": 0})
        checkpoint()

    if rank > 0:  # rank 0 alone writes the outputs; main() holds the others at a barrier meanwhile
        return None
    # The best epoch's weights are the result (its validation predictions were kept with them).
    load_trainable(model, state["best_state"])
    final = state["best_predictions"]
    best = state["history"][state["best_epoch"] - 1]
    counters = state["counters"]
    summary = {
        "dataset": plan["dataset"]["name"], "model": plan["model"]["name"], "adapter": plan["adapter"]["name"],
        "official_metric": metric, "best_val": best[f"val_{metric}"], "best_epoch": state["best_epoch"],
        "epochs_run": len(state["history"]),
        "val": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "majority_class_rate": majority_rate(val_data.targets, recipe.multi_label),
        "train_examples": len(train_data), "lr": cfg["lr"],
    }
    if recipe.generative:  # answers that named no valid label: counted, and shown in the run card
        summary["invalid_answers"] = int(final["invalid"].sum())
        state["invalid_examples"] = [final["texts"][i] for i in np.flatnonzero(final["invalid"])[:20]]
    from stages.adapters import parameter_counts

    summary["params"] = parameter_counts(model)
    extra = {"plan": plan, "summary": summary}
    with atomic_dir(paths.model) as out:
        recipe.save(model, out, loaded, extra)
        summary["adapter_bytes"] = weights_bytes(out)
        summary.update({
            "wall_time_s": round(time.perf_counter() - started, 1),
            "train_time_s": round(counters["seconds"], 1),
            "train_examples_per_s": round(counters["examples"] / max(counters["seconds"], 1e-9), 2),
            "tokens_per_s": round(counters["tokens"] / max(counters["seconds"], 1e-9), 1),
            "peak_memory_mb": peak_memory_mb(device), "device": device,
            "threads": torch.get_num_threads(),
        })
        write_json(out / "run.json", run_card(plan, paths, loaded, summary, state))
    write_json(paths.metrics, summary)
    live.end()
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)  # empty: nothing to resume
    log(f"train {summary['dataset']}/{summary['model']}/{summary['adapter']}: best val {metric} "
        f"{summary['best_val']:.4f} (epoch {summary['best_epoch']}), {summary['train_examples_per_s']} "
        f"examples/s, {summary['tokens_per_s']} tokens/s -> {paths.model}")
    return {"summary": summary, "pred": final["pred"], "invalid": final["invalid"], "model": model,
            "history": state["history"]}


def run_card(plan: dict, paths: RunPaths, loaded, summary: dict, state: dict) -> dict:
    import importlib.metadata as md

    meta = read_json(paths.data / "meta.json")
    return {
        "plan": plan,
        "data": {"tokenized": meta.get("files"), "max_length": meta.get("max_length"),
                 "source_checksums": meta.get("source", {}).get("checksums"),
                 "source_rows": meta.get("source", {}).get("rows")},
        "model_provenance": loaded.provenance,
        "metrics": summary,
        "history": state["history"],
        "resumed_from": state.get("resumes", []),
        **({"invalid_examples": state["invalid_examples"]} if "invalid_examples" in state else {}),
        "versions": {p: md.version(p) for p in ("torch", "transformers", "peft", "bitsandbytes")},
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------------------------------------
# DVCLive
# ---------------------------------------------------------------------------------------------
def start_live(folder: Path, history: list[dict]):
    """A DVCLive logger over `folder`, replaying the epochs a checkpoint already holds (so a resumed
    run's curves have no gap and no duplicate). Inside a DVC stage dvc.yaml declares the metrics and
    plots, so DVCLive must not write a dvc.yaml of its own (dvcyaml=False) nor save an experiment."""
    from dvclive import Live

    shutil.rmtree(folder, ignore_errors=True)
    live = Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
    for entry in history:
        log_epoch(live, entry)
    return live


def log_epoch(live, entry: dict) -> None:
    live.step = entry["epoch"]
    for key, value in entry.items():
        if key != "epoch":
            live.log_metric(key.replace("_", "/", 1), value)
    live.make_summary()


def main(argv: list[str]) -> None:
    args = run_args(argv, "Train one dataset x model x adapter run")
    paths = run_paths(args.dataset, args.model, args.adapter)
    if not paths.plan.exists():
        raise EmotuneError(f"{paths.plan}: no plan for this run; are {args.dataset!r}, {args.model!r} and "
                           f"{args.adapter!r} in params.yaml datasets/models/adapters? Run `dvc repro plan`")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    plan = read_json(paths.plan)
    launch(plan, argv)  # train.processes > 1: becomes torchrun, which runs this main() in each process
    rank = init_processes()
    train(plan, paths, log=(lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()  # the other processes wait until rank 0 has written every output
        dist.destroy_process_group()


if __name__ == "__main__":
    run_stage(main)
