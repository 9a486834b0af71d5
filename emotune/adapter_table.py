"""The adapters emotune compares, in one table: what each is, the `adapter:` hyper-parameters it reads,
its default learning rate, and the flags the rest of the code goes by (4-bit base, generative recipe,
whole body trained, peft adapter). Every other module asks this table (params validation, plans, train,
evaluate, export, predict, the model card); none tests an adapter's name.

Adding an adapter (e.g. AdaLoRA, LoHa) is one `Adapter` entry here and its builder: a function in
emotune/adapters.py BUILDERS (classifiers) or emotune/generative.py BUILDERS (the generative recipe),
under the entry's name (tests/test_adapters.py checks that every entry has one and every builder an entry).

Light on purpose: stdlib and emotune.errors only (checking params must not load torch or peft). The
`adapter:` section itself (AdapterHParams: its keys and defaults; check_hparams: their ranges) is here too,
next to the table that says which adapter reads which key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from emotune.errors import EmotuneError, did_you_mean


# ---------------------------------------------------------------------------------------------
# params.yaml `adapter:`: the shared hyper-parameters (keys, defaults, ranges)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdapterHParams:
    """Shared adapter hyper-parameters (params.yaml `adapter:`). `target_modules` None: the
    architecture's defaults (emotune/models.py ARCHITECTURES); "all-linear": peft's own shorthand
    for every Linear/Conv1D layer outside the classification head; for IA3 the feed-forward modules must
    be a subset of the targets. `model_config` overrides keys of the pretrained model's config when it is
    loaded (any adapter), e.g. {hidden_dropout_prob: 0.2}. Which adapter reads which key: `Adapter.hparams`."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] | Literal["all-linear"] | None = None
    ia3_feedforward_modules: list[str] | None = None
    gradient_checkpointing: bool = False  # trade compute for memory (any adapter)
    bias: Literal["none", "all", "lora_only"] = "none"  # LoRA family: which biases train (peft LoraConfig.bias)
    use_rslora: bool = False  # LoRA family: scale the update by alpha/sqrt(r) instead of alpha/r (rsLoRA)
    model_config: dict[str, Any] = field(default_factory=dict)


ALL_LINEAR = "all-linear"
# Config keys emotune sets itself from the dataset and the adapter; an override would silently break them.
RESERVED_MODEL_CONFIG = ("num_labels", "id2label", "label2id", "problem_type", "pad_token_id",
                         "quantization_config", "model_type", "architectures", "torch_dtype", "dtype")


def check_hparams(hp: AdapterHParams, where: str = "adapter") -> AdapterHParams:
    if hp.r < 1:
        raise EmotuneError(f"{where}.r: must be >= 1, got {hp.r}")
    if hp.alpha <= 0:
        raise EmotuneError(f"{where}.alpha: must be > 0, got {hp.alpha}")
    if not 0 <= hp.dropout < 1:
        raise EmotuneError(f"{where}.dropout: must be in [0, 1), got {hp.dropout}")
    for key in ("target_modules", "ia3_feedforward_modules"):
        value = getattr(hp, key)
        if value == ALL_LINEAR and key == "target_modules":
            continue
        if value is not None and (isinstance(value, str) or not value
                                  or not all(isinstance(v, str) and v for v in value)):
            also = f"{ALL_LINEAR!r}, " if key == "target_modules" else ""
            raise EmotuneError(f"{where}.{key}: a non-empty list of module names, {also}or null for the defaults")
    if hp.bias not in ("none", "all", "lora_only"):
        raise EmotuneError(f"{where}.bias: {hp.bias!r}{did_you_mean(hp.bias, ('none', 'all', 'lora_only'))}; "
                           f"choose none, all or lora_only")
    check_model_config_values(hp.model_config, f"{where}.model_config")
    if hp.ia3_feedforward_modules and isinstance(hp.target_modules, list):
        stray = [m for m in hp.ia3_feedforward_modules if m not in hp.target_modules]
        if stray:
            raise EmotuneError(f"{where}.ia3_feedforward_modules: {stray} are not in target_modules "
                               f"{hp.target_modules}")
    return hp


