"""evaluate: one trained run -> its test-set metrics, plots and inference cost.

    python -m stages.evaluate <dataset> <model> <adapter>

Reloads models/<dataset>/<model>/<adapter>/ the way a user would (emotune/adapters.py load_trained,
emotune/generative.py load_generative), predicts the tokenized validation and test splits, and writes
  metrics/eval/<dataset>/<model>/<adapter>.json          metrics (emotune/metrics.py), the decision
                                                         thresholds, inference cost
  metrics/eval/<dataset>/<model>/<adapter>/per_class.csv  per-class precision/recall/F1/support (plot)
  metrics/eval/<dataset>/<model>/<adapter>/confusion.csv  one row per (gold, predicted) pair (plot)

Multi-label decisions: `eval.threshold: 0.5` thresholds every sigmoid at 0.5; `tuned` picks one
threshold per label on the validation split (never on test) and applies it to test. Generated answers
(gen_* adapters) have no probabilities: no thresholds, ROC-AUC or ECE, and invalid answers are counted."""
from __future__ import annotations

from emotune.config import load_params
from emotune.errors import run_cli
from emotune.evaluate import evaluate_run


def main(argv: list[str]) -> None:
    from emotune.stage_args import run_args

    args = run_args(argv, "Evaluate one trained run on its test split")
    cfg = load_params().eval
    report = evaluate_run(args.dataset, args.model, args.adapter, cfg.threshold, cfg.latency_samples)
    cost = report["inference"]
    print(f"evaluate {args.dataset}/{args.model}/{args.adapter}: test {report['official_metric']} "
          f"{report['official']:.4f}, macro F1 {report['test']['macro_f1']:.4f}, "
          f"{cost['batched_examples_per_s']} examples/s batched, p50 {cost.get('latency_ms_p50')} ms single")


if __name__ == "__main__":
    run_cli(main)
