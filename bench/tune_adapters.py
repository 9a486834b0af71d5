"""Adapters at their defaults against adapters tuned by emotune's Optuna search (emotune/tune.py), what
per-epoch pruning saves, and the expected best validation score after n trials (Dodge et al. 2019).

    python -m bench.tune_adapters [--dataset tweet_eval_emotion] [--rows 1000] [--adapters ia3,head]
                                  [--trials 5] [--max-epochs 3] [--out metrics/bench/tune_x.json]

For the dataset: the mirror's rows through the project's fetch and clean, MiniLM's tokenization
(bench/reference_lr.py `prepare`), then for each adapter
  * default: the main matrix's run (its default LR, `train.epochs`, `--rows` training rows);
  * tuned: a study of `--trials` trials over the adapter's search space (emotune/adapter_table.py), scored on
    validation only, every trial run to its last epoch (no pruning); its best settings retrained
    (emotune/tune.py's tuned plan);
both scored on test by emotune/evaluate.py. Pruning is measured on the same trials, replayed: Optuna's
MedianPruner is asked after each recorded epoch, in trial order, whether it would have stopped the trial
(`replay_pruning`); that gives the epochs and trial-minutes it would have saved and whether the best trial
survives, without paying for a second study (the CPU budget of this round: 2 shared cores). A pruned
study's TPE would then have seen other scores and proposed other trials, which the replay cannot show.
Every study's trials and its expected-best curve (Dodge et al. 2019) go into the JSON (docs/tuning.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import common, experiment

if TYPE_CHECKING:  # emotune (torch) loads lazily, when a bench runs
    from emotune.stats import Predictions


def replay_pruning(trials: list[dict], startup_trials: int, tolerance: float, max_epochs: int | None = None) -> dict:
    """What Optuna's MedianPruner would have done to these trials, asked after each of their recorded
    epochs in trial order: the epochs and trial-minutes saved (a trial's minutes counted per epoch), the
    best validation score among the trials it would have let finish, and the trial-minutes until the
    best-so-far first came within `tolerance` of the study's best, with and without pruning. With
    `max_epochs`, each epoch is reported at its step on the LR schedule (emotune/tune.py schedule_step), as
    the tune stage reports it; without, at its epoch number."""
    from emotune.tune import schedule_step

    import optuna

    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    replay = optuna.create_study(direction="maximize", pruner=pruner)
    kept, spent, spent_pruned, epochs_run = [], [], [], []
    for t in trials:
        trial = replay.ask()
        per_epoch = t["minutes"] / max(t["epochs"], 1)
        epochs, pruned = t["epochs"], False
        for epoch, value in enumerate(t["curve"], start=1):
            given = t.get("values", {}).get("epochs", t["epochs"])
            trial.report(value, schedule_step(epoch, given, max_epochs) if max_epochs else epoch)
            if trial.should_prune():
                epochs, pruned = epoch, True
                break
        if pruned:
            replay.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            replay.tell(trial, t["value"])
        spent.append((t["minutes"], t["value"]))
        spent_pruned.append((per_epoch * epochs, None if pruned else t["value"]))
        kept.append(not pruned)
        epochs_run.append(epochs)
    target = max(t["value"] for t in trials) - tolerance

    def minutes_to(target_value, timeline):
        total, best = 0.0, float("-inf")
        for minutes, value in timeline:
            total += minutes
            best = max(best, value if value is not None else float("-inf"))
            if best >= target_value:
                return round(total, 2)
        return None

    return {"pruner": "median", "startup_trials": startup_trials, "pruned_trials": kept.count(False),
            "epochs_unpruned": sum(t["epochs"] for t in trials),
            "epochs_pruned": sum(epochs_run),
            "trial_minutes_unpruned": round(sum(m for m, _ in spent), 2),
            "trial_minutes_pruned": round(sum(m for m, _ in spent_pruned), 2),
            "best_val_unpruned": max(t["value"] for t in trials),
            "best_val_pruned": max((t["value"] for t, k in zip(trials, kept) if k), default=None),
            "target_val": round(target, 4),
            "minutes_to_target_unpruned": minutes_to(target, spent),
            "minutes_to_target_pruned": minutes_to(target, spent_pruned)}


def write_curves(result: dict, path: Path) -> Path:
    """The expected-best curves of every adapter's study side by side (trials, then one column per adapter),
    for `dvc plots show <csv> --x trials` and the table of docs/tuning.md."""
    import pandas as pd

    curves = {name: {e["trials"]: round(e["mean"], 4) for e in entry["study"]["expected_best"]}
              for name, entry in result["adapters"].items()}
    frame = pd.DataFrame(curves).rename_axis("trials").reset_index()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def report(result: dict) -> str:
    """docs/tuning.md's tables from a result JSON: default against tuned (test with its 95% interval, and
    tuned minus default paired on the same test rows), the adapters' order at both, pruning replayed,
    expected best."""
    from bench.report import interval

    metric = "validation / test [95% CI]"
    out = [f"From `{result['command']}` ({result['dataset']}, {result['rows']:,} training rows, "
           f"{result['trials']} trials of up to {result['max_epochs']} epochs per adapter; "
           f"{result['machine']['cpu_model']}, {result['machine']['cores']} cores, "
           f"load average {result['load_average_at_start'][0]} "
           f"at the start; {result['date']}).", "",
           f"| adapter | default ({metric}) | default settings | tuned ({metric}) | tuned settings | "
           "tuned - default, test (paired) | search minutes |",
           "|---|---|---|---|---|---|---|"]
    def scores(run: dict) -> str:
        return f"{run['val']:.3f} / {run['test']:.3f}" + (f" {interval(run['test_ci95'])}" if run.get("test_ci95") else "")

    for name, e in result["adapters"].items():
        d, t = e["default"], e["tuned"]
        values = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in t["values"].items())
        change = e.get("tuned_vs_default")
        change = f"{change['difference']:+.3f} {interval(change['ci95'], '+')} {change['verdict']}" if change else ""
        out.append(f"| {name} | {scores(d)} | lr {d['lr']:g}, head_lr {d['head_lr']:g}, {d['epochs']} epochs | "
                   f"{scores(t)} | {values} | {change} | "
                   f"{e['study']['trial_minutes']:.1f} |")
    if result.get("ranking"):
        def place(entry: dict) -> str:
            against = entry["vs_first"]
            return f"{entry['adapter']} {entry['test']:.3f}" + (
                f" ({against['difference']:+.3f} {interval(against['ci95'], '+')}, {against['verdict']})"
                if against else "")

        out += ["", "Adapters by test score, each against the first (paired):", "",
                "| place | at defaults | tuned |", "|---|---|---|"]
        for i, (d, t) in enumerate(zip(result["ranking"]["default"], result["ranking"]["tuned"]), start=1):
            out.append(f"| {i} | {place(d)} | {place(t)} |")
    out += ["", "| adapter | trials pruned | epochs (no pruning -> median) | trial-minutes (no pruning -> median) | "
            "best val kept | minutes to best - tolerance (no pruning -> median) |", "|---|---|---|---|---|---|"]
    for name, e in result["adapters"].items():
        p = e["pruning"]
        out.append(f"| {name} | {p['pruned_trials']} of {len(e['study']['trials'])} | {p['epochs_unpruned']} -> "
                   f"{p['epochs_pruned']} | {p['trial_minutes_unpruned']:.1f} -> {p['trial_minutes_pruned']:.1f} | "
                   f"{p['best_val_pruned'] == p['best_val_unpruned']} | {p['minutes_to_target_unpruned']} -> "
                   f"{p['minutes_to_target_pruned'] or 'never'} |")
    curves = {name: e["study"]["expected_best"] for name, e in result["adapters"].items()}
    out += ["", "Expected best validation score after n trials (Dodge et al. 2019; mean +- std over draws):", "",
            "| n | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves)]
    for n in range(1, max(len(c) for c in curves.values()) + 1):
        cells = [f"{c[n - 1]['mean']:.3f} +- {c[n - 1]['std']:.3f}" if n <= len(c) else "" for c in curves.values()]
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def study(plan, cfg, data_dir: Path, root: Path, label: str) -> dict:
    from emotune.paths import tune_paths
    from emotune.tune import expected_best, run_study

    where = tune_paths(plan.dataset.name, plan.model["name"], f"{plan.adapter}-{label}", root)
    tick = time.perf_counter()
    result = run_study(plan, cfg, data_dir, where, device="cpu", log=lambda m: print(m, flush=True))
    trials = [dataclasses.asdict(t) for t in result.trials]
    return {"pruner": cfg.pruner, "trials": trials, "best": dataclasses.asdict(result.best),
            "wall_minutes": round((time.perf_counter() - tick) / 60, 2),
            "trial_minutes": round(sum(t["minutes"] for t in trials), 2),
            "epochs_trained": sum(t["epochs"] for t in trials),
            "expected_best": [dataclasses.asdict(e) for e in expected_best([t["value"] for t in trials])],
            "plan": result.plan}


@dataclasses.dataclass
class TestedRun:
    """A run trained and scored on test: its figures for the JSON, and its per-row test predictions, kept in
    memory for the paired comparisons (the next run of the same adapter overwrites its files)."""

    summary: dict
    predictions: Predictions


def train_and_test(plan, root: Path, params) -> TestedRun:
    from emotune import aggregate
    from emotune import evaluate as evaluate_stage
    from emotune import train as train_stage
    from emotune.paths import run_paths

    paths = run_paths(plan.dataset.name, plan.model["name"], plan.adapter, root)
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_text(json.dumps(plan.to_json()))
    tick = time.perf_counter()
    out = train_stage.train(plan, paths, device="cpu", log=lambda m: print(m, flush=True))
    seconds = time.perf_counter() - tick
    report = evaluate_stage.evaluate_run(plan.dataset.name, plan.model["name"], plan.adapter, params.eval.threshold,
                                         0, root, device="cpu")
    rows = aggregate.row_predictions({"dataset": plan.dataset.name, "model": plan.model["name"],
                                      "adapter": plan.adapter}, root)
    return TestedRun({"lr": plan.train.lr, "head_lr": plan.train.head_lr, "epochs": plan.train.epochs,
                      "val": round(out["summary"]["best_val"], 4), "test": round(report["official"], 4),
                      "test_ci95": report["official_ci95"], "test_macro_f1": round(report["test"]["macro_f1"], 4),
                      "train_seconds": round(seconds, 1)}, rows)


def paired(run: TestedRun, other: TestedRun, metric: str) -> dict:
    """`run` minus `other` on the same test rows (emotune/stats.py paired bootstrap, the leaderboard's)."""
    return dataclasses.asdict(experiment.paired(run.predictions, other.predictions, metric))


def ranking(tested: dict[str, dict[str, TestedRun]], which: str, metric: str) -> list[dict]:
    """The adapters by test score at their `which` settings (default or tuned), each against the first,
    paired: the order a leaderboard would show and whether it can tell the places apart."""
    order = sorted(tested, key=lambda a: -tested[a][which].summary["test"])
    best = tested[order[0]][which]
    return [{"adapter": a, "test": tested[a][which].summary["test"],
             "vs_first": None if a == order[0] else paired(tested[a][which], best, metric)} for a in order]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="tweet_eval_emotion")
    parser.add_argument("--rows", type=int, default=1000, help="training rows (the main matrix's 1,000)")
    parser.add_argument("--adapters", default="ia3,head")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--startup-trials", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.01, help="validation points counted as 'reached'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--report", metavar="JSON",
                        help="print docs/tuning.md's tables from a result file, run nothing")
    parser.add_argument("--replay", metavar="JSON", help="recompute a result file's pruning replays and curves from "
                        "its recorded trials (after a change to replay_pruning), train nothing")
    args = parser.parse_args(argv)
    if args.replay:
        path = Path(args.replay)
        result = common.load_json(path)
        for entry in result["adapters"].values():
            trials = entry["study"]["trials"]
            entry["pruning"] = replay_pruning(trials, args.startup_trials, args.tolerance, result["max_epochs"])
            entry["pruning_by_epoch"] = replay_pruning(trials, args.startup_trials, args.tolerance)
        result["replayed_by"] = common.command_line()
        common.write_result(path, result)
        write_curves(result, path.with_name(f"{path.stem}_expected_best.csv"))
        return
    if args.report:
        print(report(common.load_json(Path(args.report))))
        return

    from bench.reference_lr import prepare
    from emotune.config import TuneGroup
    from emotune.tune import base_plan

    out_path = common.result_path(f"tune_{args.dataset}", args.tiny, args.out)
    result = common.header("tune_adapters", args.tiny)
    result.update(dataset=args.dataset, model=args.model, rows=args.rows, trials=args.trials,
                  max_epochs=args.max_epochs, tolerance=args.tolerance, adapters={})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params, model, _, rows = prepare(root, args.dataset, args.model)
        adapters = args.adapters.split(",")
        train = {**params.train.__dict__, "max_train_examples": args.rows, "threads": args.threads}
        params = dataclasses.replace(params, tune=dataclasses.replace(
            params.tune, datasets=[args.dataset], models=[args.model], adapters=adapters,
            train={k: train[k] for k in ("max_train_examples", "threads")}),
            datasets=[d for d in params.datasets if d != args.dataset] + [args.dataset],
            adapters=[a for a in params.adapters if a not in adapters])
        result["split_rows"] = rows
        data_dir = root / "data" / "tokenized" / args.dataset / args.model
        tested: dict[str, dict[str, TestedRun]] = {}
        for adapter in adapters:
            plan = base_plan(params, args.dataset, args.model, adapter)
            metric = plan.dataset.official_metric
            cfg = dataclasses.replace(params.tune, trials=args.trials, max_epochs=args.max_epochs,
                                      startup_trials=args.startup_trials, pruner="none")
            default = train_and_test(plan, root, params)
            entry = {"default": default.summary}
            print(f"{adapter} default: {entry['default']}", flush=True)
            searched = study(plan, cfg, data_dir, root, "none")
            tuned = train_and_test(searched.pop("plan"), root, params)
            tested[adapter] = {"default": default, "tuned": tuned}
            entry["tuned"] = {**tuned.summary, "values": searched["best"]["values"]}
            entry["tuned_vs_default"] = paired(tuned, default, metric)
            entry["study"] = searched
            entry["pruning"] = replay_pruning(searched["trials"], args.startup_trials, args.tolerance, args.max_epochs)
            entry["pruning_by_epoch"] = replay_pruning(searched["trials"], args.startup_trials, args.tolerance)
            print(f"{adapter} tuned: {entry['tuned']}\n{adapter} vs default: {entry['tuned_vs_default']}\n"
                  f"{adapter} pruning: {entry['pruning']}", flush=True)
            result["adapters"][adapter] = entry
            result["ranking"] = {which: ranking(tested, which, metric) for which in ("default", "tuned")}
            result["ranking_changed"] = ([r["adapter"] for r in result["ranking"]["default"]] !=
                                         [r["adapter"] for r in result["ranking"]["tuned"]])
            common.write_result(out_path, result)
            write_curves(result, out_path.with_name(f"{out_path.stem}_expected_best.csv"))
    common.write_result(out_path, result)


if __name__ == "__main__":
    main()
