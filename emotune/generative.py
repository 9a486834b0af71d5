"""Generative classification: a decoder LM reads the text in a prompt and answers with the label word(s).

The adapter table's generative entries (emotune/adapter_table.py: `gen_lora`, `gen_qlora`; decoders only)
train LoRA / QLoRA on the causal LM itself (BUILDERS below), no classification head: supervised
fine-tuning where the loss covers the answer tokens only (the prompt's labels are -100). Predictions are
generated greedily and parsed back to labels with emotune/prompts.py `parse_answer`; an answer that is
not a label (or, multi-label, a list of labels, or "none") is INVALID: counted and reported, scored as
wrong, never mapped to a nearby label.

emotune/train.py runs this recipe through the same transformers.Trainer as the classifiers
(GenerativeRecipe below: batches, loss, predictions, saving), not TRL's SFTTrainer. Measured
(bench/generative_sft.py, metrics/bench/generative_sft.json): SmolLM2-135M LoRA, the same rows, prompts
(system message included), optimizer and batches, 2 alternating pairs on 2 CPU cores: SFTTrainer with
`completion_only_loss` took 1.13x emotune's time per step (pairs 0.99x and 1.29x; it runs the LM head
and a token-accuracy metric at every position, this recipe the LM head at the answer positions only,
`logits_to_keep`). It would also add TRL as a dependency and a second batch layout: these batches are
left-padded with explicit position ids, the layout generate() uses, so training, validation (scored on
generated answers inside the Trainer loop) and inference see the same positions. The loss is the same
as SFTTrainer's (answer tokens only); the prompt (system message, instruction) comes from params.yaml
`tokenize.prompt` (emotune/prompts.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emotune.adapter_table import Adapter, AdapterHParams, adapter_entry, check_hparams, names
from emotune.errors import EmotuneError
from emotune.plan import RunPlan
from emotune.prompts import eos_id, parse_answer, prompt_format, prompt_settings, tokenize_prompts

GEN_METADATA_FILE = "emotune_model.json"  # the same file name and format as emotune/adapters.py
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
class GenerativeBatches:
    """Rows of gen_<split>.parquet, left-padded (to the batch's longest row) so that every row ends at the
    same position. Training batches are prompt + answer: the answers are the last tokens of each row, so
    the LM head only has to run on the last `targets.shape[1] + 1` positions (its logits over a 50k-260k
    vocabulary at every prompt position would cost gigabytes and most of the compute), and the loss
    covers the answer tokens only. Generation batches are the prompts alone."""

    def __init__(self, frame: pd.DataFrame, pad_id: int, multi_label: bool):
        self.prompts = [p.tolist() for p in frame["prompt_ids"]]
        self.answers = [a.tolist() for a in frame["answer_ids"]]
        self.lengths = frame["length"].to_numpy()
        self.prompt_lengths = np.asarray([len(p) for p in self.prompts])
        self.pad_id = pad_id
        self.targets = (np.stack(frame["labels"].map(np.asarray).to_numpy()).astype(np.float32)
                        if multi_label else frame["labels"].to_numpy().astype(np.int64))

    def __len__(self):
        return len(self.prompts)

    def __getitem__(self, i: int) -> int:  # a Trainer dataset of row indices; `collate` builds the batch
        return int(i)

    def _left_padded(self, seqs: list[list[int]]) -> dict:
        import torch

        width = max(map(len, seqs))  # dynamic padding: the batch's longest row
        input_ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            input_ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
        # Positions count real tokens only, exactly as generate() numbers a left-padded prompt.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions}

    def collate(self, idx) -> dict:
        import torch

        batch = self._left_padded([self.prompts[i] + self.answers[i] for i in idx])
        longest = max(len(self.answers[i]) for i in idx)
        targets = torch.full((len(idx), longest), -100, dtype=torch.long)  # -100: not an answer token
        for row, i in enumerate(idx):
            targets[row, longest - len(self.answers[i]):] = torch.tensor(self.answers[i])
        batch["targets"] = targets
        return batch

    def collate_prompts(self, idx) -> dict:
        batch = self._left_padded([self.prompts[i] for i in idx])
        del batch["position_ids"]  # generate() derives them from the mask
        return batch


# ---------------------------------------------------------------------------------------------
# Model: causal LM + LoRA (4-bit body for the `quantized` entries: gen_qlora)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedGenerative:
    model: Any
    tokenizer: Any
    spec: str
    model_type: str
    arch: Any
    labels: tuple[str, ...]
    task: str
    quantized: bool
    provenance: dict = field(default_factory=dict)


def check_generative_adapter(adapter: str) -> Adapter:
    """The table entry of a generative adapter; an EmotuneError naming the choices else."""
    choices = names(generative=True)
    if adapter not in choices:
        raise EmotuneError(f"unknown generative adapter {adapter!r}; choose {' or '.join(choices)}")
    return adapter_entry(adapter)


def load_causal(model: str, adapter: str, labels, task: str, *, registry=None, device: str | None = None,
                cache_dir=None, config_overrides=None, quantize_4bit: bool | None = None) -> LoadedGenerative:
    """A decoder as AutoModelForCausalLM (an NF4 4-bit body when the adapter is `quantized`, or as
    `quantize_4bit` says when given; lm_head stays float); encoders are refused with an EmotuneError."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from emotune.model_registry import bnb_4bit_config, check_model_config, keep_4bit_layout_trainable, resolve_model
    from emotune.models import arch_defaults

    entry = check_generative_adapter(adapter)
    resolved = resolve_model(model, registry, cache_dir)
    common = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    config = AutoConfig.from_pretrained(resolved.location, **common)
    arch = arch_defaults(config.model_type)
    if not (arch and arch.decoder):
        raise EmotuneError(f"adapter {adapter!r} needs a decoder language model; {model!r} is a "
                           f"{config.model_type!r} model (use {'/'.join(names(generative=False))} for it)")
    overrides = check_model_config(config_overrides or {}, config, repr(model))
    tokenizer = AutoTokenizer.from_pretrained(resolved.location, **common)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # pads are masked out of attention and loss
    kwargs: dict[str, Any] = dict(common, dtype=torch.float32, use_safetensors=True, **overrides)
    quantized = entry.quantized if quantize_4bit is None else quantize_4bit
    if quantized:
        kwargs["quantization_config"] = bnb_4bit_config(["lm_head"], device)
    if device is not None:
        kwargs["device_map"] = {"": device}
    net = AutoModelForCausalLM.from_pretrained(resolved.location, **kwargs)
    net.config.pad_token_id = tokenizer.pad_token_id
    if quantized:
        keep_4bit_layout_trainable(net)
    provenance = dict(resolved.provenance, model_type=config.model_type)
    return LoadedGenerative(net, tokenizer, model, config.model_type, arch, tuple(labels), task, quantized,
                            provenance)


def lora_config(loaded: LoadedGenerative, entry: Adapter, hp: AdapterHParams):
    from peft import LoraConfig, TaskType

    from emotune.adapters import _targets

    targets, _ = _targets(loaded, hp, "lora")  # hp.target_modules or the architecture's LoRA targets
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=hp.r, lora_alpha=hp.alpha, lora_dropout=hp.dropout,
                      target_modules=targets, bias=hp.bias, use_rslora=hp.use_rslora,
                      fan_in_fan_out=bool(loaded.arch.fan_in_fan_out))


