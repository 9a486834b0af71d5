"""A trained run: finding it (`resolve_run`, `best_run`, `known_runs`, the `run` / `--best` arguments every
command takes), loading it (`Run.load`), and what it was trained with (its clean settings, its tuned
thresholds). Shared by `emotune predict`, `export` and `explain`."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from emotune.adapter_table import adapter_entry
from emotune.adapters import METADATA_FILE  # (the generative recipe writes the same file)
from emotune.atomic import read_json
from emotune.config import CleanConfig, build, load_params
from emotune.errors import EmotuneError, did_you_mean
from emotune.paths import SEEDS_FOLDER, project_root
from emotune.plan import RunPlan

DEFAULT_THRESHOLD = 0.5


def warn(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def quiet_transformers() -> None:
    """Commands print what concerns the user only: loading a run rebuilds the base model first, and
    transformers' report that its head is missing (it comes from the run's files next) and its
    weight-loading bars would only alarm."""
    import warnings

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A trained run: models/<dataset>/<model>/<adapter>/ under `root`. The model name may hold slashes
    (a local folder or a Hub id), so a run name splits as first / middle / last."""

    dataset: str
    model: str
    adapter: str
    root: Path = field(default_factory=project_root)

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.model}/{self.adapter}"

    @property
    def folder(self) -> Path:
        return self.root / "models" / self.dataset / self.model / self.adapter

    @property
    def generative(self) -> bool:
        return adapter_entry(self.adapter).generative

    @cached_property
    def plan(self) -> RunPlan:
        """The plan the run was trained with (kept in its run card), validated."""
        return RunPlan.from_json(self.card["plan"], str(self.folder / "run.json"))

    @cached_property
    def metadata(self) -> dict:
        return read_json(self.folder / METADATA_FILE)

    @cached_property
    def card(self) -> dict:
        """run.json, the run card the train stage writes (plan, data checksums, metrics, versions)."""
        path = self.folder / "run.json"
        if not path.exists():
            raise EmotuneError(f"{path}: missing; {self.folder} was not written by the train stage. Retrain "
                               f"it with `dvc repro train@...` (or `python -m stages.train {self.dataset} "
                               f"{self.model} {self.adapter}`)")
        return read_json(path)

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def multi_label(self) -> bool:
        return self.plan.multi_label

    @property
    def max_length(self) -> int:
        """The truncation the run was trained with (tokenize.max_length, capped by the model)."""
        return int(self.card["data"]["max_length"])

    def path(self, kind: str, suffix: str = ".json") -> Path:
        """metrics/<kind>/<dataset>/<model>/<adapter><suffix>, where evaluate/explain put per-run files."""
        return self.root / "metrics" / kind / self.dataset / self.model / f"{self.adapter}{suffix}"

    def load(self, device: str | None = None):
        """The trained model for inference: emotune/adapters.py TrainedModel (classifiers) or
        emotune/generative.py TrainedGenerative. `device` None: the CPU."""
        from emotune.plan import model_source

        _, registry = model_source(self.plan.model)  # Hub models: the pinned revision
        if self.generative:
            from emotune.generative import load_generative

            return load_generative(self.folder, registry=registry, device=device)
        from emotune.adapters import load_trained

        return load_trained(self.folder, registry=registry, device=device)


def known_runs(root: Path | None = None) -> list[str]:
    root = project_root() if root is None else Path(root)
    models = Path(root) / "models"
    found = sorted(p.parent.relative_to(models).as_posix() for p in models.rglob(METADATA_FILE)) \
        if models.is_dir() else []
    # models/seeds/<seed>/...: the extra seeds' runs (params `seeds`), not <dataset>/<model>/<adapter> names
    return [r for r in found if not r.startswith(("checkpoints/", f"{SEEDS_FOLDER}/"))]


