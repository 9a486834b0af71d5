"""train: one dataset x model x adapter run, trained by transformers' Trainer.

    python -m stages.train <dataset> <model> <adapter>

Reads data/plans/<dataset>/<model>/<adapter>.json (every setting this run uses, written by the plan
stage) and data/tokenized/<dataset>/<model>/. Writes
  models/<dataset>/<model>/<adapter>/              the trained adapter or weights (emotune/adapters.py
                                                   save_trained) and run.json, the run card
  metrics/train/<dataset>/<model>/<adapter>.json   the small summary that git tracks
  metrics/train/<dataset>/<model>/<adapter>/       DVCLive: train loss per log step, validation per epoch
  models/checkpoints/<dataset>/<model>/<adapter>/  Trainer's checkpoint-<step>/ folders while the run is
                                                   in progress (resumable; emptied when it ends)

The loop is `transformers.Trainer` with `TrainingArguments` built from the plan (`training_arguments`,
the table of docs/training.md maps every `train:` param to its TrainingArguments name): length-grouped
batches with dynamic padding (`train_sampling_strategy="group_by_length"`), the `optim` and
`lr_scheduler_type` of the plan, one validation pass per epoch on the dataset's official metric,
`EarlyStoppingCallback`, `load_best_model_at_end`, checkpoints at each epoch end and every
`train.checkpoint_every` optimizer steps, resumed with `resume_from_checkpoint`. What emotune adds is
small and lives in `EmotuneTrainer`: the recipe's loss (class weights / BCE pos_weight, the generative
answer-token loss), the validation pass through the recipe (so the generative recipe is scored on its
generated answers), and length groups cut from the global batch (so N processes see the batches one
does).

The generative recipe (adapters gen_lora / gen_qlora, decoders only) runs through the same Trainer with
the batches, loss and predictions of emotune/generative.py.

Data parallel: with `train.processes: N` the stage runs itself under torchrun as N processes; Trainer
(through accelerate) runs DistributedDataParallel, each process taking batch_size / N rows of each
global batch. `torchrun` or `accelerate launch` (with an FSDP config too) can also start it. Only rank 0
writes outputs (Trainer writes each process's RNG state into the checkpoint).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Idle OpenMP threads sleep instead of spinning. On a shared CPU spinning threads fight the other
# processes: a 2-thread step measured 70x slower (1.8 s vs 0.026 s) while another job was busy. Must be
# set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from emotune.adapter_table import adapter_entry
from emotune.atomic import atomic_dir, read_json, write_json  # noqa: E402
from emotune.devices import cpu_has_fast_bf16, peak_memory_mb, pick_device  # noqa: E402
from emotune.errors import EmotuneError
from emotune.metrics import collapse_warning, constant_level, majority_rate, scores  # noqa: E402
from emotune.paths import (
    RunPaths,  # noqa: E402
)
from emotune.plan import RunPlan
from emotune.rows import eval_batches, load_rows, sample_rows  # noqa: E402

FINGERPRINT_FILE = "emotune_fingerprint.txt"  # in the checkpoints folder: which plan + data it belongs to
RESUMES_FILE = "emotune_resumes.json"  # where earlier attempts of this run were resumed


# ---------------------------------------------------------------------------------------------
# Data: rows, the seeded training sample
# ---------------------------------------------------------------------------------------------
class ClassificationBatches:
    """Rows of a tokenized split -> padded tensors. DataCollatorWithPadding pads each batch to its own
    longest row (never to max_length). As a Trainer dataset, item i is the row index i and `collate`
    is the data collator, so Trainer's sampler picks rows and this class builds their batch."""

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

    def __getitem__(self, i: int) -> int:
        return int(i)

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

    def __init__(self, plan: RunPlan, data_dir: Path, device: str):
        self.plan, self.device = plan, device
        self.labels = plan.dataset.labels
        self.multi_label = plan.multi_label
        self.data_dir = data_dir
        self.weights = None

    def build(self):
        """The model to train (base + adapter) and the LoadedModel that save_trained needs."""
        from emotune.adapters import apply_adapter, load_base
        from emotune.plan import model_source

        name, registry = model_source(self.plan.model)
        loaded = load_base(name, self.plan.adapter, self.labels, self.plan.dataset.task, self.plan.hparams,
                           registry=registry, device=self.device if self.device != "cpu" else None)
        model = apply_adapter(loaded, self.plan.adapter, self.plan.hparams)
        return loaded, model.to(self.device) if not loaded.quantized else model

    def data(self, tokenizer, max_train: int | None, seed: int):
        self.train = ClassificationBatches(sample_rows(load_rows(self.data_dir, "train"), max_train, seed),
                                           tokenizer, self.multi_label)
        self.val = ClassificationBatches(load_rows(self.data_dir, "validation"), tokenizer, self.multi_label)
        if self.plan.train.class_weights:
            self.weights = class_weights(self.train.targets, self.multi_label, len(self.labels)).to(self.device)

    def collate_train(self, idx) -> dict:
        return self.train.collate(idx)

    def loss_of(self, logits, labels):
        """The loss hook (EmotuneTrainer.compute_loss calls it through `loss`): cross-entropy or
        BCE-with-logits, with the class weights / pos_weight of `train.class_weights`."""
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
        from emotune.adapters import save_trained

        save_trained(model, folder, loaded, self.plan.adapter, self.plan.hparams, extra=extra)