# One builder per generative entry of the adapter table (emotune/adapter_table.py `builder`): the peft
# config apply_generative_adapter wraps the causal LM with, builder(loaded, entry, hp).
BUILDERS = {"gen_lora": lora_config, "gen_qlora": lora_config}


def apply_generative_adapter(loaded: LoadedGenerative, adapter: str, hp: AdapterHParams | None = None):
    from peft import get_peft_model, prepare_model_for_kbit_training

    entry = check_generative_adapter(adapter)
    hp = check_hparams(hp or AdapterHParams())
    model = loaded.model
    if entry.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=hp.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hp.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, BUILDERS[adapter](loaded, entry, hp))


def generate(model, batches: GenerativeBatches, idx, max_new_tokens: int, eos: int, device: str, autocast) -> list[list[int]]:
    """Greedy answers (token ids, up to and without eos) for rows `idx`."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                              eos_token_id=eos, pad_token_id=batches.pad_id)
    batch = {k: v.to(device) for k, v in batches.collate_prompts(idx).items()}
    with torch.inference_mode(), autocast():
        out = model.generate(**batch, generation_config=config)
    answers = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        answers.append(row[:row.index(eos)] if eos in row else row)
    return answers


def decode_predictions(texts: list[str], classes: list[str], multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, invalid mask): class ids (-1 invalid) or multi-hot rows (zeros when invalid)."""
    index = {c: i for i, c in enumerate(classes)}
    invalid = np.zeros(len(texts), dtype=bool)
    pred = np.zeros((len(texts), len(classes)), dtype=np.float32) if multi_label else np.full(len(texts), -1)
    for row, text in enumerate(texts):
        names = parse_answer(text, classes, multi_label)
        if names is None:
            invalid[row] = True
        elif multi_label:
            pred[row, [index[n] for n in names]] = 1.0
        else:
            pred[row] = index[names[0]]
    return pred, invalid


