"""Where a project's files live. The project is the folder holding params.yaml: the working directory
or the nearest folder above it (as git and dvc find theirs), never where this code is installed, so
one installed emotune serves any number of projects and a test's project is just a temporary folder
it runs in. A leaf: imports only emotune.errors.

Names from params.yaml become folder names of the outputs (data/raw/<dataset>/, models/<dataset>/<model>/
<adapter>/) and parts of DVC stage names (fetch@<dataset>): `check_path_segment` and
`check_model_reference` are their allowed forms, applied once at params validation; `check_inside` is
what every writer applies to the folder it writes into, so no name and no symlinked folder can put an
output outside the project."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from emotune.errors import EmotuneError

PARAMS_NAME = "params.yaml"
SPLITS = ("train", "validation", "test")
# Where a user's own dataset files live (relative to the project). Every fetch stage depends on this
# folder in dvc.yaml: DVC cannot look up `dataset_registry.<name>.files` inside a `foreach` (no nested
# interpolation, treeverse/dvc#5167), so one folder it can name is what makes edits to those files rerun
# the fetch.
USER_DATA = "data/user"
# The baseline rows of the leaderboard (emotune/baseline.py scores them), by the names of their files
# metrics/eval/<dataset>/baseline/<name>.json; the aggregate stage reads them without the baselines' code.
BASELINES = ("majority", "tfidf_lr", "tfidf_lr_all", "embed_lr", "bilstm")
ZERO_SHOT_PREFIX = "zero_shot_"
PREDICTIONS_FILE = "predictions.csv.gz"  # per test row: id, gold, prediction (emotune/stats.py)
# The extra seeds of params `seeds` (emotune/config.py): each one's plan, model and metrics live under a
# `seeds/<seed>/` folder of the same kind (data/plans/seeds/7/..., models/seeds/7/..., metrics/eval/seeds/7/...),
# so the primary seed keeps today's paths (and its dvc.lock entries) and `known_runs` can tell them apart.
SEEDS_FOLDER = "seeds"


# One folder or file name: letters, digits, '_', '.', '-', starting with a letter or digit (so never '.',
# '..' or a hidden name), no '/', no space (a stage's command line splits on spaces: `fetch.py: error:
# unrecognized arguments: reviews` for "my reviews"), at most 100 characters.
PATH_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
SEGMENT_FORM = ("letters, digits, '_', '.' and '-', starting with a letter or digit, at most 100 characters "
                "(no '/', '..', spaces or absolute paths)")


def safe_name(name: str) -> str:
    """`name` with what a path segment cannot hold replaced by '_': the fix a message suggests."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._-")[:100] or "my_name"


def check_path_segment(name, what: str, key: str) -> str:
    """`name`, when it can be one folder name of an output path and part of a DVC stage name (dataset
    names, run ids); else an error naming `key` (where params.yaml sets it), the allowed form and a fix."""
    if isinstance(name, str) and PATH_SEGMENT.match(name):
        return name
    raise EmotuneError(f"{key}: {name!r} cannot be a {what}: it becomes a folder name of the outputs and part "
                       f"of DVC stage names, so it must be {SEGMENT_FORM}; e.g. {safe_name(name)!r}")


def check_model_reference(name, key: str) -> str:
    """A model as params.yaml lists it: a registry name (minilm), a Hub id owner/name[@revision], or a folder
    inside the project (models/base/my-model). Its '/'-separated parts become nested output folders
    (data/tokenized/<dataset>/<owner>/<name>/), so each part must be a path segment."""
    path, at, revision = str(name).partition("@")
    parts = [*path.split("/"), *([revision] if at else [])]
    if isinstance(name, str) and all(PATH_SEGMENT.match(p) for p in parts):
        return name
    raise EmotuneError(f"{key}: {name!r} cannot name a model: give a registry name (minilm), a Hub id "
                       f"owner/name[@revision], or a folder relative to the project (models/base/my-model); "
                       f"it names the output folders, so each '/'-separated part must be {SEGMENT_FORM}")


def check_inside(path: Path, root: Path | None = None) -> Path:
    """`path`, when the folder it is written into resolves inside the project `root` (default: the working
    directory's project) with '..' applied and symlinks followed; else an error. That folder is the path's
    parent: the output itself may be a symlink (DVC links outputs to its cache, and removes them before a
    stage runs), which the atomic writers replace, never write through."""
    root = (project_root() if root is None else Path(root)).resolve()
    folder = Path(os.path.abspath(path)).parent.resolve()
    if folder != root and root not in folder.parents:
        raise EmotuneError(f"refusing to write {path}: its folder resolves to {folder}, outside the project "
                           f"{root} (a '..' in a name, or a symlinked folder pointing elsewhere). Keep the "
                           f"outputs in the project: replace the symlink by a folder (to keep DVC's data on "
                           f"another disk, move its cache there: `dvc cache dir <folder>`)")
    return Path(path)


def check_output(path: Path) -> Path:
    """`check_inside` for a path named inside the working directory's project (a writer's output); a path
    elsewhere (a test's temporary folder, `emotune export --out`) is the caller's choice, left alone."""
    root = project_root()
    absolute = Path(path) if Path(path).is_absolute() else Path.cwd() / path
    if absolute.parts[:len(root.parts)] == root.parts:
        check_inside(absolute, root)
    return Path(path)


def project_root(start: Path | None = None) -> Path:
    """The nearest folder from `start` (default: the working directory) upwards that holds params.yaml;
    `start` itself when none does (a command then says params.yaml is missing there)."""
    start = Path.cwd() if start is None else Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / PARAMS_NAME).is_file():
            return folder
    return start