def check_model_config_values(overrides: dict, where: str = "adapter.model_config") -> dict:
    """Shape of `adapter.model_config`: plain scalar values, none of the keys emotune owns. Whether each key
    exists in the model's config is checked against the config itself (model_registry.check_model_config)."""
    if not isinstance(overrides, dict):
        raise EmotuneError(f"{where}: a mapping of config key -> value, got {overrides!r}")
    for key, value in overrides.items():
        if key in RESERVED_MODEL_CONFIG:
            raise EmotuneError(f"{where}.{key}: set by emotune from the dataset and adapter; remove it "
                               f"(labels come from dataset_registry, quantisation from the adapter)")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise EmotuneError(f"{where}.{key}: a number, string, boolean or null, got {value!r}")
    return overrides


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Adapter:
    name: str  # params.yaml `adapters:` / a group's `adapters:`, the run's folder name
    description: str  # one line
    # The `adapter:` keys it reads (AdapterHParams fields). A plan holds these and no others, so a change
    # to another adapter's setting leaves its plan (and its trained model) alone.
    hparams: tuple[str, ...]
    lr: float  # the default learning rate when train.lr is null (the plans' lr_source "DEFAULT_LR")
    builder: str  # module:function, its BUILDERS entry: a peft adapter's peft config, or what makes the model trainable
    quantized: bool = False  # the base model loads as 4-bit NF4 (bitsandbytes)
    generative: bool = False  # a decoder LM answers with label words (emotune/generative.py): no head
    whole_body: bool = False  # every pretrained weight trains; saved as the whole model
    peft: bool = True  # a peft adapter (adapter_model.safetensors, merged on export); else a head or model file
    # What `tune` searches for this adapter (emotune/tune.py); epochs are searched for every adapter, up to
    # params `tune.max_epochs`.
    search: tuple[SearchRange, ...] = ()


@dataclass(frozen=True)
class SearchRange:
    """One dimension of an adapter's hyper-parameter search: `key` is a `train:` key (lr, head_lr) or an
    `adapter:` key (r, alpha, dropout). Numbers between `low` and `high` (on a log scale when `log`; whole
    numbers when `integer`), or one of `choices`."""

    key: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple = ()
    integer: bool = False

    @property
    def section(self) -> str:
        return "adapter" if self.key in AdapterHParams.__dataclass_fields__ else "train"


# `model_config` (config overrides such as dropout) changes the model itself, so every adapter reads it.
_LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "bias", "use_rslora", "gradient_checkpointing",
              "model_config")
_IA3_KEYS = ("target_modules", "ia3_feedforward_modules", "gradient_checkpointing", "model_config")

# Default learning rates (used when train.lr is null). emotune trains for few steps (CPU budgets: a few
# thousand rows, 1-3 epochs), so these sit at the top of each adapter's usual range. They differ by
# orders of magnitude because the adapters move very different amounts of weight from very different
# starting points. Measured on MiniLM-L6 / dair-ai emotion, 2000 rows, 1 epoch, batch 32 (validation
# accuracy; majority class 0.352):
# * full 1e-4: every pretrained weight moves; BERT-family fine-tuning uses 2e-5..1e-4, small models the
#   upper end (5e-5: 0.538, 1e-4: 0.572).
# * head 1e-2: a linear probe on frozen features; nothing pretrained can be damaged and the fresh layer
#   needs large steps (1e-3: 0.354, 1e-2: 0.377).
# * lora / dora / qlora 2e-3: LoRA's B starts at zero and its update is scaled by alpha/r; papers use
#   4e-4..5e-4 over tens of epochs, a short run needs more (5e-4: 0.276, i.e. still stuck on one class;
#   2e-3: lora 0.618, qlora 0.609).
# * ia3 4e-2: the learned scaling vectors start at 1 and move slowly (the IA3 paper's 3e-3: 0.384;
#   1e-2: 0.533). The 8-trial Optuna studies (metrics/bench/tune_*.json) put IA3's best LR at 0.037 and
#   0.049; through the pipeline on all four datasets 4e-2 beat 1e-2 on emotion (+0.030) and SemEval-2025
#   (+0.020) and was within noise on the other two (metrics/bench/adapter_default_ia3.json).
# * gen_lora / gen_qlora 2e-4: supervised fine-tuning of a decoder LM with LoRA (QLoRA paper, common SFT
#   recipes); the model already writes words, the LoRA update only steers which.
# The search spaces (params `tune`, docs/tuning.md). Each LR range brackets the default above by about 3x
# below and 5x above (the short runs favour the top of the usual ranges). IA3's range was 3e-3..5e-2 around
# the old 1e-2; one study's best trial (0.049) sat at its top, so it now brackets 4e-2 the same way. The fresh head's LR matters for every classifier whose body trains
# too (bench/multilabel.py); for `head` it is the only LR that reaches a trainable weight.
_HEAD_LR = SearchRange("head_lr", 1e-3, 1e-1, log=True)
_LORA_SEARCH = (SearchRange("lr", 5e-4, 1e-2, log=True), SearchRange("r", choices=(4, 8, 16, 32)),
                SearchRange("alpha", choices=(8, 16, 32, 64)), SearchRange("dropout", 0.0, 0.2), _HEAD_LR)
