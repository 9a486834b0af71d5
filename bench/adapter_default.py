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

One seed's paired difference says nothing about the next seed. Once the default is applied, the seeds bench
(bench/seeds_main_matrix.py) run before and after the change gives each side three seeds:

    python -m bench.adapter_default --adapter ia3 --seeds-before metrics/bench/seeds_main_matrix_b6a2c9b.json \
        --seeds-after metrics/bench/seeds_main_matrix.json

compares the adapter's runs over seeds (Welch's t, emotune/seeds.py, the leaderboard's method-level test) and
writes metrics/bench/adapter_default_<adapter>_seeds.json.
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


@dataclass(frozen=True)
class SeedsComparison:
    """One dataset: the adapter's runs after the change of default against those before, over seeds."""

    dataset: str
    official_metric: str
    before_seeds: dict  # seed -> official metric
    before_mean: float
    before_sd: float
    after_seeds: dict
    after_mean: float
    after_sd: float
    difference: float  # mean after minus mean before
    difference_ci95: dict  # Welch's 95% interval
    verdict: str  # better | worse | within noise
    p_value: float


def seeds_comparison(before: dict, after: dict, adapter: str) -> list[SeedsComparison]:
    """The adapter's runs in two seeds_main_matrix results (before and after a change of its default), per
    dataset both hold: each side's seeds and the method-level verdict (Welch's t over seeds, unpaired: the
    same seed draws the same 1,000 training rows on both sides, but the leaderboard's test is Welch's)."""
    from emotune import stats
    from emotune.seeds import method_verdict

    def runs(result: dict) -> dict[str, dict]:
        return {r["dataset"]: r for r in result["runs"] if r["adapter"] == adapter}

    old, new = runs(before), runs(after)
    out = []
    for dataset in (d for d in new if d in old):
        b, a = old[dataset], new[dataset]
        verdict = method_verdict(list(a["seeds"].values()), list(b["seeds"].values()))
        out.append(SeedsComparison(
            dataset, a["official_metric"], b["seeds"], round(b["seed_mean"], 4), round(b["seed_sd"], 4),
            a["seeds"], round(a["seed_mean"], 4), round(a["seed_sd"], 4), round(verdict.difference, 4),
            stats.as_json(verdict.low, verdict.high), verdict.verdict, round(verdict.p_value, 4)))
    if not out:
        raise SystemExit(f"no dataset has seeded {adapter} runs in both results; run bench.seeds_main_matrix")
    return out


def seeds_report(result: dict) -> list[str]:
    """docs/tuning.md's table of the seeds comparison."""
    from bench.report import interval, table

    def seeds(values: dict) -> str:
        return ", ".join(f"{v:.3f}" for v in values.values())

    rows = [[f"{d['dataset']} ({d['official_metric']})", seeds(d["before_seeds"]),
             f"{d['before_mean']:.3f} ± {d['before_sd']:.3f}", seeds(d["after_seeds"]),
             f"{d['after_mean']:.3f} ± {d['after_sd']:.3f}",
             f"{d['verdict']}: {d['difference']:+.3f} {interval(d['difference_ci95'], '+')}, p {d['p_value']:.2f}"]
            for d in result["datasets"]]
    return table(result, ["dataset (metric)", f"before ({result['before_commit']}): each seed", "mean ± sd",
                          f"after ({result['after_commit']}): each seed", "mean ± sd",
                          "after minus before (Welch t over seeds)"], rows)


def train_metrics(root: Path, dataset: str, adapter: str) -> dict:
    return common.load_json(root / "metrics" / "train" / dataset / MODEL / f"{adapter}.json",
                            f"did the experiment run train@{dataset}-{MODEL}-{adapter}?")


def compare(workdir: Path, project: Path, dataset: str, adapter: str) -> DefaultComparison:
    report, run = experiment.run_predictions(workdir, dataset, MODEL, adapter)
    base_report, base = experiment.run_predictions(project, dataset, MODEL, adapter)
    metric = report["official_metric"]
    difference = experiment.paired(run, base, metric)
    train, base_train = train_metrics(workdir, dataset, adapter), train_metrics(project, dataset, adapter)
    return DefaultComparison(
        dataset, metric, train["lr"], round(report["official"], 4), report["official_ci95"],
        round(train["best_val"], 4), base_train["lr"], round(base_report["official"], 4),
        base_report["official_ci95"], round(base_train["best_val"], 4), difference.difference,
        difference.ci95, difference.verdict, difference.p_value, train["train_examples"],
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
    parser.add_argument("--seeds-before", metavar="JSON", help="bench.seeds_main_matrix's result before the change")
    parser.add_argument("--seeds-after", metavar="JSON", help="... and after it: compare the adapter over seeds")
    args = parser.parse_args(argv)
    if args.report:
        result = common.load_json(Path(args.report))
        print("\n".join((seeds_report if "before_commit" in result else report)(result)))
        return 0
    if args.seeds_before or args.seeds_after:
        if not (args.seeds_before and args.seeds_after):
            raise SystemExit("--seeds-before and --seeds-after go together")
        before = common.load_json(Path(args.seeds_before), "run python -m bench.seeds_main_matrix")
        after = common.load_json(Path(args.seeds_after), "run python -m bench.seeds_main_matrix")
        result = common.header(f"adapter_default_{args.adapter}_seeds", False)
        result.update({"adapter": args.adapter, "model": MODEL, "before": args.seeds_before,
                       "before_commit": before["project_commit"], "after": args.seeds_after,
                       "after_commit": after["project_commit"],
                       "datasets": [asdict(c) for c in seeds_comparison(before, after, args.adapter)]})
        print("\n".join(seeds_report(result)))
        common.write_result(common.result_path(f"adapter_default_{args.adapter}_seeds", False, args.out), result)
        return 0
    project = Path(args.project).resolve()
    import yaml

    datasets = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["datasets"]
    settings = {"adapters": [args.adapter], "train.lr": args.lr, **({"train.epochs": args.epochs} if args.epochs else {})}
    result = common.header(f"adapter_default_{args.adapter}", False)
    if args.from_exp:
        run = experiment.reread(Path(args.from_exp), common.result_path(f"adapter_default_{args.adapter}", False,
                                                                         args.out))
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
