"""Prompts and answers of the generative recipe (emotune/generative.py): shared by the tokenize stage
(decoder models get gen_<split>.parquet) and the trained model's predictions, so that training and
inference build exactly the same token ids.

Prompt: the tokenizer's chat template when it has one (instruction-tuned models), else plain text
"<instruction>\\nText: <text>\\nAnswer: <answer>". The text alone is truncated at tokenize.max_length;
the prompt is assembled from token ids (prefix + text + suffix) so truncation never cuts the
instruction. The answer ends with the tokenizer's eos token, which is how generation knows to stop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emotune.errors import EmotuneError

NONE_ANSWER = "none"  # multi-label rows without any label
INSTRUCTIONS = {
    False: "Which emotion does the text express? Answer with exactly one of: {labels}.",
    True: "Which emotions does the text express? Answer with every one that applies, separated by commas, "
          "from: {labels}. Answer " + NONE_ANSWER + " if none applies.",
}
_SENTINEL = "\u2063EMOTUNE_TEXT\u2063"


# ---------------------------------------------------------------------------------------------
# Prompts and answers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptFormat:
    prefix_ids: list[int]
    suffix_ids: list[int]
    answer_prefix: str  # " " in plain prompts, so the answer's first word tokenizes as a word
    chat_template: bool
    instruction: str  # as the model sees it (labels filled in)
    system: str | None = None
    system_in_user: bool = False  # the chat template has no system role: the system text opens the user turn


def prompt_format(tokenizer, labels: list[str], multi_label: bool, system: str | None = None,
                  instruction: str | None = None) -> PromptFormat:
    """`system` and `instruction` are params.yaml `tokenize.prompt` (None: no system message, the built-in
    instruction; "{labels}" in an instruction becomes the label names)."""
    instruction = (instruction or INSTRUCTIONS[multi_label]).format(labels=", ".join(labels))
    if getattr(tokenizer, "chat_template", None):
        from jinja2 import TemplateError

        user = {"role": "user", "content": f"{instruction}\n\nText: {_SENTINEL}"}
        messages = [{"role": "system", "content": system}, user] if system else [user]
        try:
            rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except TemplateError:  # e.g. Gemma's template raises "System role not supported"
            if not system:
                raise
            user = {**user, "content": f"{system}\n\n{user['content']}"}
            rendered = tokenizer.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
            merged = True
        else:
            merged = False
        prefix, suffix = rendered.split(_SENTINEL)
        # The template writes its special tokens as text; the tokenizer turns them back into ids.
        return PromptFormat(tokenizer(prefix, add_special_tokens=False)["input_ids"],
                            tokenizer(suffix, add_special_tokens=False)["input_ids"], "", True, instruction,
                            system, merged)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    head = f"{system}\n\n" if system else ""
    return PromptFormat(bos + tokenizer(f"{head}{instruction}\nText: ", add_special_tokens=False)["input_ids"],
                        tokenizer("\nAnswer:", add_special_tokens=False)["input_ids"], " ", False, instruction,
                        system)


def prompt_settings(prompt: dict | None) -> dict:
    """{"system", "instruction"} of a tokenize.prompt mapping (from a plan, meta.json or a saved model's
    metadata), None where unset."""
    prompt = prompt or {}
    return {"system": prompt.get("system"), "instruction": prompt.get("instruction")}


def answer_text(names: list[str], multi_label: bool) -> str:
    if multi_label:
        return ", ".join(names) if len(names) else NONE_ANSWER
    return names[0]


def eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise EmotuneError(f"{type(tokenizer).__name__}: no eos token; generation could not stop")
    return tokenizer.eos_token_id


def tokenize_prompts(frame: pd.DataFrame, tokenizer, classes: list[str], multi_label: bool,
                     max_length: int, prompt: dict | None = None) -> pd.DataFrame:
    """Columns id, prompt_ids, answer_ids (ending with eos), labels (class id / multi-hot), length.
    `prompt`: {"system", "instruction"} (params.yaml tokenize.prompt; None: the defaults)."""
    from emotune.rows import label_targets

    fmt = prompt_format(tokenizer, classes, multi_label, **prompt_settings(prompt))
    texts = tokenizer(frame["text"].tolist(), add_special_tokens=False, truncation=True,
                      max_length=max_length)["input_ids"]
    answers = [fmt.answer_prefix + answer_text(list(names), multi_label) for names in frame["labels"]]
    answer_ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    prompt = [np.asarray(fmt.prefix_ids + ids + fmt.suffix_ids, dtype=np.int32) for ids in texts]
    answer = [np.asarray(ids + [eos_id(tokenizer)], dtype=np.int32) for ids in answer_ids]
    return pd.DataFrame({
        "id": frame["id"].astype(str).tolist(), "prompt_ids": prompt, "answer_ids": answer,
        "labels": label_targets(frame["labels"], classes, multi_label, "generative"),
        "length": [len(p) + len(a) for p, a in zip(prompt, answer)],
    })


def parse_answer(text: str, classes: list[str], multi_label: bool) -> list[str] | None:
    """The labels a generated answer names, or None when it is not a valid answer. Case and the
    surrounding spaces and a final full stop are forgiven; anything else (an unknown word, a repeated
    label, extra words) makes the answer invalid."""
    lookup = {c.lower(): c for c in classes}
    answer = text.strip().rstrip(".").strip().lower()
    if not multi_label:
        return [lookup[answer]] if answer in lookup else None
    if answer == NONE_ANSWER:
        return []
    # One-word labels: commas or plain spaces separate them (some tokenizers drop the comma in decoding);
    # labels with spaces need the commas.
    splitter = r"\s*,\s*" if any(" " in c for c in classes) else r"[\s,]+"
    parts = [p for p in re.split(splitter, answer) if p]
    if not parts or len(set(parts)) != len(parts) or any(p not in lookup for p in parts):
        return None
    return [lookup[p] for p in parts]
