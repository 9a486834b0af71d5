"""evaluate: one trained run -> its test-set metrics, plots and inference cost.

    python -m stages.evaluate <dataset> <model> <adapter> [--seed <one of params seeds>]

The DVC stage's entry point; the work, and why it is done this way, is emotune/evaluate.py.
"""
from __future__ import annotations

from emotune.config import load_params
from emotune.errors import run_cli
from emotune.evaluate import evaluate_run


def main(argv: list[str]) -> None:
    from emotune.stage_args import run_args

    args = run_args(argv, "Evaluate one trained run on its test split")
    cfg = load_params().eval
    report = evaluate_run(args.dataset, args.model, args.adapter, cfg.threshold, cfg.latency_samples,
                          seed=args.seed)
    cost = report["inference"]
    seed = f" seed {args.seed}" if args.seed is not None else ""
    print(f"evaluate {args.dataset}/{args.model}/{args.adapter}{seed}: test {report['official_metric']} "
          f"{report['official']:.4f}, macro F1 {report['test']['macro_f1']:.4f}, "
          f"{cost['batched_examples_per_s']} examples/s batched, p50 {cost.get('latency_ms_p50')} ms single")


if __name__ == "__main__":
    run_cli(main)
