"""params.yaml validation: every mistake stops before any work, naming the key and a fix."""
from __future__ import annotations

import pytest
import yaml

from emotune.config import DatasetSpec, LineFiles, Params, group_notes, load_params, parse_params
from emotune.errors import EmotuneError


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


# ---------------------------------------------------------------------------------------------
# Float notation (issue 15): YAML 1.1 reads `2e-5` as a string, and `dvc exp run -S train.lr=2e-5`
# writes `2e-05`; every float key takes every float notation.
# ---------------------------------------------------------------------------------------------
def float_keys() -> list[tuple[str, str]]:
    """(section, key) of every float-typed key of the sections parse_params builds."""
    import dataclasses
    import typing

    keys = []
    for section in dataclasses.fields(Params):
        cls = typing.get_type_hints(Params)[section.name]
        if not dataclasses.is_dataclass(cls):
            continue
        for name, hint in typing.get_type_hints(cls).items():
            if hint is float or float in typing.get_args(hint):
                keys.append((section.name, name))
    return keys


def test_every_float_key_is_found():
    assert {("train", "lr"), ("fetch", "validation_fraction"), ("adapter", "dropout"),
            ("eval", "threshold"), ("audit", "max_drop_fraction")} <= set(float_keys())


@pytest.mark.parametrize("section, key", float_keys(), ids=[f"{s}.{k}" for s, k in float_keys()])
@pytest.mark.parametrize("notation", ["1e-1", "1e-01", "1E-1", "1.0e-1", "+1e-1", ".1", "0.1"])
def test_every_float_key_accepts_every_float_notation(shipped_params, section, key, notation):
    shipped_params[section][key] = notation
    assert getattr(getattr(parse_params(shipped_params), section), key) == 0.1


def test_lr_written_as_in_papers_loads_from_yaml(tmp_path, shipped_params):
    import yaml

    text = yaml.safe_dump(shipped_params, sort_keys=False).replace("  lr: null", "  lr: 2e-5")
    assert yaml.safe_load(text)["train"]["lr"] == "2e-5", "PyYAML still reads it as a string"
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_params(path).train.lr == 2e-5
    shipped_params["train"]["lr"] = "2e-05"  # what `dvc exp run -S train.lr=2e-5` writes
    assert parse_params(shipped_params).train.lr == 2e-5


@pytest.mark.parametrize("value", ["ten percent", "nan", "inf", "1e", "0x10", "1_0"])
def test_strings_that_are_not_plain_numbers_stay_errors(shipped_params, value):
    shipped_params["train"]["lr"] = value
    assert "train.lr" in error_for(shipped_params)


# ---------------------------------------------------------------------------------------------
# Range checks and run groups (issue 15)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -0.1, 1, 1.5])
def test_validation_fraction_outside_0_1_is_named(shipped_params, value):
    shipped_params["fetch"]["validation_fraction"] = value
    message = error_for(shipped_params)
    assert "fetch.validation_fraction" in message and "in (0, 1)" in message, message


def test_a_group_on_a_dataset_outside_datasets_is_caught_with_the_fix(shipped_params):
    """It used to pass validation and fail in DVC after training: No such file or directory:
    data/audited/tweet_eval_emotion. (large and generative iterate their own lists in dvc.yaml.)"""
    # large and generative are opt-in (empty) in the shipped params: switch them on as a user would
    shipped_params["large"]["datasets"] = ["tweet_eval_emotion"]
    shipped_params["generative"]["datasets"] = ["tweet_eval_emotion"]
    shipped_params["datasets"] = ["emotion"]
    message = error_for(shipped_params)
    for part in ("large.datasets", "['tweet_eval_emotion'] is not in datasets ['emotion']",
                 "data/audited/<dataset>", "-S 'large.datasets=[]'"):
        assert part in message, f"{part!r} missing from: {message}"
    shipped_params["large"]["datasets"] = []
    assert "generative.datasets" in error_for(shipped_params)
    shipped_params["generative"]["datasets"] = []
    assert parse_params(shipped_params).datasets == ["emotion"]


