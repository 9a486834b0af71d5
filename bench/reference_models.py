"""A second reference model on all training rows, run by the pipeline itself, against the committed reference runs.

    python -m bench.reference_models [--model mpnet] [--datasets tweet_eval_emotion,semeval2025_eng] [--lr 5e-5]
    python -m bench.reference_models --from-exp ../emotune-reference   # re-read a finished experiment only

The committed leaderboard's reference runs are MiniLM-L6 (22.7M) `full` on all rows; the published references
are base-size models (110-125M). This bench runs the reference group with another model (default MPNet-base,
109M, offline) as one `dvc exp run` in a clone beside the project (bench/experiment.py: the project's DVC cache,
so nothing committed is retrained), with the settings `reference.models` documents:

    -S datasets=[..] -S reference.models=[mpnet] -S reference.train.lr=.. -S large.models=[mpnet]
    -S large.adapters=[lora] -S large.datasets=[..]

(the reference runs reuse another group's tokenization, so `large` tokenizes for MPNet and adds its small
400-row LoRA runs). `reference.train` is the committed one (all rows, 3 epochs) except its LR: 1.5e-4 was
measured for MiniLM (bench/reference_lr.py), and base-size encoders are usually fine-tuned at 2e-5 to 5e-5.
One LR, not tuned: the bench says so in its JSON.

Per dataset it records the new run's official metric with its 95% interval, the published reference, the
committed MiniLM reference run, and the paired difference between the two on the same test rows (paired
bootstrap over the per-row predictions both evaluate stages wrote, emotune/stats.py). Writes
metrics/bench/reference_model_<model>.json.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import common, experiment

BASE_MODEL = "minilm"  # the committed reference runs' model (params reference.models)
ADAPTER = "full"


@dataclass(frozen=True)
class ReferenceComparison:
    """One dataset: the new model's all-rows run against the committed one on the same test rows."""

    dataset: str
    official_metric: str
    model: str
    official: float
    official_ci95: dict
    base_model: str
    base_official: float
    base_official_ci95: dict
    difference: float  # model minus base model, paired on the same test rows
    difference_ci95: dict
    verdict: str  # better | worse | within noise
    p_value: float
    reference: float | None  # the published figure (params dataset_registry reference)
    vs_reference: float | None
    train_examples: int
    epochs_run: int
    lr: float
    train_minutes: float
    train_examples_per_s: float
    best_val: float


def experiment_settings(model: str, datasets: list[str], lr: float) -> dict[str, object]:
    """The `-S` settings of the experiment: the reference group with `model` only, on `datasets`, its
    tokenization from the large group (a LoRA run per dataset comes with it)."""
    return {"datasets": datasets, "reference.models": [model], "reference.train.lr": lr,
            "large.models": [model], "large.adapters": ["lora"], "large.datasets": datasets}


def read_json(path: Path) -> dict:
    return common.load_json(path, "did the experiment run the reference stages for this dataset?")


def compare(workdir: Path, project: Path, dataset: str, model: str) -> ReferenceComparison:
    report, run = experiment.run_predictions(workdir, dataset, model, ADAPTER)
    base_report, base = experiment.run_predictions(project, dataset, BASE_MODEL, ADAPTER)
    metric = report["official_metric"]
    difference = experiment.paired(run, base, metric)
    train = read_json(workdir / "metrics" / "train" / dataset / model / f"{ADAPTER}.json")
    rows = read_json(workdir / "metrics" / "leaderboard.json")["rows"]
    row = next((r for r in rows if (r["dataset"], r["model"], r["adapter"], r.get("kind")) ==
                (dataset, model, ADAPTER, "run")), {})
    return ReferenceComparison(
        dataset, metric, model, round(report["official"], 4), report["official_ci95"], BASE_MODEL,
        round(base_report["official"], 4), base_report["official_ci95"], difference.difference,
        difference.ci95, difference.verdict, difference.p_value, row.get("reference"),
        row.get("vs_reference"), train["train_examples"], train["epochs_run"], train["lr"],
        round(train["train_time_s"] / 60, 1), train["train_examples_per_s"], round(train["best_val"], 4))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=str(common.ROOT), help="the checkout whose reference runs to set against")
    parser.add_argument("--model", default="mpnet", help="the second reference model (a model_registry name)")
    parser.add_argument("--datasets", default="tweet_eval_emotion,semeval2025_eng", help="comma-separated")
    parser.add_argument("--lr", type=float, default=5e-5, help="reference.train.lr for this model's runs")
    parser.add_argument("--workdir", help="the clone to run in (default: <project>-reference beside the project)")
    parser.add_argument("--from-exp", metavar="WORKDIR", help="only read a finished experiment's clone")
    parser.add_argument("--out", help="the result file (default metrics/bench/reference_model_<model>.json)")
    args = parser.parse_args(argv)
    project = Path(args.project).resolve()
    datasets = args.datasets.split(",")
    settings = experiment_settings(args.model, datasets, args.lr)
    result = common.header(f"reference_{args.model}", False)
    if args.from_exp:
        run = experiment.reread(Path(args.from_exp), common.result_path(f"reference_model_{args.model}", False,
                                                                         args.out))
    else:
        workdir = Path(args.workdir).resolve() if args.workdir else experiment.default_workdir(project, "reference")
        run = experiment.run_experiment(project, workdir, f"reference-{args.model}", settings)
    comparisons = [compare(run.workdir, project, dataset, args.model) for dataset in datasets]
    result.update({
        **experiment.record(run, project), "settings": settings, "lr_tuned": False,
        "committed_runs_retrained": [s for s in run.stages_ran if s.startswith(("train@", "train_reference@"))
                                     and f"-{args.model}-" not in s],
        "datasets": [asdict(c) for c in comparisons]})
    for c in comparisons:
        print(f"{c.dataset}: {c.model} {c.official:.3f} [{c.official_ci95['low']:.3f}, {c.official_ci95['high']:.3f}]"
              f" vs {c.base_model} {c.base_official:.3f}: {c.difference:+.3f} [{c.difference_ci95['low']:+.3f}, "
              f"{c.difference_ci95['high']:+.3f}] {c.verdict}; published {c.reference}; "
              f"{c.train_minutes} min at {c.train_examples_per_s} ex/s")
    common.write_result(common.result_path(f"reference_model_{args.model}", False, args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
