"""tune: an Optuna search for one dataset x model x adapter run of the `tune` group (params `tune:`,
docs/tuning.md).

    python -m stages.tune <dataset> <model> <adapter>

Each trial is an ordinary emotune run (emotune/train.py `train`, the same Trainer, recipe, head LR and
early stopping) with the settings a seeded TPE sampler picks from the adapter's search space
(emotune/adapter_table.py `Adapter.search`, plus epochs up to `tune.max_epochs`). It is scored on the
validation split's official metric, the best epoch's, as the run itself keeps it. Trials see a data folder
that holds only the train and validation splits: no test row can reach the objective. After each epoch the
trial reports its validation score and the pruner (median or successive halving) may stop it.

The study lives in Optuna's storage: a SQLite file in data/tune/<dataset>/<model>/<adapter>/ (a DVC output
with `persist: true`, so a `dvc repro` with more `tune.trials` continues it), or the database of
`tune.storage`, which several machines can share: each runs trials until the study holds `tune.trials`
(Optuna's MaxTrialsCallback). A change to what is searched (the base settings, the space, the epochs cap)
starts a new study under another name in the same storage.

The best trial's settings become the run's plan (data/plans_tuned/..., emotune/plan.py `RunPlan.tuned_by`),
which the train_tuned stage trains: with the same seed and settings that retrain is the best trial again
(tests/test_tune.py checks the validation score), and trials keep no model, so a study shared by several
machines, or one of a hundred full fine-tuning trials, costs no disk.

Reported with the study: every trial (trials.csv) and the expected best validation score as a function of
the number of trials (expected_best.csv), the estimator of Dodge et al. 2019, "Show Your Work: Improved
Reporting of Experimental Results" (EMNLP).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from transformers import TrainerCallback

from emotune.adapter_table import SearchRange, adapter_entry
from emotune.atomic import atomic_dir, write_atomic, write_json
from emotune.config import PLANNED_BY_TUNE, Params, TuneGroup
from emotune.errors import EmotuneError
from emotune.paths import RunPaths, TunePaths
from emotune.plan import RunPlan, TunedBy, model_entry, run_plan

STUDY_FILE = "study.db"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# The splits a trial may read: the tokenize stage's files of any other split (test) are not in its folder.
TRIAL_SPLITS = ("train", "validation")


# ---------------------------------------------------------------------------------------------
# The search space and the base plan
# ---------------------------------------------------------------------------------------------
def search_space(adapter: str, max_epochs: int) -> tuple[SearchRange, ...]:
    """The adapter's declared ranges and the number of epochs, 1..max_epochs."""
    return (*adapter_entry(adapter).search, SearchRange("epochs", 1, max_epochs, integer=True))


def base_plan(params: Params, dataset: str, model: str, adapter: str) -> RunPlan:
    """The run's plan before the search: the tune group's train settings (train + tune.train), the
    `adapter:` hyper-parameters and the adapter's default LR; the search overrides the keys it searches."""
    matrix = next((m for m in params.matrices() if m.name == PLANNED_BY_TUNE), None)
    if matrix is None or (dataset, model, adapter) not in matrix.runs():
        raise EmotuneError(f"{dataset}/{model}/{adapter} is not a run of the tune group (params tune.datasets x "
                           f"tune.models x tune.adapters)")
    return run_plan(params, matrix, dataset, model_entry(model, params), adapter)


