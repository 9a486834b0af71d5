"""baseline: the reference rows of the leaderboard, scored by the same code as every fine-tuned run.

    python -m stages.baseline <dataset>                       # majority, TF-IDF, embeddings, BiLSTM
    python -m stages.baseline <dataset> --zero-shot <model>   # one instruction-tuned decoder, no training

Writes metrics/eval/<dataset>/baseline/<name>.json (+ plots, as emotune/evaluate.py) for
* majority      always the training prior: the most frequent class, or each label's majority
* tfidf_lr      TF-IDF word 1-2 grams + logistic regression (one-vs-rest for multi-label) on exactly the
                training rows the fine-tuned runs of the main matrix see (the same seeded sample of
                train.max_train_examples), so a fine-tuned row's gain over it is the model's, not the data's
* tfidf_lr_all  the same on every training row: what a classical model does with all the data
* embed_lr      frozen sentence embeddings (baseline.embedding_model, MiniLM by default; the audit stage's
                embedder, emotune/audit.py embed_texts) + logistic regression, on the runs' training rows
* bilstm        a bidirectional LSTM (or GRU, baseline.rnn.cell) trained from scratch on the word pieces of
                baseline.rnn.tokenizer, on the runs' training rows; the best epoch on validation is kept
* zero_shot_<model>  a decoder prompted with the label names (emotune/prompts.py, the generative recipe's
                prompt) and no training; answers parsed back to labels, invalid answers counted
Multi-label thresholds follow eval.threshold, tuned on validation exactly as for the runs. Every row
carries its cost like a run's: training time, trainable and total parameters, test examples/s."""
from __future__ import annotations

import argparse
import dataclasses

from emotune.artifacts import load_splits
from emotune.baseline import BASELINES, run_baseline, zero_shot
from emotune.config import load_params
from emotune.errors import run_cli
from emotune.evaluate import write_report
from emotune.paths import eval_paths, project_root


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Baselines: majority, TF-IDF + LR, embeddings + LR, BiLSTM, "
                                                 "or zero-shot with a decoder")
    parser.add_argument("dataset")
    parser.add_argument("--zero-shot", metavar="MODEL", help="prompt this decoder (no training) instead")
    args = parser.parse_args(argv)
    params = load_params()
    spec = params.dataset(args.dataset)
    splits = load_splits(project_root() / "data" / "audited" / args.dataset)
    if args.zero_shot:
        model = str(project_root() / args.zero_shot) if (project_root() / args.zero_shot).is_dir() else args.zero_shot
        report, y_true, y_pred = zero_shot(model, splits, spec, params.tokenize.max_length,
                                           params.baseline.zero_shot.batch_size, params.model_registry,
                                           name=args.zero_shot,
                                           label_map=params.baseline.zero_shot.label_maps.get(args.zero_shot),
                                           decode=params.baseline.zero_shot.decode,
                                           prompt=dataclasses.asdict(params.tokenize.prompt))
        write_report(report, y_true, y_pred, *eval_paths(args.dataset, "baseline", report["adapter"]))
        print(f"baseline {args.dataset}/{report['adapter']}: test {report['official_metric']} "
              f"{report['official']:.4f}, invalid answers {report['test'].get('invalid_rate', 0):.1%}")
        return
    for name in BASELINES:
        report, y_true, y_pred = run_baseline(name, splits, spec, params.train.max_train_examples, params.seed,
                                              params.eval.threshold, params)
        write_report(report, y_true, y_pred, *eval_paths(args.dataset, "baseline", name))
        print(f"baseline {args.dataset}/{name} ({report['train_examples']} train rows, {report['train_time_s']} s): "
              f"test {report['official_metric']} {report['official']:.4f}, macro F1 {report['test']['macro_f1']:.4f}")


if __name__ == "__main__":
    run_cli(main)