def make_recipe(plan: RunPlan, data_dir: Path, device: str):
    if plan.generative:
        from emotune.generative import GenerativeRecipe

        return GenerativeRecipe(plan, data_dir, device)
    return ClassifierRecipe(plan, data_dir, device)


# ---------------------------------------------------------------------------------------------
# TrainingArguments from the plan
# ---------------------------------------------------------------------------------------------
PAGED_OPTIMIZERS = ("paged_adamw_8bit", "paged_adamw_32bit", "paged_adamw", "paged_lion_8bit",
                    "paged_lion_32bit", "paged_lion", "paged_ademamix_8bit", "paged_ademamix_32bit")


def resolve_optim(optim: str, adapter: str, device: str, log=print) -> str:
    """`train.optim` -> a TrainingArguments `optim`. `auto`: fused AdamW (Trainer's default on torch
    >= 2.8: 0.030 s per MiniLM full fine-tuning step on 2 CPU cores against 0.186 s for the unfused
    torch.optim.AdamW), and for QLoRA on a GPU bitsandbytes' paged 8-bit AdamW, whose state pages to CPU
    memory when the GPU runs short. Paged optimizers are for GPUs: bitsandbytes 0.50 runs them on the
    CPU, but there is nothing to page there and the step is far slower (PagedAdamW8bit 7.9 s vs 0.36-0.77 s
    for fused AdamW over 22M weights, 2 threads, measured 2026-12-01), so on the CPU a run asked for one
    uses fused AdamW and says so."""
    on_gpu = device.startswith("cuda")
    if optim == "auto":
        return "paged_adamw_8bit" if on_gpu and adapter_entry(adapter).quantized else "adamw_torch_fused"
    if optim in PAGED_OPTIMIZERS and not on_gpu:
        log(f"train.optim: {optim} pages optimizer state out of GPU memory; on the CPU there is nothing to "
            f"page and bitsandbytes' CPU step measured 10x slower than fused AdamW, so this run uses "
            f"adamw_torch_fused (docs/training.md)")
        return "adamw_torch_fused"
    return optim


