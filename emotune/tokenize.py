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

    python -m stages.tokenize <dataset> <model>
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emotune.artifacts import load_splits
from emotune.atomic import read_json, sha256_file, write_json
from emotune.paths import SPLITS
from emotune.plan import TokenizePlan, known_length_limit
from emotune.rows import label_targets

PERCENTILES = (50, 90, 95, 99)


def load_tokenizer(model: dict):
    """The tokenizer of a plan's model entry (registry name, Hub id or folder); no weights."""
    from transformers import AutoTokenizer

    from emotune.plan import resolve_entry

    resolved = resolve_entry(model)
    kwargs = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    return AutoTokenizer.from_pretrained(resolved.location, **kwargs), resolved


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    if len(lengths) == 0:
        return {"rows": 0}
    stats = {"rows": int(len(lengths))}
    stats.update({f"p{p}": int(np.percentile(lengths, p, method="higher")) for p in PERCENTILES})
    stats["max"] = int(lengths.max())
    stats["mean"] = round(float(lengths.mean()), 2)
    stats["truncated"] = int((lengths > max_length).sum())
    stats["truncation_rate"] = round(float((lengths > max_length).mean()), 4)
    return stats


def effective_max_length(tokenizer, max_length: int) -> int:
    """tokenize.max_length, or the model's limit where that is lower: never cut longer than the model can
    read (the plan stage warns of it where it can read the limit; this says it again, always)."""
    limit = known_length_limit(getattr(tokenizer, "model_max_length", None))
    if limit is None or max_length <= limit:
        return max_length
    print(f"warning: tokenize.max_length {max_length} is above what this model reads ({limit} tokens, its "
          f"tokenizer's model_max_length): texts are cut at {limit}", file=sys.stderr)
    return limit


def tokenize_split(frame: pd.DataFrame, tokenizer, classes: list[str], multi_label: bool, max_length: int,
                   where: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The tokenized frame and the untruncated length of every row."""
    texts = frame["text"].tolist()
    # One pass without truncation, only to measure how long the texts really are.
    full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    out = pd.DataFrame({
        "id": frame["id"].astype(str).tolist(),
        "input_ids": [np.asarray(ids, dtype=np.int32) for ids in encoded["input_ids"]],
        "attention_mask": [np.asarray(m, dtype=np.int8) for m in encoded["attention_mask"]],
        "labels": label_targets(frame["labels"], classes, multi_label, where),
        "length": [len(ids) for ids in encoded["input_ids"]],
    })
    return out, np.asarray([len(ids) for ids in full])


def tokenize_dataset(plan: TokenizePlan, audited_dir: Path, out: Path) -> dict:
    """Write the tokenized splits into `out`; returns the metrics report."""
    from emotune.plan import is_decoder

    dataset, model = plan.dataset, plan.model
    classes, multi_label = dataset.labels, dataset.multi_label
    prompt = dataclasses.asdict(plan.tokenize.prompt)
    tokenizer, resolved = load_tokenizer(model)
    max_length = effective_max_length(tokenizer, plan.tokenize.max_length)
    splits = load_splits(audited_dir)
    report = {"dataset": dataset.name, "model": model["name"], "max_length": max_length, "splits": {}}
    for split in SPLITS:
        frame, full_lengths = tokenize_split(splits[split], tokenizer, classes, multi_label, max_length,
                                             f"{audited_dir.name}/{split}")
        frame.to_parquet(out / f"{split}.parquet", index=False)
        report["splits"][split] = length_stats(full_lengths, max_length)
        report["splits"][split]["tokens"] = int(frame["length"].sum())
    rows = sum(s["rows"] for s in report["splits"].values())
    report["truncation_rate"] = round(sum(s["truncated"] for s in report["splits"].values()) / max(rows, 1), 4)

    from transformers import AutoConfig

    kwargs = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    model_type = AutoConfig.from_pretrained(resolved.location, **kwargs).model_type
    generative = is_decoder(model_type)
    if generative:
        from emotune import prompts

        report["generative"] = {}
        for split in SPLITS:
            frame = prompts.tokenize_prompts(splits[split], tokenizer, classes, multi_label, max_length, prompt)
            frame.to_parquet(out / f"gen_{split}.parquet", index=False)
            lengths = (frame["prompt_ids"].map(len) + frame["answer_ids"].map(len)).to_numpy()
            report["generative"][split] = {k: v for k, v in length_stats(lengths, 10**9).items()
                                           if not k.startswith("trunc")}
    meta = {
        "dataset": dataset.name, "task": dataset.task, "labels": classes, "model": model,
        "model_type": model_type, "max_length": max_length, "generative": generative,
        "tokenizer": {"class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
                      "pad_token": tokenizer.pad_token, "eos_token": tokenizer.eos_token,
                      "chat_template": bool(getattr(tokenizer, "chat_template", None))},
        "files": {p.name: sha256_file(p) for p in sorted(out.glob("*.parquet"))},
        # decoders only: an encoder's files (and so its trained runs) do not depend on the prompt
        **({"prompt": prompts.prompt_settings(prompt)} if generative else {}),
        "source": read_json(audited_dir / "meta.json"),
    }
    write_json(out / "meta.json", meta)
    return report
