"""params.yaml -> typed, validated config objects.

Every stage calls `load_params()` once; a typo, a wrong type or an unknown dataset name fails here,
with the key path and a fix, before any expensive work starts. The rest of the code trusts these
objects.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from emotune.adapter_table import AdapterHParams, AdapterName, check_hparams
from emotune.errors import EmotuneError, did_you_mean
from emotune.models import HubModel, model_kind
from emotune.paths import SEEDS_FOLDER, SPLITS, check_model_reference, check_path_segment, params_file


# ---------------------------------------------------------------------------------------------
# Config objects
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LineFiles:
    """TweetEval-style parallel files: one text per line, one label per line."""

    text: str
    labels: str


@dataclass(frozen=True)
class HubSpec:
    """How the dataset loads from the Hugging Face Hub with `datasets.load_dataset`."""

    path: str
    name: str | None = None
    revision: str | None = None
    splits: dict[str, str] = field(default_factory=dict)  # our split -> Hub split, where they differ
    text_column: str = "text"
    label_column: str | None = None  # a ClassLabel (ints) or label-name column
    label_columns: list[str] | None = None  # one 0/1 (or bool) column per label
    id_column: str | None = None

    def __post_init__(self):
        # `splits: {validation: dev}` renames one split; the others keep their names.
        object.__setattr__(self, "splits", {**{s: s for s in SPLITS}, **self.splits})


@dataclass(frozen=True)
class Reference:
    """A published number to compare against (shown on the leaderboard)."""

    value: float
    metric: str
    source: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    task: Literal["single_label", "multi_label"]
    labels: list[str]
    official_metric: Literal["accuracy", "macro_f1", "micro_f1", "weighted_f1", "macro_recall", "jaccard"]
    description: str = ""
    tweets: bool = False  # mask user mentions and URLs in clean
    # Local files: relative to `<fetch.mirror>/<mirror_dir>` for mirrored datasets, else to the
    # repository root (or absolute).
    files: dict[str, Union[str, LineFiles]] = field(default_factory=dict)
    mirror_dir: str | None = None
    format: Literal["csv", "tsv", "jsonl", "lines", "parquet"] | None = None  # None: from the file extension
    delimiter: str | None = None
    header: bool = True
    columns: list[str] | None = None  # column names when header is false
    quoting: Literal["minimal", "none"] = "minimal"
    text_column: str = "text"
    label_column: str | None = None
    label_columns: list[str] | None = None
    label_delimiter: str | None = None  # label_column holds a delimited list (multi-label)
    label_ids: bool = False  # labels are integer indices into `labels`
    id_column: str | None = None
    # Multi-label: a row with no label at all (a neutral text) is valid data. Off by default, since an
    # empty label set is more often a broken row (all 0 columns, an empty cell) than a real "none".
    allow_empty_labels: bool = False
    sha256: dict[str, str] = field(default_factory=dict)
    split_sizes: dict[str, int] = field(default_factory=dict)
    hub: HubSpec | None = None
    reference: Reference | None = None

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"


@dataclass(frozen=True)
class FetchConfig:
    mirror: str = "../shared/datasets"
    source: Literal["auto", "mirror", "hub"] = "auto"
    validation_fraction: float = 0.1  # carved from train, stratified, when a dataset has none


@dataclass(frozen=True)
class CleanConfig:
    html_unescape: bool = True
    unicode_form: Literal["NFC", "NFKC", "none"] = "NFKC"
    collapse_whitespace: bool = True
    mask_mentions: str | None = "@user"  # tweets only; null keeps mentions
    mask_urls: str | None = "http"  # tweets only; null keeps URLs
    lowercase: bool = False
    min_chars: int = 1
    drop_conflicting: bool = True
    dedupe: Literal["exact", "normalised"] = "normalised"


@dataclass(frozen=True)
class AuditConfig:
    action: Literal["report", "drop"] = "report"
    model: Literal["tfidf", "embeddings", "both"] = "both"
    folds: int = 5
    max_drop_fraction: float = 0.05
    drop_splits: list[Literal["train", "validation"]] = field(default_factory=lambda: ["train"])
    top_k: int = 50
    embedding_model: str = "minilm"
    batch_size: int = 128


@dataclass(frozen=True)
class RnnBaseline:
    """The from-scratch recurrent baseline (params `baseline.rnn`): token embeddings + a bidirectional
    LSTM/GRU + max and mean pooling + a linear layer, on the word pieces of `tokenizer`."""

    cell: Literal["lstm", "gru"] = "lstm"
    tokenizer: str = "minilm"  # a model name whose tokenizer splits the texts (its vocabulary, not its weights)
    embedding_dim: int = 128
    hidden_size: int = 128
    layers: int = 1
    dropout: float = 0.3
    epochs: int = 10
    lr: float = 3e-3
    batch_size: int = 32


@dataclass(frozen=True)
class ZeroShotBaseline:
    """Instruction-tuned decoders prompted with the label names, no training (params `baseline.zero_shot`):
    each model on the listed datasets among `datasets` (null: all of them). dvc.yaml has a
    baseline_zero_shot stage for every dataset of `datasets` x model, since DVC cannot filter a matrix;
    the plan stage writes which pairs are scored (emotune/plan.py zero_shot_plan), the others record
    "not scored"."""

    datasets: list[str] | None = None
    models: list[str] = field(default_factory=list)
    batch_size: int = 16
    # rank: the label whose answer the decoder finds most likely after the prompt (single-label datasets);
    # generate: greedy answer parsed back to labels, anything else an invalid answer
    decode: Literal["rank", "generate"] = "rank"
    # off-the-shelf classifiers among `models`: their label -> the dataset's label (null: no counterpart;
    # predicting it is an invalid answer), every label of the classifier listed
    label_maps: dict[str, dict[str, Union[str, None]]] = field(default_factory=dict)


@dataclass(frozen=True)
class BaselineConfig:
    embedding_model: str = "minilm"  # sentence encoder of embed_lr (emotune/audit.py embed_texts)
    embedding_batch_size: int = 128
    rnn: RnnBaseline = field(default_factory=lambda: RnnBaseline())
    zero_shot: ZeroShotBaseline = field(default_factory=lambda: ZeroShotBaseline())


@dataclass(frozen=True)
class PromptConfig:
    """The generative recipe's prompt (emotune/prompts.py): `system`, a system message (chat templates; a
    first paragraph in plain prompts and for templates without a system role), and `instruction`, the
    question before the text, where "{labels}" becomes the label names. null: the built-in instruction."""

    system: str | None = None
    instruction: str | None = None


@dataclass(frozen=True)
class TokenizeConfig:
    max_length: int = 128
    prompt: PromptConfig = field(default_factory=lambda: PromptConfig())


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float | None = None  # null: the adapter's default (emotune/adapter_table.py Adapter.lr)
    head_lr: float | None = None  # the fresh classification head's LR; null: emotune/adapter_table.py DEFAULT_HEAD_LR
    head_bias: Literal["prior", "zero"] = "prior"  # multi-label: start each sigmoid at its label's frequency
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    early_stopping_patience: int = 2  # epochs without a better validation metric
    class_weights: bool = False  # inverse-frequency CE weights / BCE pos_weight for imbalance
    max_train_examples: int | None = None  # cap (seeded sample) for quick runs and the CI profile
    threads: int | None = None  # torch CPU threads; null: torch's default
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints (also at each epoch end)
    processes: int = 1  # data-parallel processes (one per GPU); batch_size is the global batch they share
    # TrainingArguments names (docs/training.md maps them all):
    optim: str = "auto"  # any transformers optim; auto: adamw_torch_fused, paged_adamw_8bit for QLoRA on a GPU
    lr_scheduler_type: str = "linear"  # any transformers scheduler: linear, cosine, constant_with_warmup, ...
    warmup_steps: int | None = None  # absolute warmup steps; null: warmup_ratio of all steps
    bf16: Union[bool, Literal["auto"]] = "auto"  # auto: on a GPU with bf16; off on the CPU (emotune/train.py)
    torch_compile: bool = False
    report_to: list[str] = field(default_factory=list)  # besides DVCLive (always): wandb, tensorboard, mlflow, ...


@dataclass(frozen=True)
class EvalConfig:
    threshold: Union[float, Literal["tuned"]] = "tuned"  # multi-label: one fixed threshold, or per label on validation
    latency_samples: int = 50  # test rows predicted one at a time for the p50/p95 latency


@dataclass(frozen=True)
class RunGroup:
    """A second, smaller training matrix (params `large:` and `generative:`): its own datasets x models x
    adapters, trained with `train` overridden by the group's `train:` keys. The main matrix cannot hold
    them because a DVC matrix is a full cartesian product: 2-4 examples/s models on every dataset, or
    the generative recipe on an encoder, are not what anyone wants."""

    # large, generative: a list, each among `datasets` ([] switches the group off; dvc.yaml iterates it).
    # reference: null, every dataset of `datasets` (dvc.yaml train_reference iterates ${datasets}).
    datasets: list[str] | None = None
    models: list[str] = field(default_factory=list)
    adapters: list[AdapterName] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuneGroup(RunGroup):
    """params `tune:`: the runs trained with the settings of an Optuna search (emotune/tune.py,
    docs/tuning.md); a group like `reference`, opt-in (empty `datasets`), reusing the main matrix's
    tokenization. The search: `trials` in all (a rerun with more continues the study), or as many as fit
    in `minutes`; `epochs` searched from 1 to `max_epochs`; trials stopped early by `pruner` from their
    per-epoch validation scores; the study kept in `storage` (null: a SQLite file, a DVC output)."""

    models: list[str] = field(default_factory=lambda: ["minilm"])
    adapters: list[AdapterName] = field(default_factory=lambda: ["lora"])
    trials: int = 20
    minutes: float | None = None  # stop starting trials after this long (per `dvc repro`)
    max_epochs: int = 4
    pruner: Literal["median", "successive_halving", "none"] = "median"
    startup_trials: int = 3  # trials the pruner and TPE watch before they act (Optuna's n_startup_trials)
    storage: str | None = None  # an Optuna storage URL (postgresql://..., mysql://...) shared by machines


def check_tune(cfg: TuneGroup) -> None:
    if cfg.trials < 1:
        raise EmotuneError(f"tune.trials: the study's trials in all, >= 1, got {cfg.trials}")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise EmotuneError(f"tune.minutes: > 0 or null (no time limit), got {cfg.minutes}")
    if cfg.max_epochs < 1 or cfg.startup_trials < 0:
        raise EmotuneError(f"tune.max_epochs >= 1 and tune.startup_trials >= 0, got {cfg.max_epochs} and "
                           f"{cfg.startup_trials}")


@dataclass(frozen=True)
class Matrix:
    """One training matrix as the stages see it: the group's name ("" for the main one, then "large",
    "generative"), its lists and its complete train settings."""

    name: str
    datasets: list[str]
    models: list[str]
    adapters: list[str]
    train: TrainConfig

    def runs(self):
        return [(d, m, a) for d in self.datasets for m in self.models for a in self.adapters]


@dataclass(frozen=True)
class Params:
    seed: int
    datasets: list[str]
    fetch: FetchConfig
    clean: CleanConfig
    audit: AuditConfig
    dataset_registry: dict[str, DatasetSpec]
    models: list[str] = field(default_factory=lambda: ["minilm"])
    adapters: list[AdapterName] = field(default_factory=lambda: ["lora"])
    adapter: AdapterHParams = field(default_factory=lambda: AdapterHParams())
    model_registry: dict[str, HubModel] = field(default_factory=dict)
    tokenize: TokenizeConfig = field(default_factory=lambda: TokenizeConfig())
    train: TrainConfig = field(default_factory=lambda: TrainConfig())
    eval: EvalConfig = field(default_factory=lambda: EvalConfig())
    large: RunGroup = field(default_factory=lambda: RunGroup())
    generative: RunGroup = field(default_factory=lambda: RunGroup())
    reference: RunGroup = field(default_factory=lambda: RunGroup())
    tune: TuneGroup = field(default_factory=lambda: TuneGroup())
    baseline: BaselineConfig = field(default_factory=lambda: BaselineConfig())
    # More training seeds for the main matrix (docs/seeds.md): every dataset x model x adapter of `datasets`,
    # `models`, `adapters` trains once more per seed listed, besides its run with `seed` (the primary seed,
    # whose paths and DVC stage names are those of a one-seed project). Empty: one seed.
    seeds: list[int] = field(default_factory=list)

    def seed_runs(self) -> list[tuple[str, str, str, int]]:
        """(dataset, model, adapter, seed) of every extra-seed run: the main matrix times `seeds`."""
        return [(*run, seed) for seed in self.seeds for run in self.matrices()[0].runs()]

    def matrices(self) -> list[Matrix]:
        """The main matrix (always first, even when empty), then the groups that have runs."""
        out = [Matrix("", self.datasets, self.models, self.adapters, self.train)]
        for name in GROUPS:
            group = getattr(self, name)
            train = build(TrainConfig, {**dataclasses.asdict(self.train), **group.train}, f"{name}.train")
            out.append(Matrix(name, self.group_datasets(name), group.models, group.adapters, train))
        return out[:1] + [m for m in out[1:] if m.runs()]

    def group_datasets(self, name: str) -> list[str]:
        """The datasets a group runs on: the reference runs every dataset of `datasets`, large and generative
        their lists (each among `datasets`)."""
        group = getattr(self, name)
        if group.datasets is None:  # large and generative without a list: off
            return [] if name in LISTED_GROUPS else list(self.datasets)
        return list(group.datasets)

    def zero_shot_datasets(self) -> list[str]:
        """The datasets of `datasets` the zero-shot baseline scores (its list among them; all when null)."""
        listed = self.baseline.zero_shot.datasets
        return [d for d in self.datasets if listed is None or d in listed]

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.dataset_registry:
            raise EmotuneError(f"unknown dataset {name!r}{did_you_mean(name, self.dataset_registry)}; "
                               f"known: {', '.join(sorted(self.dataset_registry))} (params.yaml: dataset_registry)")
        return self.dataset_registry[name]


GROUPS = ("large", "generative", "reference", "tune")
# Groups without a tokenize stage of their own: they train on the data/tokenized/<dataset>/<model> that
# the main matrix's or large's tokenize stage wrote (dvc.yaml train_generative, train_reference, tune).
REUSES_TOKENIZED = ("generative", "reference", "tune")
# The tune group's plans come from its search (stages/tune.py writes them), not from the plan stage.
PLANNED_BY_TUNE = "tune"


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
FLOAT_NOTATION = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\Z")


def _key(where: str, name) -> str:
    return f"{where}.{name}" if where else str(name)


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(map(repr, typing.get_args(tp)))
    if typing.get_origin(tp) in (list, dict):
        return str(tp).replace("typing.", "")
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str):
    """Check `value` against the annotation `tp`, building nested dataclasses; raise on mismatch."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = {}
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except EmotuneError as exc:
                errors[arg] = exc
        # A mapping was meant for the dataclass member: its error (unknown key...) is the useful one.
        for arg, exc in errors.items():
            if isinstance(value, dict) and dataclasses.is_dataclass(arg) or len(errors) == 1:
                raise exc
        words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
        hint = did_you_mean(value, words) if isinstance(value, str) else ""
        raise EmotuneError(f"{where}: {value!r} is none of {', '.join(_type_name(a) for a in args)}{hint}")
    if origin is Literal:
        if value not in args:
            raise EmotuneError(f"{where}: {value!r} is not allowed{did_you_mean(value, args)}; "
                               f"choose one of {', '.join(map(repr, args))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise EmotuneError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise EmotuneError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], where): _coerce(v, args[1], _key(where, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and FLOAT_NOTATION.match(value.strip()):
        # YAML 1.1 (PyYAML) reads `2e-5`, and DVC's `-S train.lr=2e-5` writes `2e-05`, as strings: an
        # exponent without a dot is not a float there, but it is one in every other reader.
        number = float(value)
        if math.isfinite(number):
            return number
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise EmotuneError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def check_prompt(prompt: PromptConfig, where: str) -> None:
    for key in ("system", "instruction"):
        value = getattr(prompt, key)
        if value is not None and not value.strip():
            raise EmotuneError(f"{where}.{key}: empty; give the text or null (the built-in one)")
    if prompt.instruction is not None:
        try:
            prompt.instruction.format(labels="a, b")
        except (KeyError, IndexError, ValueError) as exc:
            raise EmotuneError(f"{where}.instruction: {{labels}} is the only placeholder it may hold (write "
                               f"{{{{ and }}}} for literal braces); got {prompt.instruction!r} ({exc!r})") from None


def build(cls, data: Any, where: str, **extra):
    """Build dataclass `cls` from a params mapping: unknown keys, missing keys and wrong types fail."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EmotuneError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields or key in extra:
            raise EmotuneError(f"{_key(where, key)}: unknown key{did_you_mean(key, fields)}; "
                               f"allowed: {', '.join(k for k in fields if k not in extra)}")
    kwargs = dict(extra)
    for name, f in fields.items():
        if name in extra:
            continue
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], _key(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise EmotuneError(f"{where or 'top level'}: missing required key {name!r}")
    return cls(**kwargs)


def _check_dataset(spec: DatasetSpec, where: str) -> None:
    if len(set(spec.labels)) != len(spec.labels) or not spec.labels:
        raise EmotuneError(f"{where}.labels: must be a non-empty list of distinct names, got {spec.labels}")
    label_sources = [k for k in ("label_column", "label_columns") if getattr(spec, k)]
    if spec.files and len(label_sources) != 1 and spec.format != "lines":
        raise EmotuneError(f"{where}: give exactly one of label_column (one label, or a delimited list "
                           f"with label_delimiter) or label_columns (one 0/1 column per label)")
    if spec.label_columns and not spec.multi_label:
        raise EmotuneError(f"{where}: label_columns means multi-label; set task: multi_label")
    if spec.label_columns and sorted(spec.label_columns) != sorted(spec.labels):
        raise EmotuneError(f"{where}: label_columns {spec.label_columns} must name the same labels as "
                           f"labels {spec.labels}")
    if spec.allow_empty_labels and not spec.multi_label:
        raise EmotuneError(f"{where}.allow_empty_labels: only multi-label datasets have label sets; a "
                           f"single-label row always has one label")
    if spec.label_delimiter and not spec.multi_label:
        raise EmotuneError(f"{where}: label_delimiter means multi-label; set task: multi_label")
    if spec.official_metric == "jaccard" and not spec.multi_label:
        raise EmotuneError(f"{where}.official_metric: jaccard is for multi-label datasets")
    for split in (*spec.files, *spec.split_sizes, *(spec.hub.splits if spec.hub else ())):
        if split not in SPLITS:
            raise EmotuneError(f"{where}: unknown split {split!r}{did_you_mean(split, SPLITS)}; "
                               f"splits are {', '.join(SPLITS)}")
    if spec.files and ("train" not in spec.files or "test" not in spec.files):
        raise EmotuneError(f"{where}.files: needs at least train and test (validation is carved "
                           f"from train when absent)")
    if not spec.files and spec.hub is None:
        raise EmotuneError(f"{where}: give files (local CSV/TSV/JSONL) or hub (a Hub dataset id)")


# Trainer's report_to integrations a user may add (transformers/integrations); dvclive is always on.
REPORT_TO = ("dvclive", "wandb", "tensorboard", "mlflow", "comet_ml", "neptune", "clearml", "aim", "trackio",
             "swanlab")


def check_train(cfg: TrainConfig, where: str = "train") -> TrainConfig:
    for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "checkpoint_every", "processes"):
        if getattr(cfg, key) < 1:
            raise EmotuneError(f"{where}.{key}: must be >= 1, got {getattr(cfg, key)}")
    for key in ("max_train_examples", "threads"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise EmotuneError(f"{where}.{key}: must be >= 1 or null, got {getattr(cfg, key)}")
    if cfg.batch_size % cfg.processes:
        raise EmotuneError(f"{where}.batch_size: {cfg.batch_size} rows cannot be shared by {where}.processes = "
                           f"{cfg.processes} processes (batch_size is the global batch, split evenly between "
                           f"them); make batch_size a multiple of {cfg.processes}")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise EmotuneError(f"{where}.warmup_steps: must be >= 0 or null (warmup_ratio), got {cfg.warmup_steps}")
    stray = [r for r in cfg.report_to if r not in REPORT_TO]
    if stray:
        raise EmotuneError(f"{where}.report_to: {stray} unknown{did_you_mean(stray[0], REPORT_TO)}; choose from "
                           f"{', '.join(REPORT_TO)} (DVCLive always logs)")
    if cfg.lr is not None and not cfg.lr > 0:
        raise EmotuneError(f"{where}.lr: must be > 0 or null (the adapter's default), got {cfg.lr}")
    if cfg.head_lr is not None and not cfg.head_lr > 0:
        raise EmotuneError(f"{where}.head_lr: must be > 0 or null (emotune/adapter_table.py DEFAULT_HEAD_LR), "
                           f"got {cfg.head_lr}")
    if not 0 <= cfg.warmup_ratio < 1:
        raise EmotuneError(f"{where}.warmup_ratio: must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.weight_decay < 0 or cfg.max_grad_norm <= 0 or cfg.early_stopping_patience < 1:
        raise EmotuneError(f"{where}: weight_decay must be >= 0, max_grad_norm > 0 and "
                           f"early_stopping_patience >= 1")
    return cfg


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    try:
        return _parse(raw)
    except EmotuneError as exc:
        raise EmotuneError(f"{source}: {exc}") from None


def _parse(raw: dict) -> Params:
    if not isinstance(raw, dict):
        raise EmotuneError("expected a mapping at the top level")
    registry_raw = raw.get("dataset_registry") or {}
    if not isinstance(registry_raw, dict):
        raise EmotuneError("dataset_registry must be a mapping of dataset name -> definition")
    registry = {}
    for name, entry in registry_raw.items():
        check_path_segment(name, "dataset name", f"dataset_registry.{name}")
        if name in RESERVED_DATASET_NAMES:
            raise EmotuneError(f"dataset_registry.{name}: {name!r} is the name of a folder beside the datasets' "
                               f"(models/{name}/); rename the dataset, e.g. {name + '_data'!r}")
        spec = build(DatasetSpec, entry, f"dataset_registry.{name}", name=name)
        _check_dataset(spec, f"dataset_registry.{name}")
        registry[name] = spec
    sections = {k: v for k, v in raw.items() if k != "dataset_registry"}
    params = build(Params, sections, "", dataset_registry=registry)

    for name in params.model_registry:
        check_model_reference(name, f"model_registry.{name}")
    check_hparams(params.adapter, "adapter")
    check_train(params.train, "train")
    check_tune(params.tune)
    if not 0 < params.fetch.validation_fraction < 1:
        raise EmotuneError(f"fetch.validation_fraction: the share of train carved out as validation when a "
                           f"dataset has none, in (0, 1) (e.g. 0.1), got {params.fetch.validation_fraction}")
    _check_group_dataset_lists(params, raw)
    for prefix in ("", *GROUPS):
        section = getattr(params, prefix) if prefix else params
        for i, name in enumerate(section.datasets or ()):
            if name not in registry:
                raise EmotuneError(f"{_key(prefix, 'datasets')}[{i}] = {name!r} is not in dataset_registry"
                                   f"{did_you_mean(name, registry)}; known: {', '.join(sorted(registry))}")
        for i, name in enumerate(section.models):
            check_model_name(name, _key(prefix, f"models[{i}]"))
            try:
                model_kind(name, params.model_registry)
            except EmotuneError as exc:
                raise EmotuneError(f"{_key(prefix, 'models')}[{i}]: {exc}") from None
        for key in ("datasets", "models", "adapters"):
            values = getattr(section, key) or []
            if len(set(values)) != len(values):
                raise EmotuneError(f"{_key(prefix, key)}: lists {values} with a repeat; list each once")
    _check_groups_use_selected_datasets(params)
    if params.eval.threshold != "tuned" and not 0 < params.eval.threshold < 1:
        raise EmotuneError(f"eval.threshold: a probability in (0, 1) or 'tuned', got {params.eval.threshold}")
    if params.eval.latency_samples < 0:
        raise EmotuneError(f"eval.latency_samples: must be >= 0, got {params.eval.latency_samples}")
    matrices = params.matrices()  # builds and type-checks each group's train overrides
    for matrix in matrices:
        check_train(matrix.train, _key(matrix.name, "train"))
    _check_matrices_disjoint(matrices)
    if params.tokenize.max_length < 8:
        raise EmotuneError(f"tokenize.max_length: must be >= 8, got {params.tokenize.max_length}")
    check_prompt(params.tokenize.prompt, "tokenize.prompt")
    check_baseline(params)
    check_seeds(params)
    return params


def check_seeds(params: Params) -> None:
    """`seeds` lists the extra seeds: DVC matrices cannot leave an item out, so the primary seed in the list
    would be a second stage training the same run again."""
    for i, seed in enumerate(params.seeds):
        if isinstance(seed, bool) or seed < 0:
            raise EmotuneError(f"seeds[{i}]: {seed!r} is not a seed; seeds are integers >= 0")
        if seed == params.seed:
            kept = [s for s in params.seeds if s != params.seed]
            raise EmotuneError(f"seeds[{i}] = {seed} is `seed`, the primary seed every run already trains with; "
                               f"`seeds` lists the extra ones: set seeds to {_yaml_list(map(str, kept))} "
                               f"(`dvc exp run -S 'seeds={_yaml_list(map(str, kept))}'`)")
    if len(set(params.seeds)) != len(params.seeds):
        raise EmotuneError(f"seeds: lists {params.seeds} with a repeat; list each once")
    if params.seeds and SEEDS_FOLDER in params.dataset_registry:
        raise EmotuneError(f"dataset_registry.{SEEDS_FOLDER}: with `seeds`, the folder name {SEEDS_FOLDER!r} "
                           f"holds the extra seeds' runs (models/{SEEDS_FOLDER}/<seed>/...); rename the dataset")


# The groups whose dvc.yaml matrices iterate their own `datasets` list (DVC interpolation cannot intersect
# two lists, so a group that follows `datasets` iterates ${datasets} itself: reference, zero-shot).
LISTED_GROUPS = ("large", "generative", "tune")


def _check_group_dataset_lists(params: Params, raw: dict) -> None:
    """Which groups take a dataset list, as dvc.yaml builds their matrices (`raw`: params.yaml as read, where
    an explicit null differs from a key left out, which the group's default covers)."""
    if params.reference.datasets is not None:
        raise EmotuneError(
            f"reference.datasets: {params.reference.datasets!r}: the reference runs follow `datasets` (one for each "
            f"of its datasets: dvc.yaml train_reference iterates ${{datasets}}, and DVC cannot filter a matrix); "
            f"remove the key (or set it to null). To switch the reference runs off: "
            f"`dvc exp run -S 'reference.adapters=[]'`")
    for name in LISTED_GROUPS:  # dvc.yaml iterates ${<group>.datasets}: DVC cannot iterate null
        if isinstance(raw.get(name), dict) and "datasets" in raw[name] and raw[name]["datasets"] is None:
            raise EmotuneError(f"{name}.datasets: null, but dvc.yaml builds the {name} runs over this list (DVC "
                               f"stops with \"'Value' object is not iterable\"); list the datasets, or [] to switch "
                               f"the group off (`dvc exp run -S '{name}.datasets=[]'`)")


def _check_groups_use_selected_datasets(params: Params) -> None:
    """A large or generative group trains on data/audited/<dataset>, which only the fetch/clean/audit stages
    of `datasets` write (dvc.yaml foreach), so a group dataset outside `datasets` would fail in DVC after
    hours of training with `No such file or directory: data/audited/<dataset>`; and DVC cannot skip it
    (its matrix is the group's list as written). The reference runs and the zero-shot baseline follow
    `datasets` instead (their matrices iterate it), so they never name a dataset outside it."""
    for name in LISTED_GROUPS:
        group = getattr(params, name)
        stray = [d for d in group.datasets or () if d not in params.datasets]
        if stray and group.models and group.adapters:
            kept = [d for d in group.datasets or () if d in params.datasets]
            raise EmotuneError(
                f"{name}.datasets: {stray} {'is' if len(stray) == 1 else 'are'} not in datasets {params.datasets}; "
                f"the {name} runs train on data/audited/<dataset>, which only the datasets in `datasets` get. "
                f"Add {stray} to datasets, or set {name}.datasets to {kept} "
                f"(`dvc exp run -S '{name}.datasets={_yaml_list(kept)}'`; [] switches the group off)")


def group_notes(params: Params) -> list[str]:
    """One line for each listed dataset a group skips because `datasets` leaves it out (the zero-shot
    baseline scores its datasets among `datasets`): what the plan stage and `emotune check` print."""
    listed = params.baseline.zero_shot.datasets or []
    stray = [d for d in listed if d not in params.datasets]
    if not stray or not params.baseline.zero_shot.models:
        return []
    return [f"baseline.zero_shot.datasets: skipped {', '.join(stray)}, not in datasets "
            f"{_yaml_list(params.datasets)} (the zero-shot baseline scores its datasets among `datasets`)"]


# Names the outputs' folders hold beside the datasets' and models' own: models/checkpoints/<run>/ (resumable
# state) beside models/<dataset>/, metrics/eval/<dataset>/baseline/ (the baselines) beside .../<model>/.
RESERVED_DATASET_NAMES = ("checkpoints",)
RESERVED_MODEL_NAMES = ("baseline",)


def check_model_name(name: str, key: str) -> None:
    """A model of a matrix or of the zero-shot baseline: its name becomes output folders and stage names."""
    check_model_reference(name, key)
    if name in RESERVED_MODEL_NAMES:
        raise EmotuneError(f"{key}: {name!r} is the folder of the baselines' results (metrics/eval/<dataset>/"
                           f"{name}/); register the model under another name in model_registry")


def _yaml_list(values: list[str]) -> str:
    return "[" + ",".join(values) + "]"


def check_baseline(params: Params) -> None:
    cfg = params.baseline
    rnn = cfg.rnn
    for key in ("embedding_dim", "hidden_size", "layers", "epochs", "batch_size"):
        if getattr(rnn, key) < 1:
            raise EmotuneError(f"baseline.rnn.{key}: must be >= 1, got {getattr(rnn, key)}")
    if not 0 <= rnn.dropout < 1 or not rnn.lr > 0:
        raise EmotuneError(f"baseline.rnn: dropout in [0, 1) and lr > 0, got {rnn.dropout} and {rnn.lr}")
    if cfg.embedding_batch_size < 1 or cfg.zero_shot.batch_size < 1:
        raise EmotuneError("baseline.embedding_batch_size and baseline.zero_shot.batch_size: must be >= 1")
    for key, name in (("baseline.embedding_model", cfg.embedding_model), ("baseline.rnn.tokenizer", rnn.tokenizer)):
        try:
            model_kind(name, params.model_registry)
        except EmotuneError as exc:
            raise EmotuneError(f"{key}: {exc}") from None
    for i, name in enumerate(cfg.zero_shot.datasets or ()):  # like the large/generative groups' datasets
        if name not in params.dataset_registry:
            raise EmotuneError(f"baseline.zero_shot.datasets[{i}] = {name!r} is not in dataset_registry"
                               f"{did_you_mean(name, params.dataset_registry)}; known: "
                               f"{', '.join(sorted(params.dataset_registry))}")
    for i, name in enumerate(cfg.zero_shot.models):
        check_model_name(name, f"baseline.zero_shot.models[{i}]")
        try:
            model_kind(name, params.model_registry)
        except EmotuneError as exc:
            raise EmotuneError(f"baseline.zero_shot.models[{i}]: {exc}") from None
    if cfg.zero_shot.decode == "rank":
        scored = params.zero_shot_datasets() if cfg.zero_shot.models else []
        multi = [d for d in scored if params.dataset(d).multi_label]
        if multi:
            raise EmotuneError(f"baseline.zero_shot.decode: rank scores one label per text; {multi} are "
                               f"multi-label: use decode: generate, or list single-label datasets only in "
                               f"baseline.zero_shot.datasets (null scores every dataset of `datasets`)")
    for name in cfg.zero_shot.label_maps:
        if name not in cfg.zero_shot.models:
            raise EmotuneError(f"baseline.zero_shot.label_maps.{name}: not in baseline.zero_shot.models "
                               f"{cfg.zero_shot.models}{did_you_mean(name, cfg.zero_shot.models)}")
    for key in ("datasets", "models"):
        values = getattr(cfg.zero_shot, key) or []
        if len(set(values)) != len(values):
            raise EmotuneError(f"baseline.zero_shot.{key}: lists {values} with a repeat; list each once")


def _check_matrices_disjoint(matrices: list[Matrix]) -> None:
    """Two matrices must never produce the same output folder: DVC refuses overlapping outputs."""
    where = {}
    for matrix in matrices:
        for run in matrix.runs():
            if run in where:
                raise EmotuneError(f"the run {'/'.join(run)} is in both {where[run] or 'the main matrix'} and "
                                   f"{matrix.name or 'the main matrix'} (datasets x models x adapters); "
                                   f"remove it from one of them")
            where[run] = matrix.name
    # tokenize and tokenize_large each write data/tokenized/<dataset>/<model>; the generative and
    # reference groups have no tokenize stage of their own and read what one of them wrote.
    tokenized = {}
    for matrix in matrices:
        if matrix.name in REUSES_TOKENIZED:
            continue
        for pair in ((d, m) for d in matrix.datasets for m in matrix.models):
            if pair in tokenized:
                raise EmotuneError(f"dataset {pair[0]!r} with model {pair[1]!r} is in both the main matrix and "
                                   f"large; a (dataset, model) pair is tokenized by one of them: move its "
                                   f"adapters into one group")
            tokenized[pair] = matrix.name
    for matrix in (m for m in matrices if m.name in REUSES_TOKENIZED):
        for pair in ((d, m) for d in matrix.datasets for m in matrix.models):
            if pair not in tokenized:
                raise EmotuneError(f"{matrix.name}: dataset {pair[0]!r} with model {pair[1]!r} is not tokenized "
                                   f"by the main matrix or large; the {matrix.name} runs reuse that data: add "
                                   f"{pair[1]!r} to large.models and {pair[0]!r} to large.datasets (or to "
                                   f"models/datasets)")


def load_params(path: Path | None = None) -> Params:
    """The project's params.yaml (emotune/paths.py project_root), validated."""
    path = params_file() if path is None else Path(path)
    if not path.is_file():
        raise EmotuneError(f"{path}: no such file; run this in an emotune project (a folder holding params.yaml "
                           f"and dvc.yaml, or one below it), e.g. a clone of the emotune repository")
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EmotuneError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(Path(path).name))
