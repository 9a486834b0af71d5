"""params.yaml validation: every mistake stops before any work, naming the key and a fix."""
from __future__ import annotations

import pytest

from stages.config import DatasetSpec, EmotuneError, LineFiles, Params, load_params, parse_params


def test_shipped_params_load():
    params = load_params()
    assert isinstance(params, Params)
    assert params.datasets, "the default pipeline runs at least one dataset"
    for name in params.datasets:
        assert isinstance(params.dataset(name), DatasetSpec)
    emotion = params.dataset("tweet_eval_emotion")
    assert isinstance(emotion.files["train"], LineFiles)
    assert emotion.tweets and emotion.label_ids
    ec = params.dataset("semeval2018_ec")
    assert ec.multi_label and sorted(ec.label_columns) == sorted(ec.labels)


def error_for(raw: dict) -> str:
    with pytest.raises(EmotuneError) as info:
        parse_params(raw)
    return str(info.value)


def test_top_level_typo_names_key_and_suggests_fix(shipped_params):
    shipped_params["clen"] = shipped_params.pop("clean")
    message = error_for(shipped_params)
    assert "clen" in message
    assert "did you mean 'clean'?" in message


def test_unknown_dataset_in_datasets_suggests_the_registered_name(shipped_params):
    shipped_params["datasets"] = ["emotoin"]
    message = error_for(shipped_params)
    assert "'emotoin'" in message
    assert "did you mean 'emotion'?" in message
    assert "datasets[0]" in message


@pytest.mark.parametrize("section, key, value, expected", [
    pytest.param("clean", "min_chars", "x", ["min_chars", "expected int", "'x'"], id="str_for_int"),
    pytest.param("clean", "min_chars", True, ["min_chars", "expected int", "True"], id="bool_for_int"),
    pytest.param("fetch", "validation_fraction", "ten percent", ["validation_fraction", "expected float"],
                 id="str_for_float"),
    pytest.param("audit", "action", "prune", ["audit.action", "'prune'", "'report'", "'drop'"],
                 id="bad_literal"),
    pytest.param("fetch", "source", "mirorr", ["fetch.source", "did you mean 'mirror'?"], id="literal_typo"),
    pytest.param("clean", "dedupe", "normalized", ["clean.dedupe", "did you mean 'normalised'?"],
                 id="us_spelling"),
])
def test_wrong_value_names_key_and_allowed_values(shipped_params, section, key, value, expected):
    shipped_params[section][key] = value
    message = error_for(shipped_params)
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"


def test_typo_in_dataset_entry_suggests_the_key(shipped_params):
    entry = shipped_params["dataset_registry"]["emotion"]
    entry["lables"] = entry.pop("labels")
    message = error_for(shipped_params)
    assert "dataset_registry.emotion.lables" in message
    assert "did you mean 'labels'?" in message


def test_typo_inside_line_files_names_the_key(shipped_params):
    """A typo in a TweetEval-style {text, labels} entry should say which key, not just 'wrong type'."""
    files = shipped_params["dataset_registry"]["tweet_eval_emotion"]["files"]
    files["train"] = {"text": "train_text.txt", "label": "train_labels.txt"}
    message = error_for(shipped_params)
    assert "files.train" in message
    assert "did you mean 'labels'?" in message, message


def test_label_columns_must_match_labels(shipped_params):
    entry = shipped_params["dataset_registry"]["semeval2025_eng"]
    entry["label_columns"] = ["anger", "fear", "joy", "sadness", "suprise"]
    message = error_for(shipped_params)
    assert "dataset_registry.semeval2025_eng" in message
    assert "label_columns" in message and "'suprise'" in message and "'surprise'" in message


def test_label_columns_require_multi_label(make_spec):
    with pytest.raises(EmotuneError, match="set task: multi_label"):
        make_spec(files={"train": "a.csv", "test": "b.csv"}, label_columns=["joy", "anger", "sadness"])


def test_unknown_split_name_suggests_the_right_one(make_spec):
    with pytest.raises(EmotuneError, match=r"unknown split 'valid'.*did you mean 'validation'\?"):
        make_spec(files={"train": "a.csv", "valid": "v.csv", "test": "b.csv"}, label_column="label")


def test_dataset_needs_files_or_hub(make_spec):
    with pytest.raises(EmotuneError, match="give files .* or hub"):
        make_spec(label_column="label")


def test_params_dataset_lookup_suggests_name(make_params):
    params = make_params({"emotion": {"task": "single_label", "labels": ["a", "b"],
                                      "official_metric": "accuracy", "hub": {"path": "x/y"}}})
    with pytest.raises(EmotuneError, match=r"unknown dataset 'emotoin' \(did you mean 'emotion'\?\)"):
        params.dataset("emotoin")