def test_one_flag_runs_one_dataset_with_its_reference_run_and_baselines(shipped_params):
    """`dvc exp run -S 'datasets=[x]'` alone (issue 28): the reference runs follow `datasets`, the zero-shot
    baseline scores its listed datasets among `datasets` and skips the others with one line."""
    shipped_params["datasets"] = ["emotion"]
    params = parse_params(shipped_params)
    assert [(m.name, m.runs()) for m in params.matrices()] == [
        ("", [("emotion", "minilm", a) for a in ("head", "lora", "ia3", "qlora")]),
        ("reference", [("emotion", "minilm", "full")])]
    assert params.zero_shot_datasets() == []
    assert group_notes(params) == ["baseline.zero_shot.datasets: skipped tweet_eval_emotion, not in datasets "
                                   "[emotion] (the zero-shot baseline scores its datasets among `datasets`)"]
    shipped_params["datasets"] = ["tweet_eval_emotion", "emotion"]
    params = parse_params(shipped_params)
    assert params.zero_shot_datasets() == ["tweet_eval_emotion"] and group_notes(params) == []
    assert params.matrices()[1].datasets == ["tweet_eval_emotion", "emotion"]
    shipped_params["baseline"]["zero_shot"]["datasets"] = None  # null: every dataset of `datasets`
    assert parse_params(shipped_params).zero_shot_datasets() == ["tweet_eval_emotion", "emotion"]


@pytest.mark.parametrize("value", [["emotion"], []])
def test_a_reference_list_says_the_group_follows_datasets(shipped_params, value):
    shipped_params["reference"]["datasets"] = value
    message = error_for(shipped_params)
    assert "reference.datasets" in message and "follow `datasets`" in message and \
        "-S 'reference.adapters=[]'" in message, message


@pytest.mark.parametrize("group", ["large", "generative", "tune"])
def test_a_listed_group_refuses_null_datasets(shipped_params, group):
    """dvc.yaml iterates ${large.datasets} (and generative, tune): with null DVC itself stops with "'Value'
    object is not iterable", naming no key."""
    shipped_params.setdefault(group, {})["datasets"] = None
    message = error_for(shipped_params)
    assert f"{group}.datasets: null" in message and f"-S '{group}.datasets=[]'" in message, message


def test_rank_decode_is_checked_on_the_scored_datasets_only(shipped_params):
    shipped_params["baseline"]["zero_shot"]["datasets"] = None  # all four default datasets, two multi-label
    message = error_for(shipped_params)
    assert "['semeval2018_ec', 'semeval2025_eng'] are multi-label" in message, message
    shipped_params["datasets"] = ["emotion", "tweet_eval_emotion"]
    assert parse_params(shipped_params).zero_shot_datasets() == ["emotion", "tweet_eval_emotion"]


def test_allow_empty_labels_is_for_multi_label_only(make_spec):
    with pytest.raises(EmotuneError, match="allow_empty_labels: only multi-label"):
        make_spec(files={"train": "a.csv", "test": "b.csv"}, label_column="label", allow_empty_labels=True)


def test_check_names_what_the_one_flag_run_skips(shipped_params, tmp_path, monkeypatch, capsys):
    from emotune.cli import check_main

    shipped_params["datasets"] = ["emotion"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shipped_params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    check_main([])
    out = capsys.readouterr().out
    assert "baseline.zero_shot.datasets: skipped tweet_eval_emotion, not in datasets [emotion]" in out, out
    assert "reference: 1 runs: emotion/minilm/full" in out and "zero-shot baseline: " not in out, out
    assert "extra seeds" not in out, out
    shipped_params["seeds"] = [1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shipped_params), encoding="utf-8")
    check_main([])
    out = capsys.readouterr().out
    runs = len(shipped_params["adapters"]) * 2
    assert f"extra seeds 1, 2: {runs} runs, the main matrix once more per seed" in out, out
