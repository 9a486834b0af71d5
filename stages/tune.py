"""tune: an Optuna search over one tune-group run's settings; writes the run's plan from the best trial.

    python -m stages.tune <dataset> <model> <adapter>

The DVC stage's entry point; the work, and why it is done this way, is emotune/tune.py.
"""
from __future__ import annotations

from emotune.config import load_params
from emotune.errors import run_cli
from emotune.paths import tokenized_dir, tune_paths, tuned_plan_path
from emotune.stage_args import run_args
from emotune.tune import base_plan, run_study, write_study


def main(argv: list[str]) -> None:
    args = run_args(argv, "Search one tune-group run's hyper-parameters with Optuna")
    params = load_params()
    paths = tune_paths(args.dataset, args.model, args.adapter)
    plan = base_plan(params, args.dataset, args.model, args.adapter)
    result = run_study(plan, params.tune, tokenized_dir(args.dataset, args.model), paths,
                       log=lambda m: print(m, flush=True))
    summary = write_study(result, paths, tuned_plan_path(args.dataset, args.model, args.adapter), params.tune.storage)
    print(f"tune {result.plan.name}: best trial {summary['best_trial']} of {summary['trials']} "
          f"({summary['pruned']} pruned, {summary['minutes']} min): validation {summary['metric']} "
          f"{summary['best_val']:.4f} with {summary['values']}")


if __name__ == "__main__":
    run_cli(main)
