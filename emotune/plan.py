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
from pathlib import Path

from emotune.adapter_table import DEFAULT_HEAD_LR, adapter_entry, names
from emotune.config import Params
from emotune.errors import EmotuneError
from emotune.paths import plan_path, plans_dir, project_root, tokenize_plan_path


def check_model_path_name(model: str) -> None:
    """A model name becomes part of output paths (data/tokenized/<dataset>/<model>/): a local folder
    must be given relative to the repository, inside it."""
    parts = Path(model).parts
    if Path(model).is_absolute() or ".." in parts or model.startswith("~"):
        raise EmotuneError(f"models: {model!r}: a local model folder must be a relative path inside the "
                           f"repository (it names the output folders), e.g. models/base/my-model")


def model_entry(model: str, params: Params) -> dict:
    """What identifies a model's weights, without loading it: the registry pins for packaged and Hub
    models, the sha256 of the safetensors files for a local folder (so retraining follows a change)."""
    from emotune.model_registry import resolve_model
    from emotune.models import HUB_MODELS, PACKAGED, model_kind

    check_model_path_name(model)
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


def run_plan(params: Params, matrix, dataset: str, model: dict, adapter: str) -> dict:
    spec = params.dataset(dataset)
    hparams = dataclasses.asdict(params.adapter)
    train = dataclasses.asdict(matrix.train)
    entry = adapter_entry(adapter)
    train["lr"] = matrix.train.lr if matrix.train.lr is not None else entry.lr
    train["head_lr"] = head_lr(adapter, train["lr"], matrix.train.head_lr)
    return {
        "dataset": {"name": spec.name, "task": spec.task, "labels": list(spec.labels),
                    "official_metric": spec.official_metric},
        "model": model,
        "adapter": {"name": adapter, "hparams": {k: hparams[k] for k in entry.hparams}},
        "train": train,
        # "DEFAULT_LR": the adapter table's `lr` (the name the plans have always said)
        "lr_source": "train.lr" if matrix.train.lr is not None else "DEFAULT_LR",
        "matrix": matrix.name or "main",
        "seed": params.seed,
    }


def tokenize_plan(params: Params, dataset: str, model: dict) -> dict:
    spec = params.dataset(dataset)
    return {"dataset": {"name": spec.name, "task": spec.task, "labels": list(spec.labels)},
            "model": model, "tokenize": dataclasses.asdict(params.tokenize)}


def make_plans(params: Params) -> dict[Path, dict]:
    """{relative path: plan} for every dataset x model (tokenize) and dataset x model x adapter (train) of
    every matrix (main, large, generative). Every combination is checked here, before any training."""
    plans = {}
    entries = {}
    for matrix in params.matrices():
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
    return plans
