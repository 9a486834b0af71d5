"""tokenize: one pass per (dataset, tokenizer), truncated, never padded; label targets per task; length
percentiles and truncation rate; prompts for decoders. Offline, tiny tokenizers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from toy_runs import DATASET, LABELS, local_entry, toy_params, write_audited

from emotune import plan as plan_stage
from emotune import prompts, testing
from emotune import tokenize as tk
from emotune.errors import EmotuneError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {t: testing.save_tiny_model(t, root / f"tiny-{t}") for t in ("bert", "llama")}


def tokenize(tmp_path, model_folder, task="single_label", max_length=16, long_every=5):
    audited = write_audited(tmp_path / "audited" / DATASET, task, sizes=(50, 20, 20), long_every=long_every)
    params = toy_params(task, tokenize={"max_length": max_length})
    plan = plan_stage.tokenize_plan(params, DATASET, local_entry(model_folder))
    out = tmp_path / "tokenized"
    out.mkdir()
    return tk.tokenize_dataset(plan, audited, out), out, audited


def test_single_label_rows_are_truncated_not_padded(tiny, tmp_path):
    report, out, audited = tokenize(tmp_path, tiny["bert"])
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.parquet", "train.parquet",
                                                     "validation.parquet"]
    train = pd.read_parquet(out / "train.parquet")
    source = pd.read_parquet(audited / "train.parquet")
    assert list(train.columns) == ["id", "input_ids", "attention_mask", "labels", "length"]
    assert list(train["id"]) == list(source["id"])
    lengths = train["input_ids"].map(len)
    assert (lengths == train["length"]).all()
    assert (train["attention_mask"].map(lambda m: bool(np.all(m == 1)))).all(), "no padding stored"
    assert lengths.max() == 16 and lengths.min() < 16, "truncated at max_length, short rows left short"
    assert (train["input_ids"].map(lambda ids: ids[-1]) == 3).all(), "[SEP] (id 3) survives truncation"
    assert train["labels"].tolist() == [LABELS.index(ls[0]) for ls in source["labels"]]

    stats = report["splits"]["train"]
    assert stats["rows"] == 50 and stats["max"] > 200  # untruncated: the 200-word rows
    assert stats["truncated"] == (source["text"].str.split().str.len() > 14).sum()
    assert stats["truncation_rate"] == round(stats["truncated"] / 50, 4)
    assert stats["p50"] <= stats["p90"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert stats["tokens"] == int(lengths.sum())
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"]["checksums"] == {"train.csv": "0" * 64}
    assert set(meta["files"]) == {"train.parquet", "validation.parquet", "test.parquet"}
    assert meta["generative"] is False and meta["model_type"] == "bert"


def test_multi_label_targets_are_multi_hot_floats(tiny, tmp_path):
    _, out, audited = tokenize(tmp_path, tiny["bert"], task="multi_label", long_every=0)
    train = pd.read_parquet(out / "train.parquet")
    source = pd.read_parquet(audited / "train.parquet")
    for row, names in zip(train["labels"], source["labels"]):
        assert row.dtype.kind == "f" and list(row) == [float(c in names) for c in LABELS]


def test_decoders_also_get_prompts_for_the_generative_recipe(tiny, tmp_path):
    report, out, audited = tokenize(tmp_path, tiny["llama"], max_length=12)
    assert {"gen_train.parquet", "gen_validation.parquet", "gen_test.parquet"} <= {p.name for p in out.iterdir()}
    gen = pd.read_parquet(out / "gen_train.parquet")
    source = pd.read_parquet(audited / "train.parquet")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["llama"])
    fmt = prompts.prompt_format(tokenizer, LABELS, False)
    for prompt, answer, names in zip(gen["prompt_ids"], gen["answer_ids"], source["labels"]):
        prompt, answer = list(prompt), list(answer)
        assert prompt[:len(fmt.prefix_ids)] == fmt.prefix_ids and prompt[-len(fmt.suffix_ids):] == fmt.suffix_ids
        assert len(prompt) - len(fmt.prefix_ids) - len(fmt.suffix_ids) <= 12, "only the text is truncated"
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer[:-1]).strip() == names[0]
    assert "generative" in report and json.loads((out / "meta.json").read_text())["generative"] is True


def test_chat_template_prompts(tiny, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["llama"])
    tokenizer.chat_template = ("{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant{% endif %}")
    fmt = prompts.prompt_format(tokenizer, LABELS, True)
    assert fmt.chat_template and fmt.answer_prefix == ""
    assert tokenizer.decode(fmt.prefix_ids).startswith("<s> <unk>")  # "<s>" became the bos id
    assert tokenizer.convert_ids_to_tokens(fmt.suffix_ids)[-2:] == ["<s>", "<unk>"]


SYSTEM = "you are very happy"  # words the tiny tokenizer knows, so their ids can be found in the prompt


def _contains(ids: list[int], part: list[int]) -> int:
    """Where `part` starts inside `ids` (-1: absent)."""
    return next((i for i in range(len(ids) - len(part) + 1) if ids[i:i + len(part)] == part), -1)


def test_system_message_and_instruction_from_params_in_a_plain_prompt(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["llama"])
    fmt = prompts.prompt_format(tokenizer, LABELS, False, system=SYSTEM, instruction="say {labels} now")
    assert fmt.instruction == "say joy, anger, sadness now" and fmt.system == SYSTEM
    system_ids = tokenizer(SYSTEM, add_special_tokens=False)["input_ids"]
    assert fmt.prefix_ids[:1 + len(system_ids)] == [tokenizer.bos_token_id, *system_ids]  # first, after bos
    assert _contains(prompts.prompt_format(tokenizer, LABELS, False).prefix_ids, system_ids) == -1


@pytest.mark.parametrize("has_system_role", [True, False])
def test_system_message_in_chat_templates(tiny, has_system_role):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["llama"])
    refuse = ("" if has_system_role else
              "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}")
    tokenizer.chat_template = (refuse + "{% for m in messages %}<s>{{ m['role'] }} {{ m['content'] }}</s>{% endfor %}"
                               "{% if add_generation_prompt %}<s>assistant{% endif %}")
    fmt = prompts.prompt_format(tokenizer, LABELS, False, system=SYSTEM)
    system_ids = tokenizer(SYSTEM, add_special_tokens=False)["input_ids"]
    at = _contains(fmt.prefix_ids, system_ids)
    assert at >= 0 and fmt.system_in_user is (not has_system_role)
    # its own turn (<s>system ...</s> then <s>user ...) or the start of the user's turn
    turns = [i for i, t in enumerate(fmt.prefix_ids) if t == tokenizer.bos_token_id]
    assert len(turns) == (2 if has_system_role else 1) and at == turns[0] + 2


def test_a_prompt_instruction_with_another_placeholder_is_refused():
    with pytest.raises(EmotuneError, match=r"tokenize.prompt.instruction: \{labels\} is the only placeholder"):
        toy_params(tokenize={"prompt": {"instruction": "classify {text} into {labels}"}})
    with pytest.raises(EmotuneError, match="tokenize.prompt.system: empty"):
        toy_params(tokenize={"prompt": {"system": "  "}})


def test_the_tokenize_stage_builds_prompts_with_the_params_system_message(tiny, tmp_path):
    from transformers import AutoTokenizer

    audited = write_audited(tmp_path / "audited" / DATASET, sizes=(20, 10, 10))
    params = toy_params(tokenize={"max_length": 16, "prompt": {"system": SYSTEM}})
    plan = plan_stage.tokenize_plan(params, DATASET, local_entry(tiny["llama"]))
    out = tmp_path / "tokenized"
    out.mkdir()
    tk.tokenize_dataset(plan, audited, out)
    system_ids = AutoTokenizer.from_pretrained(tiny["llama"])(SYSTEM, add_special_tokens=False)["input_ids"]
    assert all(_contains(list(p), system_ids) == 1 for p in pd.read_parquet(out / "gen_test.parquet")["prompt_ids"])
    assert json.loads((out / "meta.json").read_text())["prompt"] == {"system": SYSTEM, "instruction": None}


@pytest.mark.parametrize("text, multi, expected", [
    ("joy", False, ["joy"]), (" Joy.", False, ["joy"]), ("joyful", False, None), ("joy anger", False, None),
    ("", False, None), ("anger, joy", True, ["anger", "joy"]), ("anger joy", True, ["anger", "joy"]),
    ("none", True, []), ("joy, joy", True, None), ("joy, happiness", True, None), ("", True, None),
])
def test_parse_answer_never_guesses(text, multi, expected):
    assert prompts.parse_answer(text, LABELS, multi) == expected


def test_label_errors_are_clear():
    with pytest.raises(EmotuneError, match="not among the dataset's labels"):
        tk.label_targets(pd.Series([["joy"], ["fear"]]), LABELS, False, "toy/train")
    with pytest.raises(EmotuneError, match="single-label dataset, but row 1"):
        tk.label_targets(pd.Series([["joy"], ["joy", "anger"]]), LABELS, False, "toy/train")


def test_max_length_never_exceeds_the_model_limit_and_says_so(tiny, capsys):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny["bert"])
    tokenizer.model_max_length = 64
    assert tk.effective_max_length(tokenizer, 32) == 32
    assert capsys.readouterr().err == ""
    assert tk.effective_max_length(tokenizer, 128) == 64
    assert capsys.readouterr().err == ("warning: tokenize.max_length 128 is above what this model reads (64 tokens, "
                                       "its tokenizer's model_max_length): texts are cut at 64\n")
    tokenizer.model_max_length = int(1e30)  # transformers' "unknown": no limit to apply
    assert tk.effective_max_length(tokenizer, 100000) == 100000
