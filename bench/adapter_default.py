"""A candidate default learning rate for one adapter, run by the pipeline itself on every dataset of the main
matrix, against the committed runs at the current default.

    python -m bench.adapter_default [--adapter ia3] [--lr 0.04] [--epochs 3]
    python -m bench.adapter_default --from-exp ../emotune-adapter-default   # re-read a finished experiment

The tuning bench (bench/tune_adapters.py, docs/tuning.md) searched two datasets. Before a new default goes into
emotune/adapter_table.py (a change every stage depends on, so a whole-pipeline retrain), this bench checks it on
all of them, the two the search never saw included: one `dvc exp run -S 'adapters=[<adapter>]' -S train.lr=<lr>`
in a clone beside the project (bench/experiment.py: the project's DVC cache, so nothing committed is retrained;
`train.lr` moves only this adapter's runs, since the others leave the main matrix for the experiment, and the
reference group has its own `reference.train.lr`). The head's LR stays the default rule, max(lr, 1e-2).

Per dataset: the candidate run's official metric with its 95% interval, the committed run's, and the paired
difference on the same test rows (emotune/stats.py paired bootstrap). Writes
metrics/bench/adapter_default_<adapter>.json.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import common, experiment

MODEL = "minilm"  # the main matrix's model (params models)


@dataclass(frozen=True)
class DefaultComparison:
    """One dataset: the adapter at the candidate LR against the committed run at the current default."""

    dataset: str
    official_metric: str
    lr: float
    official: float
    official_ci95: dict
    best_val: float
    committed_lr: float
    committed_official: float
    committed_official_ci95: dict
    committed_best_val: float
    difference: float  # candidate minus committed, paired on the same test rows
    difference_ci95: dict
    verdict: str  # better | worse | within noise
    p_value: float
    train_examples: int
    epochs_run: int
    committed_epochs_run: int


def train_metrics(root: Path, dataset: str, adapter: str) -> dict:
    return common.load_json(root / "metrics" / "train" / dataset / MODEL / f"{adapter}.json",
                            f"did the experiment run train@{dataset}-{MODEL}-{adapter}?")


def compare(workdir: Path, project: Path, dataset: str, adapter: str) -> DefaultComparison:
    from emotune import stats

    report, run = experiment.run_predictions(workdir, dataset, MODEL, adapter)
    base_report, base = experiment.run_predictions(project, dataset, MODEL, adapter)
    metric = report["official_metric"]
    difference = stats.paired_difference(run, base, metric)
    train, base_train = train_metrics(workdir, dataset, adapter), train_metrics(project, dataset, adapter)
    return DefaultComparison(
        dataset, metric, train["lr"], round(report["official"], 4), report["official_ci95"],
        round(train["best_val"], 4), base_train["lr"], round(base_report["official"], 4),
        base_report["official_ci95"], round(base_train["best_val"], 4), round(difference.difference, 4),
        difference.as_json(), difference.verdict, round(difference.p_value, 4), train["train_examples"],
        train["epochs_run"], base_train["epochs_run"])


def report(result: dict) -> list[str]:
    """docs/tuning.md's table from a result file: each dataset's candidate run against the committed one."""
    from bench.report import interval, table

    rows = [[f"{d['dataset']} ({d['official_metric']})", f"{d['lr']:g}, {d['epochs_run']}",
             f"{d['official']:.3f} {interval(d['official_ci95'])}",
             f"{d['committed_lr']:g}, {d['committed_epochs_run']}",
             f"{d['committed_official']:.3f} {interval(d['committed_official_ci95'])}",
             f"{d['verdict']}: {d['difference']:+.3f} {interval(d['difference_ci95'], '+')}"]
            for d in result["datasets"]]
    return table(result, ["dataset (metric)", f"{result['adapter']}: lr, epochs", "[95% CI]", "committed: lr, epochs",
                          "[95% CI]", "paired difference [95% CI]"], rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=str(common.ROOT), help="the checkout whose committed runs to set against")
    parser.add_argument("--adapter", default="ia3", help="an adapter of the main matrix (params adapters)")
    parser.add_argument("--lr", type=float, default=0.04, help="the candidate default (train.lr for its runs)")
    parser.add_argument("--epochs", type=int, help="train.epochs for its runs too (default: the committed one)")
    parser.add_argument("--workdir", help="the clone to run in (default: <project>-adapter-default beside it)")
    parser.add_argument("--from-exp", metavar="WORKDIR", help="only read a finished experiment's clone")
    parser.add_argument("--out", help="the result file (default metrics/bench/adapter_default_<adapter>.json)")
    parser.add_argument("--report", metavar="JSON", help="print docs/tuning.md's table from a result file, run nothing")
    args = parser.parse_args(argv)
    if args.report:
        print("\n".join(report(common.load_json(Path(args.report)))))
        return 0
    project = Path(args.project).resolve()
    import yaml

    datasets = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["datasets"]
    settings = {"adapters": [args.adapter], "train.lr": args.lr, **({"train.epochs": args.epochs} if args.epochs else {})}
    result = common.header(f"adapter_default_{args.adapter}", False)
    if args.from_exp:
        run = experiment.ExperimentRun(Path(args.from_exp).resolve(), None, [])
    else:
        workdir = Path(args.workdir).resolve() if args.workdir else experiment.default_workdir(project,
                                                                                              "adapter-default")
        name = f"{args.adapter}-lr-{args.lr:g}" + (f"-epochs-{args.epochs}" if args.epochs else "")
        run = experiment.run_experiment(project, workdir, name, settings)
    comparisons = [compare(run.workdir, project, dataset, args.adapter) for dataset in datasets]
    result.update({
        **experiment.record(run, project), "adapter": args.adapter, "model": MODEL, "settings": settings,
        "other_runs_retrained": [s for s in run.stages_ran if s.startswith(("train@", "train_reference@"))
                                 and not s.endswith(f"-{MODEL}-{args.adapter}")],
        "datasets": [asdict(c) for c in comparisons]})
    print("\n".join(report(result)))
    common.write_result(common.result_path(f"adapter_default_{args.adapter}", False, args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
