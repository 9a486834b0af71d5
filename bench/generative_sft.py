"""The generative recipe's loop: emotune's Trainer recipe vs TRL's SFTTrainer, in alternating pairs.

    pip install trl==1.16.0      # optional: only this benchmark uses TRL
    python -m bench.generative_sft [--rows 96] [--steps 12] [--pairs 2] [--model smollm2]

Both arms train the same LoRA (gen_lora, r 16) on the same SmolLM2-135M-Instruct, the same tokenized
TweetEval emotion rows from the mirror (prompt = chat template + system message + text, answer = label
word + eos, built once by emotune/prompts.py), the same batch size, optimizer (fused AdamW), LR, schedule,
length-grouped batches and seed; the loss covers the answer tokens only in both:

- emotune: transformers.Trainer with emotune/generative.py's batches (left-padded, the layout generate()
  uses) and its loss, which runs the LM head on the answer positions only (`logits_to_keep`);
- TRL: `SFTTrainer` with the same rows as a tokenized prompt-completion dataset (`input_ids` +
  `completion_mask`: `completion_only_loss`), TRL's own collator (right padding), the LM head at every
  position, as SFTTrainer does by default.

Reports seconds per optimizer step, examples per second, the mean training loss of each arm (equal up
to the batch order). Memory is not compared: both arms share one process. Writes
metrics/bench/generative_sft.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from bench import common

NAME = "generative_sft"
DATASET = "tweet_eval_emotion"
SYSTEM = "You are a tweet emotion classifier. Read the tweet and output exactly one word: anger, joy, optimism, or sadness."


def rows(model_name: str, n: int, max_length: int):
    """(dataset spec, tokenized prompt/answer frame) for the first n training rows of the mirror."""
    from emotune.config import load_params
    from emotune.data_registry import fetch_dataset
    from emotune.generative import load_causal
    from emotune.prompts import tokenize_prompts

    params = load_params()
    spec = params.dataset(DATASET)
    frame = fetch_dataset(spec, params.fetch, params.seed).splits["train"].head(n).copy()
    frame["labels"] = frame["labels"].map(list)
    tokenizer = load_causal(model_name, "gen_lora", list(spec.labels), spec.task).tokenizer
    return spec, tokenize_prompts(frame, tokenizer, list(spec.labels), False, max_length,
                                  {"system": SYSTEM, "instruction": None})


def fresh_model(model_name: str, spec, seed: int):
    from transformers import set_seed

    from emotune.config import AdapterHParams
    from emotune.generative import apply_generative_adapter, load_causal

    set_seed(seed)
    loaded = load_causal(model_name, "gen_lora", list(spec.labels), spec.task)
    return loaded, apply_generative_adapter(loaded, "gen_lora", AdapterHParams(r=16, alpha=32, dropout=0.0))


def common_args(out: str, steps: int, batch: int, seed: int) -> dict:
    return dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=2e-4,
                lr_scheduler_type="linear", warmup_steps=1, optim="adamw_torch_fused", seed=seed, use_cpu=True,
                logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
                train_sampling_strategy="group_by_length", dataloader_num_workers=0)


def emotune_arm(model_name, spec, frame, steps, batch, seed) -> dict:
    from transformers import TrainingArguments

    from emotune import train as train_stage
    from emotune.generative import GenerativeBatches, GenerativeRecipe

    loaded, model = fresh_model(model_name, spec, seed)
    plan = {"dataset": {"labels": list(spec.labels), "task": spec.task}, "adapter": {"name": "gen_lora",
            "hparams": {}}}
    recipe = GenerativeRecipe.__new__(GenerativeRecipe)
    recipe.plan, recipe.labels, recipe.multi_label, recipe.generative = plan, list(spec.labels), False, True
    recipe.train = recipe.val = GenerativeBatches(frame, loaded.tokenizer.pad_token_id, False)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(**common_args(out, steps, batch, seed), remove_unused_columns=False)
        trainer = train_stage.make_trainer(recipe, model, args, [])
        return measured(trainer)


def trl_arm(model_name, spec, frame, steps, batch, seed) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    loaded, model = fresh_model(model_name, spec, seed)
    data = Dataset.from_dict({
        "input_ids": [list(p) + list(a) for p, a in zip(frame["prompt_ids"], frame["answer_ids"])],
        "completion_mask": [[0] * len(p) + [1] * len(a) for p, a in zip(frame["prompt_ids"], frame["answer_ids"])],
    })
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(**common_args(out, steps, batch, seed), completion_only_loss=True, max_length=None,
                           dataset_num_proc=None)
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=loaded.tokenizer)
        return measured(trainer)


def measured(trainer) -> dict:
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.tick = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.tick)

    steps = Steps()
    trainer.add_callback(steps)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    timed = steps.seconds[2:] or steps.seconds  # the first steps warm up kernels and allocator
    return {"s_per_step_median": round(statistics.median(timed), 4), "steps": len(steps.seconds),
            "mean_train_loss": round(sum(losses) / len(losses), 4), "first_loss": round(losses[0], 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    import importlib.metadata as md

    result.update(model=args.model, dataset=DATASET, rows=args.rows, steps=args.steps, batch=args.batch,
                  trl=md.version("trl"), pairs=[])
    spec, frame = rows(args.model, args.rows, args.max_length)
    result["tokens_per_row_mean"] = round(float(frame["length"].mean()), 1)
    for pair in range(args.pairs):
        arms = [("emotune", emotune_arm), ("trl_sft", trl_arm)]
        if pair % 2:
            arms.reverse()  # alternate which arm runs first
        figures = {name: fn(args.model, spec, frame, args.steps, args.batch, 0) for name, fn in arms}
        result["pairs"].append(figures)
        print(json.dumps(figures), flush=True)
        common.write_result(out_path, result)
    medians = {name: statistics.median(p[name]["s_per_step_median"] for p in result["pairs"])
               for name in ("emotune", "trl_sft")}
    result["summary"] = {"s_per_step": medians,
                         "trl_over_emotune_step_time": common.ratio(medians["trl_sft"], medians["emotune"])}
    common.write_result(out_path, result)
    print(json.dumps(result["summary"], indent=1))
    print(f"-> {out_path}")


if __name__ == "__main__":
    main()
