"""Run the project's own pipeline as one DVC experiment in a clone beside it, for the benches that measure
opt-in pieces of the committed run (bench/seeds_main_matrix.py, bench/reference_models.py).

The clone (`<project>-<suffix>` beside the project, so `fetch.mirror: ../shared/datasets` resolves the same)
uses the project's DVC cache (`dvc cache dir --local`), so every committed output is checked out, not
retrained, and `dvc exp run -S ...` trains only what the overrides add. The stages DVC ran are read from its
output, which is how a bench shows that nothing else was retrained.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import common

RAN = re.compile(r"Running stage '([^']+)'")


@dataclass(frozen=True)
class ExperimentRun:
    workdir: Path
    minutes: float | None  # None: a finished experiment re-read (--from-exp)
    stages_ran: list[str]


def sh(cmd: list[str], cwd: Path, log: list[str] | None = None) -> None:
    """Run a command with this interpreter's environment first on PATH (its `dvc`), echoing its output."""
    print("+ " + " ".join(cmd), flush=True)
    env = {**common.bench_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print(line, end="", flush=True)
        if log is not None:
            log.append(line)
    if proc.wait():
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}) in {cwd}")


def default_workdir(project: Path, suffix: str) -> Path:
    return project.parent / f"{project.name}-{suffix}"


def prepare_clone(project: Path, workdir: Path) -> None:
    """A clone of the project's HEAD beside it, on the project's DVC cache, its outputs checked out."""
    if workdir.exists():
        raise SystemExit(f"{workdir}: exists; remove it, or re-read it with --from-exp {workdir}")
    sh(["git", "clone", "-q", str(project), str(workdir)], project)
    sh(["dvc", "cache", "dir", "--local", str(project / ".dvc" / "cache")], workdir)
    sh(["dvc", "checkout", "-q"], workdir)


def overrides(settings: dict[str, object]) -> list[str]:
    """`-S key=value` arguments for `dvc exp run`; lists in DVC's (Hydra's) `[a,b]` spelling."""
    def spell(value) -> str:
        return f"[{','.join(map(str, value))}]" if isinstance(value, (list, tuple)) else str(value)
    return [arg for key, value in settings.items() for arg in ("-S", f"{key}={spell(value)}")]


def run_experiment(project: Path, workdir: Path, name: str, settings: dict[str, object]) -> ExperimentRun:
    """Clone the project to `workdir` and `dvc exp run -n name` there with `settings`."""
    prepare_clone(project, workdir)
    start = time.perf_counter()
    log: list[str] = []
    sh(["dvc", "exp", "run", "-n", name, *overrides(settings)], workdir, log)
    return ExperimentRun(workdir, round((time.perf_counter() - start) / 60, 1),
                         sorted({m.group(1) for line in log for m in RAN.finditer(line)}))


def reread(workdir: Path, previous: Path) -> ExperimentRun:
    """A finished experiment's clone, re-read (--from-exp) without running anything. DVC's output is gone, so
    its minutes and the stages it ran come from the bench's previous result for the same clone (`previous`);
    without one they are unknown (None, [])."""
    workdir = Path(workdir).resolve()
    old = common.load_json(previous) if Path(previous).is_file() else {}
    if old.get("workdir") != str(workdir):
        return ExperimentRun(workdir, None, [])
    return ExperimentRun(workdir, old.get("experiment_minutes"), list(old.get("stages_ran") or []))


@dataclass(frozen=True)
class Paired:
    """One run minus another on the same test rows, as the bench JSONs record it (rounded to 4 digits)."""
    difference: float
    ci95: dict
    verdict: str  # better | worse | within noise
    p_value: float


def paired(run, other, metric: str) -> Paired:
    """`run` minus `other` (emotune.stats.Predictions of the same test rows): the leaderboard's paired
    bootstrap (emotune/stats.py)."""
    from emotune import stats

    difference = stats.paired_difference(run, other, metric)
    return Paired(round(difference.difference, 4), difference.as_json(), difference.verdict,
                  round(difference.p_value, 4))


def record(run: ExperimentRun, project: Path) -> dict[str, object]:
    """What every experiment bench's JSON says about the experiment: the project and commit it ran on, the
    clone, its minutes and the stages DVC ran."""
    return {"project": str(project), "project_commit": commit(run.workdir), "workdir": str(run.workdir),
            "experiment_minutes": run.minutes, "stages_ran": run.stages_ran}


def commit(checkout: Path) -> str:
    """The commit the experiment ran on: the clone's HEAD (`dvc exp run` leaves it where it was)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True,
                          text=True).stdout.strip()


def run_predictions(root: Path, dataset: str, model: str, adapter: str):
    """A run's evaluate report and its per-row test predictions under `root` (a project or an experiment's
    clone), read the way emotune/aggregate.py reads them, for the paired comparisons of the benches."""
    from emotune import aggregate, paths

    report = common.load_json(paths.eval_paths(dataset, model, adapter, root)[0],
                              f"did the experiment run evaluate@{dataset}-{model}-{adapter}?")
    rows = aggregate.row_predictions({"dataset": dataset, "model": model, "adapter": adapter}, root)
    if rows is None:
        raise SystemExit(f"{paths.predictions_path(dataset, model, adapter, root)}: missing; rerun its evaluate stage")
    return report, rows