def suggest(trial: optuna.Trial, dim: SearchRange):
    if dim.choices:
        return trial.suggest_categorical(dim.key, list(dim.choices))
    if dim.integer:
        return trial.suggest_int(dim.key, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(dim.key, dim.low, dim.high, log=dim.log)


def current_values(plan: RunPlan, space: tuple[SearchRange, ...]) -> dict:
    """The plan's own settings of the searched keys that lie inside the space: the first trial of a new study.
    bench/tune_adapters.py measured why: on TweetEval emotion (1,000 rows) none of 5 TPE trials reached IA3's
    default (validation macro F1 0.573 best vs 0.597), so a small search without it ends worse than no search."""
    out = {}
    for dim in space:
        value = getattr(plan.train if dim.section == "train" else plan.hparams, dim.key)
        inside = value in dim.choices if dim.choices else dim.low <= value <= dim.high
        if value is not None and inside:
            out[dim.key] = value
    return out


def study_name(plan: RunPlan, space: tuple[SearchRange, ...]) -> str:
    """The run's name and a hash of what is searched: the same search continues one study, another one
    (other base settings or ranges) starts its own."""
    blob = json.dumps({"plan": plan.to_json(), "space": [dataclasses.asdict(d) for d in space]}, sort_keys=True)
    return f"{plan.name}@{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def storage_url(cfg: TuneGroup, paths: TunePaths) -> str:
    return cfg.storage or f"sqlite:///{paths.study / STUDY_FILE}"


def make_pruner(cfg: TuneGroup) -> optuna.pruners.BasePruner:
    """Per-epoch pruning. median: stop a trial whose epoch score is below the median of earlier trials at
    that epoch (after `startup_trials` trials); successive_halving: keep the best third at epochs 1, 3, 9..."""
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=0)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------------------------------------
# One trial
# ---------------------------------------------------------------------------------------------
class ReportEpochs(TrainerCallback):
    """After each validation pass (one per epoch), report the official metric to the trial and stop the
    run if the pruner says so. Optuna's TrialPruned leaves Trainer.train and train() (no outputs).

    The report's step is the trial's progress through its LR schedule on a `max_epochs` scale, not its epoch:
    a 1-epoch trial has decayed its LR to zero after epoch 1 while a 3-epoch trial is still near its peak,
    so their epoch-1 scores are not comparable (bench/tune_adapters.py, IA3 on TweetEval emotion: 0.48
    macro F1 after a finished 1-epoch schedule, 0.19-0.31 after epoch 1 of 2- and 3-epoch ones). The
    pruner compares trials at equal progress instead."""

    def __init__(self, trial: optuna.Trial, metric: str, epochs: int, max_epochs: int):
        self.trial, self.metric, self.epochs, self.max_epochs = trial, metric, epochs, max_epochs

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        epoch = round(state.epoch)
        value = metrics[f"eval_{self.metric}"]
        self.trial.report(value, schedule_step(epoch, self.epochs, self.max_epochs))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch} of {self.epochs}: validation {self.metric} {value:.4f}")


def schedule_step(epoch: int, epochs: int, max_epochs: int) -> int:
    """Epoch `epoch` of an `epochs`-epoch schedule as a step on the `max_epochs` scale (1..max_epochs)."""
    return max(1, round(epoch * max_epochs / epochs))


def trial_data(data_dir: Path, folder: Path) -> Path:
    """A folder with links to the tokenized train and validation splits and meta.json only."""
    folder.mkdir(parents=True)
    for source in Path(data_dir).iterdir():
        split = source.stem.removeprefix("gen_")
        if source.name == "meta.json" or (source.suffix == ".parquet" and split in TRIAL_SPLITS):
            os.symlink(source.resolve(), folder / source.name)
    return folder


def trial_paths(tmp: Path, data_dir: Path) -> RunPaths:
    return RunPaths(plan=tmp / "plan.json", data=trial_data(data_dir, tmp / "data"), model=tmp / "model",
                    checkpoints=tmp / "checkpoints", live=tmp / "live", metrics=tmp / "metrics.json")


def make_objective(plan: RunPlan, space: tuple[SearchRange, ...], data_dir: Path, device: str | None, log,
                   max_epochs: int):
    from emotune.train import train

    metric = plan.dataset.official_metric

    def objective(trial: optuna.Trial) -> float:
        values = {dim.key: suggest(trial, dim) for dim in space}
        settings = plan.with_values(values)
        with tempfile.TemporaryDirectory(prefix="emotune-trial-") as tmp:
            result = train(settings, trial_paths(Path(tmp), data_dir), device, log=lambda m: None,
                           callbacks=(ReportEpochs(trial, metric, settings.train.epochs, max_epochs),))
        summary = result["summary"]
        log(f"trial {trial.number}: {values} -> validation {metric} {summary['best_val']:.4f} "
            f"(epoch {summary['best_epoch']} of {summary['epochs_run']})")
        return summary["best_val"]

    return objective


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRecord:
    """One finished trial as the reports use it."""

    number: int
    state: str  # COMPLETE or PRUNED
    value: float  # its best validation score (a pruned trial: the best epoch it reported)
    epochs: int  # epochs it trained
    minutes: float
    values: dict
    curve: list[float]  # the validation score it reported after each epoch (its steps: schedule_step)


@dataclass(frozen=True)
class StudyResult:
    name: str
    trials: list[TrialRecord]  # finished ones, by number
    best: TunedBy
    plan: RunPlan  # the tuned run's plan


def trial_records(study: optuna.Study) -> list[TrialRecord]:
    out = []
    for t in study.get_trials(deepcopy=False, states=FINISHED):
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else max(t.intermediate_values.values(),
                                                                                 default=math.nan)
        minutes = (t.datetime_complete - t.datetime_start).total_seconds() / 60
        curve = [float(t.intermediate_values[k]) for k in sorted(t.intermediate_values)]
        out.append(TrialRecord(t.number, t.state.name, float(value), len(curve), round(minutes, 3), dict(t.params),
                               curve))
    return sorted(out, key=lambda r: r.number)


