"""How much of a model trains: the classifier adapters of emotune/adapter_table.py (what each is, its
hyper-parameters, its default LR), built here on peft, and saving/loading what was trained.

BUILDERS holds one function per table entry that is not generative (the generative recipe's are in
emotune/generative.py): `full` sets every weight trainable, `head` only the head's, the LoRA family
(lora, dora, qlora: qlora's entry says `quantized`, so its body loads as 4-bit NF4 with double
quantisation and goes through `prepare_model_for_kbit_training` first) and IA3 wrap the body in peft.

In every adapter the classification head (and any module the checkpoint lacked) trains and is saved with
the adapter (peft `modules_to_save`). A saved folder holds `emotune_model.json` (adapter, labels, problem
type, hyper-parameters, the base model's name and provenance), the tokenizer, and: `whole_body` adapters
(full) the whole model (`model.safetensors`), `head` only the head (`head.safetensors`), peft adapters
`adapter_model.safetensors` + `adapter_config.json`. Loading rebuilds the base from the model registry and
checks its weights' sha256.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from emotune.adapter_table import ALL_LINEAR, Adapter, AdapterHParams, adapter_entry, check_hparams, names
from emotune.errors import EmotuneError
from emotune.model_registry import LoadedModel, _covered, load_for_classification
from emotune.models import HubModel, require_arch

METADATA_FILE = "emotune_model.json"
HEAD_FILE = "head.safetensors"
FORMAT_VERSION = 1


def check_adapter(adapter: str) -> Adapter:
    """The table entry of a classifier adapter (this module's); an EmotuneError naming the choices else."""
    return adapter_entry(adapter, names(generative=False))


def needs_4bit(adapter: str) -> bool:
    return check_adapter(adapter).quantized


def load_base(model: str, adapter: str, labels: Sequence[str], problem_type: str = "single_label_classification",
              hp: AdapterHParams | None = None, **kwargs) -> LoadedModel:
    """`load_for_classification` with the quantisation the adapter needs and the config overrides of
    `hp.model_config` (e.g. dropout)."""
    overrides = hp.model_config if hp is not None else {}
    return load_for_classification(model, labels, problem_type, quantize_4bit=needs_4bit(adapter),
                                   config_overrides=overrides, **kwargs)


def _targets(loaded: LoadedModel, hp: AdapterHParams, adapter: str, ia3: bool = False
             ) -> tuple[list[str] | str, list[str] | None]:
    """(target modules, IA3 feed-forward modules: `ia3` only, else None) from the hyper-parameters or the
    architecture (its IA3 or LoRA targets). "all-linear" is handed to peft as is: peft expands it to every
    Linear / Conv1D (4-bit ones included) but the output layer, and `peft_config`'s exclude_modules keeps
    the rest of the head out. `adapter` names the adapter in errors."""
    if hp.target_modules == ALL_LINEAR:
        feedforward = None
        if ia3:
            arch = loaded.arch
            feedforward = list(hp.ia3_feedforward_modules if hp.ia3_feedforward_modules is not None
                               else (arch.ia3_feedforward if arch else ()))
            _check_match(loaded, feedforward, "adapter.ia3_feedforward_modules")
            # IA3 gets the expansion as short names: peft 0.21 expands "all-linear" to full module paths
            # and then refuses to load its own saved adapter, because `down_proj` (feed-forward) is not
            # literally among `model.layers.0.mlp.down_proj`, ... (IA3Config's subset check).
            outside_head = [n for n, _ in loaded.model.named_modules() if n and not _covered(n, loaded.head_modules)]
            return _linear_names(loaded.model, outside_head), feedforward
        return ALL_LINEAR, feedforward
    if hp.target_modules is not None:
        targets = list(hp.target_modules)
        if ia3 and hp.ia3_feedforward_modules is None:
            arch = require_arch(loaded.model_type, f"{adapter} on {loaded.spec}")
            feedforward = [m for m in arch.ia3_feedforward if m in targets]
        else:
            feedforward = list(hp.ia3_feedforward_modules or []) if ia3 else None
    else:
        arch = require_arch(loaded.model_type, f"{adapter} on {loaded.spec}")
        targets = list(arch.ia3_targets if ia3 else arch.lora_targets)
        feedforward = (list(hp.ia3_feedforward_modules) if hp.ia3_feedforward_modules is not None
                       else list(arch.ia3_feedforward)) if ia3 else None
    if ia3:
        stray = [m for m in feedforward if m not in targets]
        if stray:
            raise EmotuneError(f"adapter.ia3_feedforward_modules: {stray} are not among the targets {targets}")
    _check_match(loaded, targets, "adapter.target_modules")
    return targets, feedforward


def _check_match(loaded: LoadedModel, targets: Sequence[str], key: str) -> None:
    names = [n for n, _ in loaded.model.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        raise EmotuneError(f"{key}: {unmatched} match no module of {loaded.spec} "
                           f"({loaded.model_type}); e.g. {_linear_names(loaded.model)[:8]}")


def _linear_names(model, within: Sequence[str] | None = None) -> list[str]:
    """Short names of the Linear / Conv1D layers (of the modules named in `within`, default all)."""
    seen = []
    keep = set(within) if within is not None else None
    for name, module in model.named_modules():
        if type(module).__name__ in ("Linear", "Conv1D", "Linear4bit") and name and (keep is None or name in keep):
            short = name.rsplit(".", 1)[-1]
            if short not in seen:
                seen.append(short)
    return seen


def _peft_common(loaded: LoadedModel, targets) -> dict:
    """The peft config arguments every classifier adapter shares: the head trains in full
    (modules_to_save); an adapter inside it as well (BERT's pooler.dense is a "dense" target) would only
    add parameters that merging folds back into the same weights."""
    from peft import TaskType

    inside_head = [n for n, _ in loaded.model.named_modules() if n and _covered(n, loaded.head_modules)]
    return dict(task_type=TaskType.SEQ_CLS, target_modules=targets, exclude_modules=inside_head or None,
                modules_to_save=list(loaded.head_modules),
                fan_in_fan_out=bool(loaded.arch and loaded.arch.fan_in_fan_out))


def lora_config(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams, **extra):
    from peft import LoraConfig

    targets, _ = _targets(loaded, hp, entry.name)
    return LoraConfig(r=hp.r, lora_alpha=hp.alpha, lora_dropout=hp.dropout, bias=hp.bias,
                      use_rslora=hp.use_rslora, **extra, **_peft_common(loaded, targets))


def dora_config(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams):
    return lora_config(loaded, entry, hp, use_dora=True)


def ia3_config(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams):
    from peft import IA3Config

    targets, feedforward = _targets(loaded, hp, entry.name, ia3=True)
    return IA3Config(feedforward_modules=feedforward, **_peft_common(loaded, targets))


def _peft_model(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams, config):
    """`loaded.model` wrapped in peft with `config` (a 4-bit body prepared for k-bit training first)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    if entry.quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=hp.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model = get_peft_model(model, config)
    head_params = [n for n, p in peft_model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    if not head_params:
        raise EmotuneError(f"{entry.name}: the classification head {loaded.head_modules} is not trainable")
    return peft_model


def build_full(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams):
    for p in loaded.model.parameters():
        p.requires_grad_(True)
    return loaded.model


def build_head(loaded: LoadedModel, entry: Adapter, hp: AdapterHParams):
    for name, p in loaded.model.named_parameters():
        p.requires_grad_(_covered(name.rsplit(".", 1)[0], loaded.head_modules))
    return loaded.model


# One builder per classifier entry of the adapter table (emotune/adapter_table.py `builder`), called as
# builder(loaded, entry, hp). A peft adapter's builder returns its peft config, which apply_adapter wraps
# the body with; the others (full, head) set what trains and return the model.
BUILDERS: dict[str, Callable] = {"full": build_full, "head": build_head, "lora": lora_config, "dora": dora_config,
                                 "ia3": ia3_config, "qlora": lora_config}


def peft_config(loaded: LoadedModel, adapter: str, hp: AdapterHParams):
    """The peft config a peft adapter (lora, dora, ia3, qlora) puts on `loaded`."""
    entry = check_adapter(adapter)
    if not entry.peft:
        raise EmotuneError(f"adapter {adapter!r} is not a peft adapter; it has no peft config")
    return BUILDERS[adapter](loaded, entry, hp)


def apply_adapter(loaded: LoadedModel, adapter: str, hp: AdapterHParams | None = None):
    """Make `loaded.model` trainable the adapter's way (its BUILDERS function); returns the model to train
    (a peft model for the peft adapters, `loaded.model` itself for `full` and `head`)."""
    entry = check_adapter(adapter)
    hp = check_hparams(hp or AdapterHParams())
    if entry.quantized != loaded.quantized:
        raise EmotuneError(f"adapter {adapter!r} needs a model loaded with quantize_4bit={entry.quantized} "
                           f"(use adapters.load_base)")
    if hp.gradient_checkpointing and not entry.quantized:  # (k-bit preparation switches it on itself)
        loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    built = BUILDERS[adapter](loaded, entry, hp)
    return _peft_model(loaded, entry, hp, built) if entry.peft else built


def _count(param) -> int:
    n = param.numel()
    if type(param).__name__ == "Params4bit":  # two 4-bit values per byte of storage
        n *= 2 * getattr(getattr(param, "quant_storage", None), "itemsize", 1)
    return n


def parameter_counts(model) -> dict[str, int]:
    """{"trainable": ..., "total": ...}: 4-bit weights count as their unpacked number of values."""
    trainable = total = 0
    for p in model.parameters():
        n = _count(p)
        total += n
        if p.requires_grad:
            trainable += n
    return {"trainable": trainable, "total": total}


# ---------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------
def _head_state(model, head_modules: Sequence[str]) -> dict:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if _covered(k.rsplit(".", 1)[0], head_modules)}
    if not state:
        raise EmotuneError(f"head: no weights found under {head_modules}")
    return state


def save_trained(model, folder: Path, loaded: LoadedModel, adapter: str, hp: AdapterHParams | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write what was trained to `folder` (replaced atomically): adapter or weights, tokenizer, label map and
    `emotune_model.json`. `extra` is stored in the metadata as is (e.g. metrics, training params)."""
    from safetensors.torch import save_file

    from emotune.atomic import atomic_dir

    entry = check_adapter(adapter)
    hp = hp or AdapterHParams()
    folder = Path(folder)
    metadata = {
        "format_version": FORMAT_VERSION,
        "adapter": adapter,
        "base_model": loaded.spec,
        "base_provenance": loaded.provenance,
        "model_type": loaded.model_type,
        "labels": list(loaded.labels),
        "id2label": {str(i): label for i, label in enumerate(loaded.labels)},
        "problem_type": loaded.problem_type,
        "head_modules": list(loaded.head_modules),
        "hparams": asdict(hp),
        "parameters": parameter_counts(model),
        "extra": dict(extra or {}),
    }
    with atomic_dir(folder) as tmp:
        if entry.whole_body:
            model.save_pretrained(tmp)
        elif not entry.peft:  # head
            save_file(_head_state(model, loaded.head_modules), str(tmp / HEAD_FILE), metadata={"format": "pt"})
        else:
            model.save_pretrained(tmp)
            if not (tmp / "adapter_model.safetensors").exists():
                raise EmotuneError(f"{adapter}: peft wrote no adapter_model.safetensors in {tmp}")
        loaded.tokenizer.save_pretrained(tmp)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return folder


@dataclass(frozen=True)
class TrainedModel:
    model: Any
    tokenizer: Any
    metadata: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return self.metadata["labels"]


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise EmotuneError(f"{folder}: no {METADATA_FILE}; not a model saved by emotune") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise EmotuneError(f"{path}: format_version {metadata.get('format_version')}, this code reads "
                           f"{FORMAT_VERSION}")
    return metadata


def _check_base(metadata: dict, loaded: LoadedModel, folder: Path) -> None:
    then = metadata["base_provenance"]
    now = loaded.provenance
    for key in ("weights", "files"):  # packaged / local folders: the weights' sha256
        if key in then and then[key] != now.get(key):
            raise EmotuneError(f"{folder}: the base model {metadata['base_model']!r} changed since training "
                               f"({key}: {then[key]} -> {now.get(key)})")
    if then.get("revision") != now.get("revision"):
        raise EmotuneError(f"{folder}: trained on {metadata['base_model']!r} at revision {then.get('revision')}, "
                           f"the registry now says {now.get('revision')}")


def load_trained(folder: Path, *, registry: Mapping[str, HubModel] | None = None, cache_dir: Path | None = None,
                 device: str | None = None) -> TrainedModel:
    """Load a folder written by `save_trained` for inference (eval mode)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    metadata = read_metadata(folder)
    entry = check_adapter(metadata["adapter"])
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if entry.whole_body:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False, local_files_only=True, dtype=torch.float32,
            **({"device_map": {"": device}} if device else {}))
        return TrainedModel(model.eval(), tokenizer, metadata)

    loaded = load_for_classification(metadata["base_model"], metadata["labels"], metadata["problem_type"],
                                     quantize_4bit=entry.quantized, registry=registry,
                                     cache_dir=cache_dir, device=device,
                                     config_overrides=metadata["hparams"].get("model_config") or {})
    _check_base(metadata, loaded, folder)
    model = loaded.model
    model.config.pad_token_id = tokenizer.pad_token_id
    if not entry.peft:  # head
        from safetensors.torch import load_file

        state = load_file(str(folder / HEAD_FILE))
        expected = set(_head_state(model, metadata["head_modules"]))
        if set(state) != expected:
            raise EmotuneError(f"{folder / HEAD_FILE}: holds {sorted(state)}, the model's head is "
                               f"{sorted(expected)}")
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, folder, is_trainable=False)
    return TrainedModel(model.eval(), tokenizer, metadata)


# ---------------------------------------------------------------------------------------------
# Starting the head where the data is, and training it at its own pace (independent of the loop:
# the hand-written one in emotune/train.py and transformers.Trainer call the same two functions)
# ---------------------------------------------------------------------------------------------
PRIOR_CLIP = 1e-3  # a label seen in no (or every) training row gets logit(0.001), not -inf


def label_prior_logits(targets):
    """log(p / (1 - p)) of each label's share of positive rows in the multi-hot `targets` (a numpy array)."""
    import numpy as np

    p = np.clip(np.asarray(targets, dtype=np.float64).mean(0), PRIOR_CLIP, 1 - PRIOR_CLIP)
    return np.log(p / (1 - p))


def output_layers(model, head_modules: Sequence[str], n_labels: int) -> list:
    """The head's final linear layer(s): Linear modules inside the head with one output per label
    (under peft, both the trained copy in `modules_to_save` and the frozen original)."""
    import torch

    found = [m for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == n_labels and _covered(name, head_modules)]
    if not found:
        raise EmotuneError(f"no Linear layer with {n_labels} outputs inside the head {list(head_modules)}")
    return found


def init_head_bias_to_priors(model, head_modules: Sequence[str], targets) -> list[float] | None:
    """Multi-label: set the classifier's bias to the logits of the label priors, so every sigmoid starts
    at its label's training frequency instead of 0.5. From a zero bias the first BCE steps spend the
    gradient pushing every logit down (11 SemEval labels at 5-39% positives) and a fresh head at a small
    learning rate ends on "no label" for every row (bench/multilabel.py). Returns the bias set, or None
    when the output layer has no bias (decoders' `score` layer: Llama, Gemma, Mistral, GPT-2), which a
    saved checkpoint could not reload if one were added."""
    import torch

    prior = label_prior_logits(targets)
    layers = output_layers(model, head_modules, len(prior))
    if any(layer.bias is None for layer in layers):
        return None
    with torch.no_grad():
        for layer in layers:
            layer.bias.copy_(torch.as_tensor(prior, dtype=layer.bias.dtype))
    return [float(v) for v in prior]


def no_decay(name: str, param) -> bool:
    # Weight decay pulls a weight towards zero. That is a sane prior for matrices (and LoRA's A/B), not
    # for biases, norm scales, IA3 scaling vectors (neutral value 1) or DoRA magnitudes.
    return param.dim() < 2 or any(k in name for k in ("bias", "norm", "ia3_l", "lora_magnitude"))


def param_groups(model, head_modules: Sequence[str], lr: float, head_lr: float, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups over the trainable parameters: the head (fresh weights) at `head_lr`,
    everything else (adapter or body) at `lr`; no weight decay on biases/norms/scales. Pass them to any
    torch optimizer (e.g. `torch.optim.AdamW(groups)`; Trainer: `optimizers=(AdamW(groups), None)` or a
    `create_optimizer` override)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (_covered(name.rsplit(".", 1)[0], head_modules), no_decay(name, p))
            groups.setdefault(key, []).append(p)
    return [{"params": params, "lr": head_lr if head else lr, "weight_decay": 0.0 if nd else weight_decay}
            for (head, nd), params in sorted(groups.items())]
