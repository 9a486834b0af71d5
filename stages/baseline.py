"""baseline: the reference rows of the leaderboard, scored by the same code as every fine-tuned run.

    python -m stages.baseline <dataset>                       # majority, TF-IDF, embeddings, BiLSTM
    python -m stages.baseline <dataset> --zero-shot <model>   # one instruction-tuned decoder, no training

The DVC stage's entry point; the work, and why it is done this way, is emotune/baseline.py.
"""
from __future__ import annotations

import argparse
import dataclasses

from emotune.artifacts import load_splits
from emotune.baseline import run_baseline, zero_shot
from emotune.config import load_params
from emotune.errors import run_cli
from emotune.paths import BASELINES, eval_paths, project_root, zero_shot_name, zero_shot_plan_path
from emotune.plan import ZeroShotPlan, read_plan
from emotune.reports import write_report, write_unscored


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Baselines: majority, TF-IDF + LR, embeddings + LR, BiLSTM, "
                                                 "or zero-shot with a decoder")
    parser.add_argument("dataset")
    parser.add_argument("--zero-shot", metavar="MODEL", help="prompt this decoder (no training) instead")
    args = parser.parse_args(argv)
    params = load_params()
    spec = params.dataset(args.dataset)
    if args.zero_shot:
        selection = read_plan(zero_shot_plan_path(args.dataset, args.zero_shot), ZeroShotPlan)
        if not selection.scored:  # dvc.yaml runs every dataset x model; this pair is not in the list
            name = zero_shot_name(args.zero_shot)
            write_unscored({"kind": "baseline", "dataset": args.dataset, "model": "baseline", "adapter": name,
                            "scored": False, "why": selection.why}, *eval_paths(args.dataset, "baseline", name))
            print(f"baseline {args.dataset}/{name}: {selection.why}")
            return
    splits = load_splits(project_root() / "data" / "audited" / args.dataset)
    if args.zero_shot:
        model = str(project_root() / args.zero_shot) if (project_root() / args.zero_shot).is_dir() else args.zero_shot
        report, y_true, y_pred, invalid = zero_shot(model, splits, spec, params.tokenize.max_length,
                                           params.baseline.zero_shot.batch_size, params.model_registry,
                                           name=args.zero_shot,
                                           label_map=params.baseline.zero_shot.label_maps.get(args.zero_shot),
                                           decode=params.baseline.zero_shot.decode,
                                           prompt=dataclasses.asdict(params.tokenize.prompt))
        write_report(report, y_true, y_pred, *eval_paths(args.dataset, "baseline", report["adapter"]),
                     splits["test"]["id"], invalid)
        print(f"baseline {args.dataset}/{report['adapter']}: test {report['official_metric']} "
              f"{report['official']:.4f}, invalid answers {report['test'].get('invalid_rate', 0):.1%}")
        return
    for name in BASELINES:
        report, y_true, y_pred = run_baseline(name, splits, spec, params.train.max_train_examples, params.seed,
                                              params.eval.threshold, params)
        write_report(report, y_true, y_pred, *eval_paths(args.dataset, "baseline", name), splits["test"]["id"])
        print(f"baseline {args.dataset}/{name} ({report['train_examples']} train rows, {report['train_time_s']} s): "
              f"test {report['official_metric']} {report['official']:.4f}, macro F1 {report['test']['macro_f1']:.4f}")


if __name__ == "__main__":
    run_cli(main)
