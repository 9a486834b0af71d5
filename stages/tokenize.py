"""tokenize: data/audited/<dataset> -> data/tokenized/<dataset>/<model>/ + metrics/tokenize/<dataset>/<model>.json.

    python -m stages.tokenize <dataset> <model>

The DVC stage's entry point; the work, and why it is done this way, is emotune/tokenize.py.
"""
from __future__ import annotations

import argparse

from emotune.atomic import atomic_dir, write_json
from emotune.errors import run_cli
from emotune.paths import project_root, tokenize_metrics_path, tokenize_plan_path, tokenized_dir
from emotune.plan import TokenizePlan, read_plan
from emotune.tokenize import tokenize_dataset


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Tokenize one audited dataset with one model's tokenizer")
    parser.add_argument("dataset")
    parser.add_argument("model")
    args = parser.parse_args(argv)
    plan = read_plan(tokenize_plan_path(args.dataset, args.model), TokenizePlan)
    audited = project_root() / "data" / "audited" / args.dataset
    with atomic_dir(tokenized_dir(args.dataset, args.model)) as out:
        report = tokenize_dataset(plan, audited, out)
    write_json(tokenize_metrics_path(args.dataset, args.model), report)
    train = report["splits"]["train"]
    print(f"tokenize {args.dataset}/{args.model}: train p95 {train['p95']} tokens, max {train['max']}, "
          f"{report['truncation_rate']:.2%} of rows truncated at {report['max_length']}")


if __name__ == "__main__":
    run_cli(main)