_GEN_SEARCH = (SearchRange("lr", 5e-5, 1e-3, log=True), *_LORA_SEARCH[1:4])

_TABLE = (
    Adapter("full", "every weight trains", ("model_config",), 1e-4,
            "emotune.adapters:build_full", whole_body=True, peft=False,
            search=(SearchRange("lr", 2e-5, 5e-4, log=True), _HEAD_LR)),
    Adapter("head", "frozen body, only the classification head trains (a linear probe)", ("model_config",), 1e-2,
            "emotune.adapters:build_head", peft=False, search=(_HEAD_LR,)),
    Adapter("lora", "peft LoRA on the attention/MLP projections", _LORA_KEYS, 2e-3,
            "emotune.adapters:lora_config", search=_LORA_SEARCH),
    Adapter("dora", "LoRA with weight decomposition (peft use_dora)", _LORA_KEYS, 2e-3,
            "emotune.adapters:dora_config", search=_LORA_SEARCH),
    Adapter("ia3", "peft IA3: learned scaling vectors on keys, values and the feed-forward output", _IA3_KEYS, 4e-2,
            "emotune.adapters:ia3_config", search=(SearchRange("lr", 1e-2, 2e-1, log=True), _HEAD_LR)),
    Adapter("qlora", "LoRA on a 4-bit NF4 body (double quantisation, prepare_model_for_kbit_training)",
            _LORA_KEYS, 2e-3, "emotune.adapters:lora_config", quantized=True, search=_LORA_SEARCH),
    Adapter("gen_lora", "decoders: LoRA on the causal LM, fine-tuned to answer with the label words",
            _LORA_KEYS, 2e-4, "emotune.generative:lora_config", generative=True, search=_GEN_SEARCH),
    Adapter("gen_qlora", "decoders: gen_lora on a 4-bit NF4 body", _LORA_KEYS, 2e-4,
            "emotune.generative:lora_config", generative=True, quantized=True, search=_GEN_SEARCH),
)
ADAPTERS: dict[str, Adapter] = {a.name: a for a in _TABLE}
AdapterName = Literal[tuple(ADAPTERS)]  # params validation's allowed names (emotune/config.py)

# The classification head (pooler + classifier for BERT models) starts random in every classifier adapter;
# at the body's LR (lora 2e-3, full 1e-4) it barely moves in a 1,000-row run and a multi-label head ends
# on "no label". It trains at the head adapter's LR, or the run's LR when that is higher
# (bench/multilabel.py); generative adapters have no head.
DEFAULT_HEAD_LR = ADAPTERS["head"].lr


def names(**flags: bool) -> tuple[str, ...]:
    """The adapters' names in table order, those whose flags match, e.g. names(generative=False)."""
    return tuple(a.name for a in ADAPTERS.values() if all(getattr(a, k) == v for k, v in flags.items()))


def adapter_entry(name: str, among: tuple[str, ...] | None = None) -> Adapter:
    """The table entry of `name`; an EmotuneError with the choices (those of `among` when given) if
    there is none."""
    choices = tuple(ADAPTERS) if among is None else among
    if name not in choices:
        raise EmotuneError(f"unknown adapter {name!r}{did_you_mean(name, choices)}; choose one of {', '.join(choices)}")
    return ADAPTERS[name]