def params_file(root: Path | None = None) -> Path:
    return (root or project_root()) / PARAMS_NAME


def data_dir(kind: str, dataset: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "data" / kind / dataset


def metrics_path(kind: str, dataset: str, suffix: str = ".json", root: Path | None = None) -> Path:
    return (root or project_root()) / "metrics" / kind / f"{dataset}{suffix}"


def plans_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "data" / "plans"


def models_cache(root: Path | None = None) -> Path:
    """Where packaged models are assembled once (git-ignored)."""
    return (root or project_root()) / ".cache" / "models"


def seed_part(seed: int | None) -> tuple[str, ...]:
    """The folders an extra seed's files live under ("seeds", "<seed>"); none for the primary seed (None)."""
    return () if seed is None else (SEEDS_FOLDER, str(seed))


def plan_path(dataset: str, model: str, adapter: str, root: Path | None = None, seed: int | None = None) -> Path:
    """The plan stage's file for one run (read by train and evaluate); `seed`: an extra seed's run."""
    return plans_dir(root).joinpath(*seed_part(seed)) / dataset / model / f"{adapter}.json"


def tokenize_plan_path(dataset: str, model: str, root: Path | None = None) -> Path:
    return plans_dir(root) / dataset / model / "tokenize.json"


def zero_shot_plan_path(dataset: str, model: str, root: Path | None = None) -> Path:
    """The plan stage's file saying whether the zero-shot baseline scores `model` on `dataset` (read by
    the baseline_zero_shot stage), beside the metrics file's name (metrics/eval/<dataset>/baseline/)."""
    return plans_dir(root) / dataset / "baseline" / f"{zero_shot_name(model)}.json"


def tokenized_dir(dataset: str, model: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "data" / "tokenized" / dataset / model


def tokenize_metrics_path(dataset: str, model: str, root: Path | None = None) -> Path:
    return (root or project_root()) / "metrics" / "tokenize" / dataset / f"{model}.json"


@dataclass(frozen=True)
class RunPaths:
    """Where one dataset x model x adapter run reads and writes."""

    plan: Path
    data: Path  # data/tokenized/<dataset>/<model>
    model: Path
    checkpoints: Path
    live: Path
    metrics: Path


def run_paths(dataset: str, model: str, adapter: str, root: Path | None = None, seed: int | None = None) -> RunPaths:
    """`seed`: one of params `seeds` (the extra seeds); None: the primary seed's run (params `seed`). Checked
    inside `root` (`check_inside`): the train stage writes the model, its checkpoints and DVCLive's files
    itself (transformers Trainer), not through emotune/atomic.py."""
    root = root or project_root()
    part = seed_part(seed)
    paths = RunPaths(
        plan=plan_path(dataset, model, adapter, root, seed),
        data=tokenized_dir(dataset, model, root),  # tokenization does not depend on the seed
        model=root.joinpath("models", *part) / dataset / model / adapter,
        checkpoints=root.joinpath("models", "checkpoints", *part) / dataset / model / adapter,
        live=root.joinpath("metrics", "train", *part) / dataset / model / adapter,
        metrics=root.joinpath("metrics", "train", *part) / dataset / model / f"{adapter}.json",
    )
    for written in (paths.model, paths.checkpoints, paths.live, paths.metrics):
        check_inside(written, root)
    return paths


def tuned_plan_path(dataset: str, model: str, adapter: str, root: Path | None = None) -> Path:
    """A tune-group run's plan: written by its tune stage from the search's best trial, not by the plan stage."""
    return (root or project_root()) / "data" / "plans_tuned" / dataset / model / f"{adapter}.json"


def tuned_run_paths(dataset: str, model: str, adapter: str, root: Path | None = None) -> RunPaths:
    """A tune-group run: its plan comes from the tune stage; everything else is where any run keeps it."""
    from dataclasses import replace

    return replace(run_paths(dataset, model, adapter, root), plan=tuned_plan_path(dataset, model, adapter, root))


@dataclass(frozen=True)
class TunePaths:
    """Where one run's search keeps its study (a persistent DVC output) and reports it."""

    study: Path  # folder: study.db (SQLite, unless params tune.storage names a shared database)
    metrics: Path  # the search's summary (dvc metrics)
    plots: Path  # folder: trials.csv, expected_best.csv (dvc plots)


def tune_paths(dataset: str, model: str, adapter: str, root: Path | None = None) -> TunePaths:
    root = root or project_root()
    return TunePaths(study=root / "data" / "tune" / dataset / model / adapter,
                     metrics=root / "metrics" / "tune" / dataset / model / f"{adapter}.json",
                     plots=root / "metrics" / "tune" / dataset / model / adapter)


def eval_paths(dataset: str, model: str, adapter: str, root: Path | None = None,
               seed: int | None = None) -> tuple[Path, Path]:
    """(metrics JSON, plots folder) of a run or a baseline; `seed`: an extra seed's run."""
    base = (root or project_root()).joinpath("metrics", "eval", *seed_part(seed)) / dataset / model
    return base / f"{adapter}.json", base / adapter


def predictions_path(dataset: str, model: str, adapter: str, root: Path | None = None) -> Path:
    """The per-row predictions of a run or a baseline (emotune/stats.py writes and reads them), in its
    plots folder: git-tracked, a few KB."""
    return eval_paths(dataset, model, adapter, root)[1] / PREDICTIONS_FILE


def zero_shot_name(model: str) -> str:
    """The leaderboard name of a zero-shot row, as dvc.yaml spells its metrics file
    (metrics/eval/<dataset>/baseline/zero_shot_<model>.json; a Hub id's "/" makes a sub-folder)."""
    return ZERO_SHOT_PREFIX + model
