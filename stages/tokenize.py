"""tokenize: data/audited/<dataset> -> data/tokenized/<dataset>/<model>/ + metrics/tokenize/<dataset>/<model>.json.

Tokenizes every split once per (dataset, tokenizer), so the adapters of one model share the work and
no adapter or training setting can make it run again (its only settings come from
data/plans/<dataset>/<model>/tokenize.json: the labels, the tokenizer, tokenize.max_length).
Only the tokenizer is loaded, never the weights.

Rows are truncated at max_length and NOT padded: train pads each batch to its own longest row. Each
split is a parquet file with columns id, input_ids, attention_mask, labels (the class id for single-label
datasets, a multi-hot float list for multi-label ones) and length. Decoder models also get
gen_<split>.parquet for the generative recipe (emotune/prompts.py): prompt_ids, answer_ids, labels.

The metrics file has the untruncated token length percentiles of each split and the share of rows
that max_length cuts: the numbers to choose max_length from.

    python -m stages.tokenize <dataset> <model>"""
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