def resolve_bf16(bf16, device: str, log=print) -> bool:
    """`train.bf16`: true / false, or `auto`: bf16 mixed precision on a GPU that has it, float32 on the
    CPU. On CPUs with AVX512-BF16 or AMX bf16 is faster at equal accuracy (bench/cpu_bf16.py, AMD EPYC Zen 4:
    MiniLM full fine-tuning 1.5x, LoRA 1.1x the examples/s, test accuracy within 0.001), yet auto stays
    off there: the same params then give the same numbers on every CPU (this project's machines differ
    between sessions: Zen 3 without AVX512-BF16, Zen 4 and Intel Xeon with it), which a GPU run cannot
    promise anyway. The run says when `bf16: true` would pay."""
    import torch

    if bf16 != "auto":
        return bool(bf16)
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    if cpu_has_fast_bf16():
        log("train.bf16: auto keeps float32 on the CPU, so runs reproduce across CPUs; this CPU has "
            "AVX512-BF16 / AMX, where bf16: true measured 1.1-1.5x faster at equal accuracy (docs/training.md "
            "\"bf16 on the CPU\")")
    return False


def training_arguments(plan: RunPlan, paths: RunPaths, device: str, log=print):
    """The run's TrainingArguments. Built (and so validated by transformers) before any model loads: a bad
    optim or scheduler name fails in a second, naming the params key."""
    from transformers import TrainingArguments
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    cfg = plan.train
    key = plan.train_key
    for name, allowed in (("optim", [o.value for o in OptimizerNames] + ["auto"]),
                          ("lr_scheduler_type", [s.value for s in SchedulerType])):
        if getattr(cfg, name) not in allowed:
            from emotune.errors import did_you_mean

            raise EmotuneError(f"{key}.{name}: {getattr(cfg, name)!r} is not a transformers {name}"
                               f"{did_you_mean(getattr(cfg, name), allowed)}; choose one of {', '.join(allowed)}")
    for name in cfg.report_to:
        if name == "wandb":
            import importlib.util

            if importlib.util.find_spec("wandb") is None:
                raise EmotuneError(f"{key}.report_to: wandb is not installed; `pip install -r "
                                   f"requirements-wandb.txt` (and `wandb login`, or WANDB_MODE=offline)")
    world = cfg.processes
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_ratio
    return TrainingArguments(
        output_dir=str(paths.checkpoints),
        seed=plan.seed,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size // world,  # batch_size is the global batch
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=warmup,  # an int: steps; a float in [0, 1): a share of all steps (warmup_ratio)
        optim=resolve_optim(cfg.optim, plan.adapter, device, log),
        bf16=resolve_bf16(cfg.bf16, device, log),
        torch_compile=cfg.torch_compile,
        use_cpu=not device.startswith("cuda"),
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch",
        save_strategy="epoch",  # and every checkpoint_every steps (CheckpointEvery)
        logging_strategy="steps",
        logging_steps=cfg.checkpoint_every,  # the train loss is logged where checkpoints are taken
        load_best_model_at_end=True,
        metric_for_best_model=plan.dataset.official_metric,
        greater_is_better=True,
        save_total_limit=2,  # the newest checkpoint and the best one (Trainer never deletes the best)
        report_to=[r for r in cfg.report_to if r != "dvclive"],  # DVCLive: LiveCurves, always
        run_name=plan.name,
        remove_unused_columns=False,  # dataset items are row indices; the recipe's collator builds batches
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        ddp_timeout=3600,  # rank 0 alone writes the model while the others wait: far more than 30 min
        dataloader_num_workers=0,
        # Every trainable parameter gets a gradient in every step (the head and the adapter are on the
        # forward path), so DDP need not search the graph for unused ones each step.
        ddp_find_unused_parameters=False,
    )


# ---------------------------------------------------------------------------------------------
# Trainer: what emotune adds to it
# ---------------------------------------------------------------------------------------------
def length_groups_in_random_order(indices: list[int], group: int) -> list[int]:
    """Trainer's length-grouped order, with its groups of `group` rows (one optimizer step's global
    batch) shuffled, as the earlier hand-written loop shuffled its batches. Trainer sorts each mega-batch
    by length and keeps the batches in that order, so an epoch sweeps from long rows to short ones 50
    batches at a time. Thin evidence that this matters: MiniLM LoRA, 600 dair-ai/emotion rows, 38 steps,
    lr 5e-3, seed 42: validation accuracy 0.303 (the majority class) in Trainer's order, 0.553 with all
    batches shuffled; but that run is on a knife edge (this function's order: 0.303 with 3 warmup steps,
    0.567 with 2; measured 2026-12-01). The first group (it holds the longest row: out-of-memory errors show at once) stays first
    and a short last group stays last (so N processes still split every step the way one process does);
    the torch generator is the one Trainer seeds and restores on resume."""
    import torch

    groups = [indices[i:i + group] for i in range(0, len(indices), group)]
    full = [g for g in groups[1:] if len(g) == group]
    short = [g for g in groups[1:] if len(g) < group]
    order = torch.randperm(len(full)).tolist()
    return [i for g in [groups[0], *[full[k] for k in order], *short] for i in g]