def run_study(plan: RunPlan, cfg: TuneGroup, data_dir: Path, paths: TunePaths, device: str | None = None,
              log=print) -> StudyResult:
    """Search the settings of the run `plan` (its base_plan) until the study holds `cfg.trials` finished
    trials (or `cfg.minutes` ran out) and return its best trial as the run's plan. A study already in the
    storage is continued."""
    space = search_space(plan.adapter, cfg.max_epochs)
    name = study_name(plan, space)
    paths.study.mkdir(parents=True, exist_ok=True)
    # optuna logs a line per trial at INFO; the objective prints its own, shorter one
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage_url(cfg, paths), study_name=name, direction="maximize",
                                load_if_exists=True, pruner=make_pruner(cfg))
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    # seeded, and shifted by the trials already there: a continued study does not replay the first
    # process's random start-up points
    study.sampler = optuna.samplers.TPESampler(seed=plan.seed + done, n_startup_trials=max(cfg.startup_trials, 1))
    if not study.trials:  # a new study starts from the run's own settings (current_values says why)
        study.enqueue_trial(current_values(plan, space))
    if done < cfg.trials:
        log(f"tune {plan.name}: study {name}, {done} trials so far, running up to {cfg.trials - done} more"
            + (f" or {cfg.minutes} minutes" if cfg.minutes else ""))
        study.optimize(make_objective(plan, space, data_dir, device, log, cfg.max_epochs), n_trials=cfg.trials - done,
                       timeout=cfg.minutes * 60 if cfg.minutes else None, gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(cfg.trials, states=FINISHED)])
    trials = trial_records(study)
    if not any(t.state == "COMPLETE" for t in trials):
        raise EmotuneError(f"tune {plan.name}: no trial completed (raise tune.trials or tune.minutes)")
    best = study.best_trial
    tuned = TunedBy(study=name, best_trial=best.number, best_val=float(best.value), trials=len(trials),
                    pruned=sum(t.state == "PRUNED" for t in trials),
                    minutes=round(sum(t.minutes for t in trials), 2), values=dict(best.params))
    return StudyResult(name, trials, tuned, plan.tuned_by(tuned))


# ---------------------------------------------------------------------------------------------
# Show your work: the expected best validation score after n trials
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpectedBest:
    trials: int
    mean: float  # E[max of n trials' validation scores]
    std: float


def expected_best(scores: list[float], max_trials: int | None = None) -> list[ExpectedBest]:
    """Dodge et al. 2019 (Show Your Work, EMNLP), section 3: with the N observed scores sorted,
    v_(1) <= ... <= v_(N), and n trials drawn from them with replacement, P(max = v_(i)) =
    (i/N)^n - ((i-1)/N)^n, so E[max of n] = sum_i v_(i) ((i/N)^n - ((i-1)/N)^n), with the variance from
    the same weights. n = 1 gives the mean score, large n the best one."""
    values = sorted(s for s in scores if not math.isnan(s))
    count = len(values)
    if not count:
        return []
    out = []
    for n in range(1, (max_trials or count) + 1):
        weights = [(i / count) ** n - ((i - 1) / count) ** n for i in range(1, count + 1)]
        mean = sum(w * v for w, v in zip(weights, values))
        second = sum(w * v * v for w, v in zip(weights, values))
        out.append(ExpectedBest(n, mean, math.sqrt(max(second - mean * mean, 0.0))))
    return out


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def trials_frame(trials: list[TrialRecord]) -> pd.DataFrame:
    return pd.DataFrame([{"trial": t.number, "state": t.state, "value": t.value, "epochs": t.epochs,
                          "minutes": t.minutes, **t.values} for t in trials])  # curves: the study has them


def write_study(result: StudyResult, paths: TunePaths, plan_file: Path, storage: str | None) -> dict:
    """The tuned plan, the search's summary (metrics) and its tables (trials.csv, expected_best.csv)."""
    write_json(plan_file, result.plan.to_json())
    curve = expected_best([t.value for t in result.trials])
    with atomic_dir(paths.plots) as out:
        trials_frame(result.trials).to_csv(out / "trials.csv", index=False)
        pd.DataFrame([dataclasses.asdict(e) for e in curve]).rename(columns={"mean": "expected_best"}).to_csv(
            out / "expected_best.csv", index=False)
    # what is in the study folder when the study lives elsewhere (tune.storage); never the URL itself,
    # which may hold a password
    write_atomic(paths.study / "study.json", lambda tmp: tmp.write_text(json.dumps(
        {"study": result.name, "storage": "tune.storage" if storage else STUDY_FILE, "trials": len(result.trials)},
        indent=2), encoding="utf-8"))
    summary = {"study": result.name, "metric": result.plan.dataset.official_metric, **dataclasses.asdict(result.best),
               "complete": sum(t.state == "COMPLETE" for t in result.trials),
               "expected_best": {str(e.trials): round(e.mean, 4) for e in curve
                                 if e.trials in (1, 2, 5, 10, 20, 50, 100, len(curve))}}
    write_json(paths.metrics, summary)
    return summary
