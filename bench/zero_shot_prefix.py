"""The zero-shot baseline's rank decoding, one full pass per label vs the prompt computed once per text.

    python -m bench.zero_shot_prefix             # SmolLM2-135M-Instruct, TweetEval emotion test texts
    python -m bench.zero_shot_prefix --tiny      # CI smoke run: tiny Llama, toy texts, a temporary JSON

emotune/baseline.py `rank_labels_per_label` (what the default run's zero-shot stage did: 1.8 texts/s on 2
idle cores) and `rank_labels` (the prompt's KV cache shared by every label's answer) score the same texts,
in chunks whose arm order alternates (per_label, shared; shared, per_label; ...) so load from other work
hits both alike. Writes texts/s of each arm, the speed-up, and whether the predictions are identical
(and the largest score difference) to metrics/bench/zero_shot_prefix.json.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import common

NAME = "zero_shot_prefix"
DATASET = "tweet_eval_emotion"
ARMS = ("per_label", "shared_prompt")


def setup(tiny: bool, work: Path):
    """(net, tokenizer, test frame, labels, max_length, batch_size, prompt, model name)."""
    from emotune.generative import load_causal

    if tiny:
        from emotune.testing import save_tiny_model

        labels = ["joy", "anger", "sadness"]
        folder = save_tiny_model("llama", work / "tiny-llama")
        loaded = load_causal(str(folder), "gen_lora", labels, "single_label")
        return loaded.model.eval(), loaded.tokenizer, common.toy_texts(64, 3, labels), labels, 64, 16, None, \
            "tiny-llama"
    import dataclasses

    params, _, splits = common.audited_slice(work, DATASET, sizes=(8, 8, None))
    spec = params.dataset(DATASET)
    cfg = params.baseline.zero_shot
    model = cfg.models[0]
    loaded = load_causal(model, "gen_lora", list(spec.labels), spec.task, registry=params.model_registry)
    prompt = dataclasses.asdict(params.tokenize.prompt)  # as stages/baseline.py passes it
    return (loaded.model.eval(), loaded.tokenizer, splits["test"], list(spec.labels), params.tokenize.max_length,
            cfg.batch_size, prompt, model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=None, help="test texts scored by both arms (default 240; tiny 64)")
    parser.add_argument("--chunks", type=int, default=4, help="chunks, arm order alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import torch

    from emotune import baseline as bl

    torch.set_num_threads(args.threads)
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-zero-shot-"))
    try:
        net, tokenizer, test, labels, max_length, batch_size, prompt, model = setup(args.tiny, work)
        n = min(args.texts or (64 if args.tiny else 240), len(test))
        test = test.sample(n=n, random_state=0).reset_index(drop=True) if n < len(test) else test
        scorers = {"per_label": bl.rank_labels_per_label, "shared_prompt": bl.rank_labels}
        scores = {arm: np.zeros((n, len(labels))) for arm in ARMS}
        seconds = {arm: 0.0 for arm in ARMS}
        bounds = np.linspace(0, n, args.chunks + 1).astype(int)
        for c, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            chunk = test.iloc[lo:hi]
            for arm in (ARMS if c % 2 == 0 else ARMS[::-1]):
                tick = time.perf_counter()
                scores[arm][lo:hi] = scorers[arm](net, tokenizer, chunk, labels, max_length, batch_size, "cpu",
                                                  prompt)
                seconds[arm] += time.perf_counter() - tick
                print(f"chunk {c + 1}/{args.chunks} {arm:13s} {(hi - lo) / (time.perf_counter() - tick):7.2f} texts/s",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {arm: n / seconds[arm] for arm in ARMS}
    slow, fast = scores["per_label"], scores["shared_prompt"]
    same = bool(np.array_equal(slow.argmax(1), fast.argmax(1)))
    gaps = np.sort(slow, 1)
    result.update({
        "setup": {"model": model, "dataset": "toy" if args.tiny else DATASET, "texts": n, "labels": len(labels),
                  "chunks": args.chunks, "batch_size": batch_size, "max_length": max_length,
                  "threads": torch.get_num_threads(), "order": "arms alternate per chunk"},
        "arms": {arm: {"texts_per_s": round(rate[arm], 2), "seconds": round(seconds[arm], 1)} for arm in ARMS},
        "speedup": round(rate["shared_prompt"] / rate["per_label"], 2),
        "identical_predictions": same,
        "max_abs_score_diff": float(np.abs(slow - fast).max()),
        "smallest_top2_gap": float((gaps[:, -1] - gaps[:, -2]).min()),
        "peak_rss_mb": common.peak_rss_mb(),
    })
    print(f"shared prompt {result['speedup']}x the texts/s of one pass per label "
          f"({rate['shared_prompt']:.2f} vs {rate['per_label']:.2f}); identical predictions: {same}; max |score "
          f"diff| {result['max_abs_score_diff']:.2e}", flush=True)
    common.write_result(out_path, result)


if __name__ == "__main__":
    main()