def make_trainer(recipe, model, args, callbacks, head_modules=(), head_lr: float | None = None):
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from transformers.trainer_utils import EvalLoopOutput

    class ShuffledLengthGroups(LengthGroupedSampler):
        def __iter__(self):
            return iter(length_groups_in_random_order(list(super().__iter__()), self.batch_size))

    class EmotuneTrainer(Trainer):
        loss_is_scaled_for_ga = False  # the recipe's loss is a per-batch mean; Trainer divides by grad_accum

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # The hook for loss changes (class weights, pos_weight, the generative answer-token loss).
            loss = recipe.loss(model, inputs)
            return (loss, None) if return_outputs else loss

        def create_optimizer(self, model=None):
            # Trainer's optimizer class and kwargs (train.optim: fused AdamW, paged 8-bit, ...) over
            # emotune's parameter groups: the fresh head at train.head_lr, the adapter / body at
            # train.lr, no weight decay on biases, norms, IA3 vectors and DoRA magnitudes
            # (emotune/adapters.py param_groups; bench/multilabel.py measured why the head needs its own LR).
            from emotune.adapters import param_groups

            if self.optimizer is None:
                optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, self.model)
                groups = param_groups(self.model, head_modules, self.args.learning_rate, head_lr,
                                      self.args.weight_decay)
                self.optimizer = optimizer_cls(groups, **kwargs)
            return self.optimizer

        def _get_train_sampler(self, train_dataset=None):
            # Trainer cuts length groups from the per-process batch; cut them from the global batch
            # instead, so N processes split exactly the batches one process trains on (accelerate hands
            # process r the r-th per-process slice of each) and a 2-process run matches a 1-process one.
            size = self.args.per_device_train_batch_size * self.args.world_size * self.args.gradient_accumulation_steps
            return ShuffledLengthGroups(size, lengths=recipe.train.lengths.tolist())

        def _get_eval_sampler(self, eval_dataset):
            import torch

            return torch.utils.data.SequentialSampler(eval_dataset)  # unused: evaluation_loop predicts itself

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            # The recipe predicts the whole validation split in every process (so all take the same
            # early-stopping decision): logits for a classifier, generated answers for the generative
            # recipe, scored on the dataset's official metric by emotune/metrics.py.
            result = recipe.predict(self.model, recipe.val, self.args.per_device_eval_batch_size, self.autocast)
            val = scores(recipe.val.targets, result["pred"], recipe.multi_label, len(recipe.labels), result["invalid"])
            metrics = {"loss": result["loss"], **val}
            if recipe.generative:
                metrics["invalid_rate"] = float(result["invalid"].mean())
            self.predictions[self.state.global_step] = {k: v for k, v in result.items() if k != "logits"}
            return EvalLoopOutput(predictions=None, label_ids=None, num_samples=len(recipe.val),
                                  metrics={f"{metric_key_prefix}_{k}": v for k, v in metrics.items()})

        def autocast(self):
            import contextlib

            import torch

            if not self.args.bf16:
                return contextlib.nullcontext()
            return torch.autocast(self.args.device.type, dtype=torch.bfloat16)

    head_lr = head_lr or args.learning_rate
    trainer = EmotuneTrainer(model=model, args=args, train_dataset=recipe.train, eval_dataset=recipe.val,
                             data_collator=recipe.collate_train, callbacks=callbacks)
    trainer.predictions = {}  # global step of each validation pass -> its predictions
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # train() logs one line per epoch instead of raw dicts
    return trainer


