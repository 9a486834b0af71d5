"""Shared fixtures for the data-pipeline tests (config, fetch, clean, artifacts).

- `make_spec` / `make_params`: typed objects built through `parse_params`, exactly as a user's
  params.yaml entry would be, so every test also goes through the validation.
- `mirror`: the team's read-only raw-data mirror (`../shared/datasets` beside the checkout);
  tests that need it skip when it is absent.
- `project` + `run_stage`: a throw-away project (a folder with a params.yaml, no code) in which the
  stages run as subprocesses, `python -m stages.<name>` with the checkout on PYTHONPATH. The project is
  the working directory (emotune/paths.py), so every output lands inside it, never in the checkout.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emotune.config import parse_params

PROJECT = Path(__file__).resolve().parent.parent  # the checkout
MIRROR = (PROJECT / "../shared/datasets").resolve()

# The smallest params mapping parse_params accepts; sections left empty take their defaults.
MINIMAL_PARAMS = {"seed": 42, "datasets": [], "fetch": {}, "clean": {}, "audit": {}}

# Defaults for a user-declared dataset entry (a test overrides what it is about).
TOY_ENTRY = {"task": "single_label", "labels": ["joy", "anger", "sadness"], "official_metric": "accuracy"}


@pytest.fixture
def shipped_params() -> dict:
    """The project's params.yaml as a plain mapping (freshly read, so a test may change it)."""
    return yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def make_params():
    """make_params(registry={name: entry}, **sections) -> Params, via parse_params."""

    def make(registry: dict | None = None, **sections):
        raw = copy.deepcopy(MINIMAL_PARAMS)
        raw.update(copy.deepcopy(sections))
        raw["dataset_registry"] = copy.deepcopy(registry or {})
        return parse_params(raw)

    return make


@pytest.fixture
def make_spec(make_params):
    """make_spec(name="toy", **entry) -> DatasetSpec; unspecified keys come from TOY_ENTRY."""

    def make(name: str = "toy", **entry):
        return make_params({name: {**TOY_ENTRY, **entry}}).dataset(name)

    return make


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not (MIRROR / "INDEX.md").is_file():
        pytest.skip(f"the raw-data mirror is not available at {MIRROR} (a checkout needs "
                    f"../shared/datasets beside it for the integration tests)")
    return MIRROR


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """project(params: dict) -> Path of a fresh project folder holding that params.yaml."""

    def make(params: dict) -> Path:
        root = tmp_path_factory.mktemp("project")
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return root

    return make


def stage_env() -> dict:
    """The environment of a stage subprocess: offline, and the checkout's stages/ importable from a project
    folder that has no code (emotune itself is installed)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(PROJECT))
    return env


@pytest.fixture(scope="session")
def run_stage():
    """run_stage(root, "fetch", "emotion") -> CompletedProcess of `python -m stages.fetch emotion`."""

    def run(root: Path, stage: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", f"stages.{stage}", *args], cwd=root, env=stage_env(),
                              capture_output=True, text=True, timeout=120)

    return run


@pytest.fixture(scope="session")
def params():
    """The shipped params.yaml, parsed."""
    from emotune.config import load_params

    return load_params(PROJECT / "params.yaml")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(model_type) -> folder of a saved tiny base model (built once per session)."""
    from emotune.testing import save_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    made = {}

    def get(model_type: str):
        if model_type not in made:
            made[model_type] = save_tiny_model(model_type, root / model_type)
        return made[model_type]

    return get


@pytest.fixture(scope="session")
def toy_project(tmp_path_factory):
    """One throw-away git + DVC copy of the project, reproduced once (tests/toy_project.py), shared by the
    DVC-level tests: building it is the slow part (a full `dvc repro`), the tests only read it or run
    small experiments in it."""
    from toy_project import build_toy_project

    return build_toy_project(tmp_path_factory.mktemp("dvc-project"))