class GenerativeRecipe:
    """The generative recipe for emotune/train.py's Trainer (same interface as its ClassifierRecipe)."""

    generative = True

    def __init__(self, plan: RunPlan, data_dir: Path, device: str):
        self.plan, self.data_dir, self.device = plan, Path(data_dir), device
        self.labels = plan.dataset.labels
        self.multi_label = plan.multi_label
        self.adapter = plan.adapter
        self.hp = plan.hparams

    def build(self):
        from emotune.plan import model_source

        name, registry = model_source(self.plan.model)
        loaded = load_causal(name, self.adapter, self.labels, self.plan.dataset.task, registry=registry,
                             device=self.device if self.device != "cpu" else None,
                             config_overrides=self.hp.model_config)
        model = apply_generative_adapter(loaded, self.adapter, self.hp)
        return loaded, model if loaded.quantized else model.to(self.device)

    def data(self, tokenizer, max_train: int | None, seed: int):
        from emotune.rows import load_rows, sample_rows

        self.tokenizer, self.eos = tokenizer, eos_id(tokenizer)
        pad = tokenizer.pad_token_id
        self.train = GenerativeBatches(sample_rows(load_rows(self.data_dir, "train", True), max_train, seed),
                                       pad, self.multi_label)
        self.val = GenerativeBatches(load_rows(self.data_dir, "validation", True), pad, self.multi_label)
        # Room for the longest answer seen in training, plus a little: a model that does not stop by
        # then is not giving a valid answer anyway.
        self.max_new_tokens = max(len(a) for a in self.train.answers) + 2

    def collate_train(self, idx) -> dict:
        return self.train.collate(idx)

    def loss(self, model, batch: dict):
        """Mean cross-entropy over the answer tokens. The logits at position t predict token t + 1, so the
        last K answer positions need the logits of the K + 1 last positions, minus the very last."""
        import torch.nn.functional as F

        targets = batch["targets"]
        inputs = {k: v for k, v in batch.items() if k != "targets"}
        logits = model(**inputs, logits_to_keep=targets.shape[1] + 1).logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    def predict(self, model, split: GenerativeBatches, batch_size: int, autocast) -> dict:
        import torch

        from emotune.rows import eval_batches

        model.eval()
        texts = [""] * len(split)
        loss_sum = 0.0
        with torch.inference_mode():
            for idx in eval_batches(split.lengths, batch_size):
                batch = {k: v.to(self.device) for k, v in split.collate(idx).items()}
                with autocast():
                    loss_sum += self.loss(model, batch).item() * len(idx)
        for idx in eval_batches(split.prompt_lengths, batch_size):
            for i, ids in zip(idx, generate(model, split, idx, self.max_new_tokens, self.eos, self.device, autocast)):
                texts[i] = self.tokenizer.decode(ids, skip_special_tokens=True)
        pred, invalid = decode_predictions(texts, self.labels, self.multi_label)
        return {"pred": pred, "invalid": invalid, "loss": loss_sum / max(len(split), 1), "texts": texts}

    def save(self, model, folder: Path, loaded: LoadedGenerative, extra: dict) -> None:
        from emotune.atomic import read_json

        prompt = read_json(self.data_dir / "meta.json").get("prompt")  # what the tokenize stage built
        save_generative(model, folder, loaded, self.adapter, self.hp, max_new_tokens=self.max_new_tokens,
                        extra=extra, prompt=prompt)


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------
def save_generative(model, folder: Path, loaded: LoadedGenerative, adapter: str, hp: AdapterHParams,
                    max_new_tokens: int, extra: dict | None = None, prompt: dict | None = None) -> Path:
    """The LoRA adapter (adapter_model.safetensors), tokenizer and emotune_model.json (the same format as
    emotune/adapters.save_trained, plus the prompt) into `folder`, replaced atomically."""
    from emotune.adapters import parameter_counts
    from emotune.atomic import atomic_dir

    settings = prompt_settings(prompt)
    fmt = prompt_format(loaded.tokenizer, list(loaded.labels), loaded.task == "multi_label", **settings)
    metadata = {
        "format_version": FORMAT_VERSION, "adapter": adapter, "base_model": loaded.spec,
        "base_provenance": loaded.provenance, "model_type": loaded.model_type, "labels": list(loaded.labels),
        "task": loaded.task, "problem_type": "generative", "hparams": asdict(hp),
        # `settings` rebuild the prompt at inference (TrainedGenerative.predict); `instruction` as the
        # model saw it, for people
        "prompt": {"settings": settings, "instruction": fmt.instruction, "system": fmt.system,
                   "system_in_user": fmt.system_in_user, "chat_template": fmt.chat_template, "max_new_tokens": max_new_tokens},
        "parameters": parameter_counts(model), "extra": dict(extra or {}),
    }
    with atomic_dir(Path(folder)) as tmp:
        model.save_pretrained(tmp)
        if not (tmp / "adapter_model.safetensors").exists():
            raise EmotuneError(f"{adapter}: peft wrote no adapter_model.safetensors in {tmp}")
        loaded.tokenizer.save_pretrained(tmp)
        (tmp / GEN_METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return Path(folder)


@dataclass(frozen=True)
class TrainedGenerative:
    model: Any
    tokenizer: Any
    metadata: dict

    @property
    def labels(self) -> list[str]:
        return self.metadata["labels"]

    def predict(self, texts: list[str], max_length: int = 128, batch_size: int = 32,
                device: str = "cpu") -> tuple[list[list[str] | None], list[str]]:
        """(labels per text, None where the answer is invalid; the raw answers)."""
        import contextlib

        multi = self.metadata["task"] == "multi_label"
        frame = pd.DataFrame({"id": range(len(texts)), "text": texts,
                              "labels": [[] if multi else [self.labels[0]]] * len(texts)})
        rows = GenerativeBatches(tokenize_prompts(frame, self.tokenizer, self.labels, multi, max_length,
                                                  self.metadata["prompt"].get("settings")),
                                 self.tokenizer.pad_token_id, multi)
        eos = eos_id(self.tokenizer)
        answers = [""] * len(texts)
        for start in range(0, len(texts), batch_size):
            idx = list(range(start, min(start + batch_size, len(texts))))
            for i, ids in zip(idx, generate(self.model, rows, idx, self.metadata["prompt"]["max_new_tokens"], eos,
                                            device, contextlib.nullcontext)):
                answers[i] = self.tokenizer.decode(ids, skip_special_tokens=True)
        return [parse_answer(a, self.labels, multi) for a in answers], answers


def load_generative(folder: Path, *, registry=None, cache_dir=None, device: str | None = None) -> TrainedGenerative:
    """Load a folder written by save_generative for inference (eval mode)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from emotune.adapters import _check_base

    folder = Path(folder)
    try:
        metadata = json.loads((folder / GEN_METADATA_FILE).read_text())
    except FileNotFoundError:
        raise EmotuneError(f"{folder}: no {GEN_METADATA_FILE}; not a model saved by emotune") from None
    adapter = check_generative_adapter(metadata["adapter"]).name
    loaded = load_causal(metadata["base_model"], adapter, metadata["labels"], metadata["task"],
                         registry=registry, cache_dir=cache_dir, device=device)
    _check_base(metadata, loaded, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = PeftModel.from_pretrained(loaded.model, folder, is_trainable=False)
    return TrainedGenerative(model.eval(), tokenizer, metadata)