def resolve_run(name: str, root: Path | None = None) -> Run:
    root = project_root() if root is None else Path(root)
    parts = name.strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise EmotuneError(f"run {name!r}: expected <dataset>/<model>/<adapter>, e.g. emotion/minilm/lora "
                           f"(or --best <dataset>)")
    run = Run(parts[0], "/".join(parts[1:-1]), parts[-1], Path(root))
    if not (run.folder / METADATA_FILE).exists():
        runs = known_runs(root)
        listed = (f"trained runs: {', '.join(runs)}" if runs else
                  "no run is trained yet: `dvc repro` trains the runs of params.yaml")
        raise EmotuneError(f"{run.folder.relative_to(run.root)}: no trained run {name!r}"
                           f"{did_you_mean(name, runs)}; {listed}")
    return run


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run a command works on: a positional <dataset>/<model>/<adapter>, or --best <dataset>."""
    parser.add_argument("run", nargs="?", help="<dataset>/<model>/<adapter>, a folder under models/")
    parser.add_argument("--best", metavar="DATASET", help="the best run of DATASET on metrics/leaderboard.json")


def run_from_args(args: argparse.Namespace, root: Path) -> Run:
    if bool(args.run) == bool(args.best):
        raise EmotuneError("name one run: <dataset>/<model>/<adapter>, or --best <dataset>")
    return best_run(args.best, root) if args.best else resolve_run(args.run, root)


def best_run(dataset: str, root: Path | None = None) -> Run:
    """The row of metrics/leaderboard.json with this dataset, kind "run" and best true."""
    root = project_root() if root is None else Path(root)
    path = Path(root) / "metrics" / "leaderboard.json"
    if not path.exists():
        raise EmotuneError(f"{path.relative_to(root)}: missing; `dvc repro` writes it (the aggregate stage), "
                           f"or name a run as <dataset>/<model>/<adapter>")
    rows = read_json(path).get("rows", [])
    best = [r for r in rows if r.get("dataset") == dataset and r.get("kind") == "run" and r.get("best")]
    if not best:
        datasets = sorted({r.get("dataset") for r in rows if r.get("kind") == "run"})
        raise EmotuneError(f"{path.relative_to(root)}: no best run for dataset {dataset!r}"
                           f"{did_you_mean(dataset, datasets)}; it ranks {', '.join(datasets) or 'no runs'}")
    row = best[0]
    return resolve_run(f"{row['dataset']}/{row['model']}/{row['adapter']}", root)


# ---------------------------------------------------------------------------------------------
# What predictions need besides the model: text normalisation and thresholds
# ---------------------------------------------------------------------------------------------
def clean_settings(dataset: str, root: Path | None = None) -> tuple[CleanConfig, bool]:
    """(clean settings, tweets flag) that produced the run's training data: dvc.lock records the params
    the clean stage last ran with (params.yaml may have been edited since); params.yaml otherwise."""
    root = project_root() if root is None else Path(root)
    import yaml

    lock = Path(root) / "dvc.lock"
    if lock.exists():
        stage = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(f"clean@{dataset}")
        params = (stage or {}).get("params", {}).get("params.yaml", {})
        if "clean" in params and f"dataset_registry.{dataset}" in params:
            clean = build(CleanConfig, params["clean"], f"{lock.name}: clean@{dataset}.clean")
            return clean, bool(params[f"dataset_registry.{dataset}"].get("tweets", False))
    params = load_params(Path(root) / "params.yaml")
    return params.clean, params.dataset(dataset).tweets


def normaliser(dataset: str, root: Path | None = None) -> Callable[[str], str]:
    root = project_root() if root is None else Path(root)
    from emotune.text import normalise

    cfg, tweets = clean_settings(dataset, root)
    return lambda text: normalise(text, cfg, tweets)


def thresholds(run: Run) -> np.ndarray | None:
    """Per-class decision thresholds of a multi-label run, tuned on validation by the evaluate stage
    (metrics/eval/<dataset>/<model>/<adapter>.json); 0.5 each, with a note, when there is no such file."""
    if not run.multi_label:
        return None
    path = run.path("eval")
    if not path.exists():
        warn(f"{path.relative_to(run.root)} is missing (run the evaluate stage: `dvc repro`); using threshold "
             f"{DEFAULT_THRESHOLD} for every label")
        return np.full(len(run.labels), DEFAULT_THRESHOLD)
    report = read_json(path)
    if report.get("labels") != run.labels:
        raise EmotuneError(f"{path}: labels {report.get('labels')} differ from the run's {run.labels}; the "
                           f"evaluation is stale: rerun it (`dvc repro`)")
    values = report.get("thresholds")
    if values is None:
        return np.full(len(run.labels), DEFAULT_THRESHOLD)
    if len(values) != len(run.labels):
        raise EmotuneError(f"{path}: thresholds has {len(values)} values for {len(run.labels)} labels")
    return np.asarray(values, dtype=np.float64)


def official_interval(report: dict) -> list[float] | None:
    """[low, high] of the official metric's bootstrap 95% interval over test rows, as the evaluate stage
    writes it (emotune/reports.py: "official_ci95": {"low", "high"}); None for a report without one."""
    interval = report.get("official_ci95")
    return [interval["low"], interval["high"]] if isinstance(interval, dict) else None


def evaluation_facts(report_path: Path) -> dict:
    """{"official_metric", "test_value", "interval"} from the evaluate stage's report; {} without one."""
    if not report_path.is_file():
        return {}
    report = read_json(report_path)
    metric = report.get("official_metric")
    return {"official_metric": metric, "test_value": report.get("official"), "test_rows": report.get("test_rows"),
            "interval": official_interval(report)}