def trainer_callbacks(plan: RunPlan, paths: RunPaths, steps_per_epoch: int, rows: int, log, rank: int,
                      stop_after_steps: int | None):
    from transformers import EarlyStoppingCallback, TrainerCallback
    from transformers.integrations import DVCLiveCallback

    cfg = plan.train
    metric = plan.dataset.official_metric

    class CheckpointEvery(TrainerCallback):
        """A checkpoint every `train.checkpoint_every` optimizer steps, beside the one Trainer takes at each
        epoch end; and a train-loss log at each epoch end beside the one every checkpoint_every steps. Logs
        and checkpoints fall on the same steps, so a resumed run's loss averages cover exactly the steps of
        an uninterrupted run's."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % cfg.checkpoint_every == 0:
                control.should_save = True
            if stop_after_steps is not None and state.global_step - self.first >= stop_after_steps:
                raise StopRun  # tests: stop the way a kill would, without outputs

        def on_train_begin(self, args, state, control, **kwargs):
            self.first = state.global_step

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_log = True

    class Throughput(TrainerCallback):
        """Seconds inside optimizer steps (no validation, no saving), rows and real tokens in them."""

        def __init__(self):
            self.seconds, self.examples, self.tokens = 0.0, 0, 0

        def on_step_begin(self, args, state, control, **kwargs):
            self.tick, self.tokens_before = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self.tick
            self.tokens += state.num_input_tokens_seen - self.tokens_before
            in_epoch = (state.global_step - 1) % steps_per_epoch + 1
            full = cfg.batch_size * cfg.grad_accum
            self.examples += full if in_epoch < steps_per_epoch else rows - (steps_per_epoch - 1) * full

    class EpochLog(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            entry = history_of(state.log_history, steps_per_epoch)[-1]
            log(f"epoch {entry['epoch']}/{cfg.epochs}: train loss {entry['train_loss']:.4f}, val loss "
                f"{entry['val_loss']:.4f}, val {metric} {entry[f'val_{metric}']:.4f}"
                + (f", invalid {entry['val_invalid_rate']:.1%}" if "val_invalid_rate" in entry else ""))

    class LiveCurves(DVCLiveCallback):
        """transformers' DVCLive callback, into this run's folder, with the names and steps of dvc.yaml's
        plots: train/loss and train/learning_rate at each log step, val/<metric> at each epoch, all at
        x = the optimizer step. On a resumed run it first replays the log history the checkpoint holds, so
        the curves have no gap and no duplicate. Inside a DVC stage dvc.yaml declares the metrics and
        plots: DVCLive writes no dvc.yaml of its own and saves no experiment."""

        def setup(self, args, state, model):
            from dvclive import Live

            self._initialized = True
            if state.is_world_process_zero:
                shutil.rmtree(paths.live, ignore_errors=True)
                self.live = Live(str(paths.live), dvcyaml=False, save_dvc_exp=False, report=None)
                for logs in state.log_history:
                    self.write(state, logs)

        def on_log(self, args, state, control, model=None, logs=None, **kwargs):
            if not self._initialized:
                self.setup(args, state, model)
            if state.is_world_process_zero:
                self.write(state, {**logs, "step": state.global_step})

        def write(self, state, logs: dict) -> None:
            names = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm"}
            self.live.step = logs["step"]
            for key, value in logs.items():
                name = names.get(key) or (f"val/{key[5:]}" if key.startswith("eval_") else None)
                if name and not key.endswith(("_runtime", "_per_second")):
                    self.live.log_metric(name, value)
            self.live.make_summary()

    throughput = Throughput()
    callbacks = [CheckpointEvery(), throughput, EarlyStoppingCallback(cfg.early_stopping_patience)]
    if rank == 0:
        callbacks += [EpochLog(), LiveCurves()]
    return callbacks, throughput


class StopRun(Exception):
    pass


def history_of(log_history: list[dict], steps_per_epoch: int) -> list[dict]:
    """Trainer's log history -> one entry per epoch: the mean train loss over its optimizer steps (the
    logs every checkpoint_every steps, weighted by their steps) and the validation scores."""
    out, last_step, losses = [], 0, []
    for logs in log_history:
        if "loss" in logs:
            losses.append((logs["loss"], logs["step"] - last_step))
            last_step = logs["step"]
        elif "eval_loss" in logs:
            steps = sum(n for _, n in losses)
            entry = {"epoch": round(logs["step"] / steps_per_epoch),
                     "train_loss": sum(v * n for v, n in losses) / max(steps, 1), "val_loss": logs["eval_loss"]}
            entry.update({f"val_{k[5:]}": v for k, v in logs.items()
                          if k.startswith("eval_") and k != "eval_loss" and not k.endswith(("_runtime", "_per_second"))})
            out.append(entry)
            losses = []
    return out


# ---------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------
def run_fingerprint(plan: RunPlan, data_dir: Path) -> str:
    """What a checkpoint must match to be resumed: the plan and the tokenized files."""
    meta = read_json(Path(data_dir) / "meta.json")
    blob = json.dumps({"plan": plan.to_json(), "files": meta.get("files")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint-<step>/ (Trainer writes trainer_state.json last, so a folder a
    kill interrupted has none and is passed over)."""
    done = [p for p in Path(folder).glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def find_resume(paths: RunPaths, fingerprint: str, rank: int, log) -> Path | None:
    """The checkpoint to resume from, or None; a checkpoint of other settings or data is removed."""
    import torch.distributed as dist

    folder = paths.checkpoints
    found = last_checkpoint(folder)
    mark = folder / FINGERPRINT_FILE
    if found is not None and (not mark.exists() or mark.read_text() != fingerprint):
        log(f"checkpoint {found} belongs to other settings or data; starting fresh")
        found = None
    if dist.is_initialized():
        steps = [None] * dist.get_world_size()
        dist.all_gather_object(steps, found.name if found else None)
        if len(set(steps)) > 1:
            raise EmotuneError(f"{folder}: only some processes found the checkpoint; with several machines it "
                               f"must be on a shared filesystem (or delete it to start afresh)")
        dist.barrier()  # every process has looked before rank 0 clears a stale folder
    if found is None and rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        mark.write_text(fingerprint)
    if dist.is_initialized():
        dist.barrier()
    return found


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def weights_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


ARGS_IN_CARD = ("optim", "lr_scheduler_type", "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm",
                "num_train_epochs", "bf16", "torch_compile", "report_to", "per_device_train_batch_size",
                "gradient_accumulation_steps", "world_size", "train_sampling_strategy", "metric_for_best_model")


def prepare_recipe(plan: RunPlan, paths: RunPaths, device: str, log):
    """The recipe with its model and rows. The model comes first, from a fixed seed: the head's and the
    adapter's random init are the same every time, in a fresh run and in a resumed one."""
    from transformers import set_seed

    set_seed(plan.seed)
    recipe = make_recipe(plan, paths.data, device)
    loaded, model = recipe.build()
    recipe.data(loaded.tokenizer, plan.train.max_train_examples, plan.seed)
    if recipe.multi_label and not recipe.generative and plan.train.head_bias == "prior":
        from emotune.adapters import init_head_bias_to_priors

        if init_head_bias_to_priors(model, loaded.head_modules, recipe.train.targets) is None:  # why: adapters.py
            log(f"train.head_bias: prior: the {'/'.join(loaded.head_modules)} layer has no bias; it starts at "
                f"zero (every sigmoid at 0.5)")
    return recipe, loaded, model


def resume_point(plan: RunPlan, paths: RunPaths, steps_per_epoch: int, rank: int, log) -> tuple:
    """(the checkpoint to resume from or None, the run's earlier resumes), logged and recorded."""
    resume = find_resume(paths, run_fingerprint(plan, paths.data), rank, log)
    record = paths.checkpoints / RESUMES_FILE
    resumes = read_json(record) if resume and record.exists() else []
    if resume is not None:
        step = read_json(resume / "trainer_state.json")["global_step"]
        resumes.append({"epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch})
        log(f"resumed from checkpoint: epoch {step // steps_per_epoch + 1}, step {step % steps_per_epoch} of "
            f"{steps_per_epoch} (global step {step})")
        if rank == 0:
            write_json(record, resumes)
    return resume, resumes


def summarize(plan: RunPlan, recipe, trainer, model, steps_per_epoch: int, log) -> tuple[dict, dict, list, dict]:
    """(summary, the best epoch's validation predictions, history, run-card extras) of a finished run;
    a run whose validation metric never left the constant-prediction level says so."""
    from emotune.adapters import parameter_counts

    metric = plan.dataset.official_metric
    history = history_of(trainer.state.log_history, steps_per_epoch)
    best_step = int(Path(trainer.state.best_model_checkpoint).name.split("-")[1])
    best_epoch = round(best_step / steps_per_epoch)
    best = history[best_epoch - 1]
    final = trainer.predictions.get(best_step) or recipe.predict(model, recipe.val, plan.train.eval_batch_size,
                                                                 trainer.autocast)
    summary = {
        "dataset": plan.dataset.name, "model": plan.model["name"], "adapter": plan.adapter,
        "official_metric": metric, "best_val": best[f"val_{metric}"], "best_epoch": best_epoch,
        "epochs_run": len(history),
        "val": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "majority_class_rate": majority_rate(recipe.val.targets, recipe.multi_label),
        "train_examples": len(recipe.train), "lr": plan.train.lr, "head_lr": plan.train.head_lr or plan.train.lr,
    }
    level = constant_level(recipe.val.targets, recipe.multi_label, len(recipe.labels), metric)
    warning = collapse_warning(history, metric, level)
    summary.update(constant_val=level, collapsed=warning is not None)
    if warning:
        log(warning)
    extra_card = {}
    if recipe.generative:  # answers that named no valid label: counted, and shown in the run card
        summary["invalid_answers"] = int(final["invalid"].sum())
        extra_card["invalid_examples"] = [final["texts"][i] for i in np.flatnonzero(final["invalid"])[:20]]
    summary["params"] = parameter_counts(model)
    if plan.tuned is not None:  # the leaderboard marks tuned runs with what their search cost
        summary["tuned"] = {"trials": plan.tuned.trials, "pruned": plan.tuned.pruned, "minutes": plan.tuned.minutes,
                            "best_trial_val": plan.tuned.best_val}
    return summary, final, history, extra_card


def write_outputs(plan: RunPlan, paths: RunPaths, recipe, loaded, model, args, summary: dict, history: list,
                  resumes: list, extra_card: dict, timing) -> None:
    """The trained model + run card (atomically), the metrics summary, and an emptied checkpoints folder.
    `timing()` is read once the weights are saved, so the wall time covers the whole run."""
    arguments = {k: getattr(args, k) for k in ARGS_IN_CARD}
    arguments["optim"] = str(getattr(args.optim, "value", args.optim))
    arguments["lr_scheduler_type"] = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    extra = {"plan": plan.to_json(), "summary": summary}
    with atomic_dir(paths.model) as out:
        recipe.save(model, out, loaded, extra)
        summary["adapter_bytes"] = weights_bytes(out)
        summary.update(timing())
        card = run_card(plan, paths, loaded, summary, history, resumes)
        write_json(out / "run.json", {**card, "training_arguments": arguments, **extra_card})
    write_json(paths.metrics, summary)
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)  # empty: nothing to resume


def train(plan: RunPlan, paths: RunPaths, device: str | None = None, log=print, stop_after_steps: int | None = None,
          callbacks: tuple = ()):
    """Train one run and write its outputs; returns a dict with the metrics summary and the best epoch's
    validation predictions. `stop_after_steps` (tests) stops the process-free way a kill would: after
    that many optimizer steps in this call, without writing outputs. `callbacks`: more TrainerCallbacks
    (emotune/tune.py reports each epoch's validation score to its Optuna trial). Data parallel: the
    processes other than rank 0 write nothing (but their RNG states into checkpoints) and return None."""
    import torch
    import torch.distributed as dist

    cfg = plan.train
    device = device or pick_device()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    args = training_arguments(plan, paths, device, log)
    _ = args.device  # joins the launcher's process group (gloo on the CPU, nccl between GPUs)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise EmotuneError("started by a launcher but no process group formed")

    recipe, loaded, model = prepare_recipe(plan, paths, device, log)
    steps_per_epoch = math.ceil(math.ceil(len(recipe.train) / cfg.batch_size) / cfg.grad_accum)
    resume, resumes = resume_point(plan, paths, steps_per_epoch, rank, log)
    own, throughput = trainer_callbacks(plan, paths, steps_per_epoch, len(recipe.train), log, rank, stop_after_steps)
    trainer = make_trainer(recipe, model, args, [*own, *callbacks], getattr(loaded, "head_modules", ()), cfg.head_lr)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except StopRun:
        return None
    if rank > 0:  # rank 0 alone writes the outputs; main() holds the others at a barrier meanwhile
        return None

    summary, final, history, extra_card = summarize(plan, recipe, trainer, model, steps_per_epoch, log)
    write_outputs(plan, paths, recipe, loaded, model, args, summary, history, resumes, extra_card, lambda: {
        "wall_time_s": round(time.perf_counter() - started, 1),
        "train_time_s": round(throughput.seconds, 1),
        "train_examples_per_s": round(throughput.examples / max(throughput.seconds, 1e-9), 2),
        "tokens_per_s": round(throughput.tokens / max(throughput.seconds, 1e-9), 1),
        "peak_memory_mb": peak_memory_mb(device), "device": device, "threads": torch.get_num_threads(),
    })
    log(f"train {plan.name}: best val {summary['official_metric']} {summary['best_val']:.4f} (epoch "
        f"{summary['best_epoch']}), {summary['train_examples_per_s']} examples/s, {summary['tokens_per_s']} "
        f"tokens/s -> {paths.model}")
    return {"summary": summary, "pred": final["pred"], "invalid": final["invalid"], "model": model,
            "history": history}


def run_card(plan: RunPlan, paths: RunPaths, loaded, summary: dict, history: list[dict], resumes: list[dict]) -> dict:
    import importlib.metadata as md

    meta = read_json(paths.data / "meta.json")
    return {
        "plan": plan.to_json(),
        "data": {"tokenized": meta.get("files"), "max_length": meta.get("max_length"),
                 "source_checksums": meta.get("source", {}).get("checksums"),
                 "source_rows": meta.get("source", {}).get("rows")},
        "model_provenance": loaded.provenance,
        "metrics": summary,
        "history": history,
        "resumed_from": resumes,
        "versions": {p: md.version(p) for p in ("torch", "transformers", "accelerate", "peft", "bitsandbytes")},
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------------------------------------
# Data parallel: train.processes copies of this stage, one per GPU
# ---------------------------------------------------------------------------------------------
def launch(plan: RunPlan, stage: str, argv: list[str]) -> None:
    """With train.processes > 1, replace this process (the module `stage`, run with `argv`) by torchrun
    running that many copies of it. Under a launcher already (torchrun and accelerate launch set
    WORLD_SIZE), check that it started as many."""
    processes = plan.train.processes
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        # --standalone: a rendezvous on a free port, so runs side by side (a `dvc queue`) do not collide
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={processes}", "-m", stage, *argv])
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world != processes:
        key = f"{plan.train_key}.processes"
        raise EmotuneError(f"the launcher started {world} processes but {key} is {processes}: set {key} to "
                           f"{world} in params.yaml and run `dvc repro plan`")
