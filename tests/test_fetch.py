"""Unit tests of stages.data_registry on small files declared the way a user would in params.yaml.

Every reader must give the unified `id, text, labels` frame; every bad input must stop with a
message that names the file, the line (or the key) and a fix.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import tracemalloc
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest

from emotune.config import FetchConfig
from emotune.data_registry import HubUnavailable, fetch_dataset, read_hub
from emotune.errors import EmotuneError

SPLITS = ("train", "validation", "test")


def fetch(spec, seed=42, fraction=0.1):
    return fetch_dataset(spec, FetchConfig(validation_fraction=fraction), seed)


def write(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return str(path)


def as_records(frame: pd.DataFrame) -> list[tuple]:
    return [(row.id, row.text, list(row.labels)) for row in frame.itertuples(index=False)]


# ---------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------
def test_single_label_csv(tmp_path, make_spec):
    train = 'text,label\n"Hello, world",joy\nso angry,anger\n'
    files = {s: write(tmp_path, f"{s}.csv", train) for s in SPLITS}
    fetched = fetch(make_spec(files=files, label_column="label"))

    assert set(fetched.splits) == set(SPLITS)
    for split in SPLITS:
        frame = fetched.splits[split]
        assert list(frame.columns) == ["id", "text", "labels"]
        assert as_records(frame) == [(f"toy-{split}-000000", "Hello, world", ["joy"]),
                                     (f"toy-{split}-000001", "so angry", ["anger"])]
    assert fetched.source.startswith("local:")
    assert fetched.checksums[files["train"]] == hashlib.sha256(train.encode()).hexdigest()


def test_multi_label_tsv_with_01_columns(tmp_path, make_spec):
    content = ("ID\tTweet\tjoy\tanger\tsadness\n"
               "t1\tgreat and awful\t1\t1\t0\n"
               "t2\tnothing at all\t0\t0\t0\n"
               "t3\tso sad\t0\t0\t1\n")
    files = {s: write(tmp_path, f"{s}.tsv", content) for s in SPLITS}
    spec = make_spec(task="multi_label", official_metric="jaccard", files=files, text_column="Tweet",
                     id_column="ID", label_columns=["joy", "anger", "sadness"], allow_empty_labels=True)
    fetched = fetch(spec)
    assert as_records(fetched.splits["test"]) == [("t1", "great and awful", ["joy", "anger"]),
                                                  ("t2", "nothing at all", []),
                                                  ("t3", "so sad", ["sadness"])]


def test_jsonl_with_delimited_label_list(tmp_path, make_spec):
    rows = [{"uid": 7, "body": "mixed feelings", "emotions": "joy|sadness"},
            {"uid": 8, "body": "meh", "emotions": ""},
            {"uid": 9, "body": "grr", "emotions": " anger "}]
    content = "".join(json.dumps(r) + "\n" for r in rows)
    files = {s: write(tmp_path, f"{s}.jsonl", content) for s in SPLITS}
    spec = make_spec(task="multi_label", official_metric="micro_f1", files=files, text_column="body",
                     id_column="uid", label_column="emotions", label_delimiter="|", allow_empty_labels=True)
    fetched = fetch(spec)
    assert as_records(fetched.splits["train"]) == [("7", "mixed feelings", ["joy", "sadness"]),
                                                   ("8", "meh", []),
                                                   ("9", "grr", ["anger"])]


def test_tweeteval_lines_with_label_ids(tmp_path, make_spec):
    files = {}
    for split in SPLITS:
        write(tmp_path, f"{split}_text.txt", "first tweet \n@user second tweet \nthird \n")
        write(tmp_path, f"{split}_labels.txt", "2\n0\n1\n")
        files[split] = {"text": str(tmp_path / f"{split}_text.txt"),
                        "labels": str(tmp_path / f"{split}_labels.txt")}
    spec = make_spec(files=files, format="lines", label_ids=True, tweets=True)
    fetched = fetch(spec)
    frame = fetched.splits["validation"]
    assert list(frame["text"]) == ["first tweet ", "@user second tweet ", "third "]  # raw; clean normalises
    assert list(frame["labels"]) == [["sadness"], ["joy"], ["anger"]]
    assert len(fetched.checksums) == 6


# ---------------------------------------------------------------------------------------------
# Validation carved from train
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_validation_spec(tmp_path, make_spec):
    labels = ["joy"] * 30 + ["anger"] * 20 + ["sadness"] * 10
    train = "id,text,label\n" + "".join(f"r{i},text number {i},{l}\n" for i, l in enumerate(labels))
    files = {"train": write(tmp_path, "train.csv", train),
             "test": write(tmp_path, "test.csv", "id,text,label\nt0,a test,joy\n")}
    return make_spec(files=files, label_column="label", id_column="id")


def test_validation_is_carved_stratified_and_seeded(no_validation_spec):
    first = fetch(no_validation_spec, seed=1, fraction=0.2)
    train, val = first.splits["train"], first.splits["validation"]
    assert len(train) + len(val) == 60 and len(val) == 12
    assert not set(train["id"]) & set(val["id"])
    # stratified: the validation split keeps train's 3:2:1 label proportions
    assert Counter(l for ls in val["labels"] for l in ls) == {"joy": 6, "anger": 4, "sadness": 2}
    assert len(first.splits["test"]) == 1
    assert any("carved" in note and "seed 1" in note for note in first.notes)

    again = fetch(no_validation_spec, seed=1, fraction=0.2)
    assert list(again.splits["validation"]["id"]) == list(val["id"])
    assert list(again.splits["train"]["id"]) == list(train["id"])
    other = fetch(no_validation_spec, seed=2, fraction=0.2)
    assert set(other.splits["validation"]["id"]) != set(val["id"])


def test_carving_a_tiny_train_split_does_not_crash(tmp_path, make_spec):
    """10 rows, 3 labels, 10% validation: one validation row cannot hold every label. The fetch
    must still work (e.g. without stratification) or say what to change, not raise sklearn's
    ValueError with a traceback."""
    labels = ["joy"] * 4 + ["anger"] * 3 + ["sadness"] * 3
    train = "text,label\n" + "".join(f"text {i},{l}\n" for i, l in enumerate(labels))
    files = {"train": write(tmp_path, "train.csv", train),
             "test": write(tmp_path, "test.csv", "text,label\na test,joy\n")}
    spec = make_spec(files=files, label_column="label")
    try:
        fetched = fetch(spec, fraction=0.1)
    except EmotuneError as exc:
        assert "validation_fraction" in str(exc)
    else:
        assert len(fetched.splits["train"]) + len(fetched.splits["validation"]) == 10


# ---------------------------------------------------------------------------------------------
# Bad input: the message names the file, the line or key, and a fix
# ---------------------------------------------------------------------------------------------
GOOD_CSV = "text,label\nhello,joy\n"
TOY_SPEC = {"label_column": "label"}
EC_SPEC = {"task": "multi_label", "official_metric": "jaccard", "label_columns": ["joy", "anger", "sadness"]}

BAD_INPUTS = [
    # id, train.csv content, spec overrides, expected message parts
    ("malformed_row", "text,label\nhello,joy\nhi,there,anger\n", TOY_SPEC,
     ["train.csv", "line 3", "3 fields, expected 2", "delimiter"]),
    ("comma_file_declared_tsv", "text,label\nhello,joy\n", {**TOY_SPEC, "format": "tsv"},
     ["train.csv", "line 1", "comma-separated", "delimiter: ','", "dataset_registry.toy"]),
    ("missing_text_column", "txt,label\nhello,joy\n", TOY_SPEC,
     ["train.csv", "no column 'text'", "did you mean 'txt'?", "dataset_registry.toy"]),
    ("missing_label_column", "text,lable\nhello,joy\n", TOY_SPEC,
     ["train.csv", "no column 'label'", "did you mean 'lable'?", "dataset_registry.toy"]),
    ("unknown_label", "text,label\nhello,joy\nhi,joyy\nho,fear\n", TOY_SPEC,
     ["train.csv", "line 3", "unknown label 'joyy'", "did you mean 'joy'?", "line 4", "'fear'",
      "dataset_registry.toy.labels"]),
    ("non_utf8", b"text,label\nhello,joy\ncaf\xe9,anger\n", TOY_SPEC,
     ["train.csv", "line 3", "0xe9", "UTF-8", "iconv"]),
    ("empty_file", "\n  \n", TOY_SPEC, ["train.csv", "empty"]),
    ("header_only", "text,label\n", TOY_SPEC,
     ["train.csv", "no data rows", "only a header", "add the examples below the header",
      "dataset_registry.toy.files.train"]),
    ("nul_byte_in_text", "text,label\nhello,joy\nhel\x00lo world,anger\nbye,joy\n", TOY_SPEC,
     ["train.csv", "NUL bytes", "line(s) 3", "Remove them"]),
    ("utf16_with_bom", "text,label\nhello,joy\n".encode("utf-16"), TOY_SPEC,
     ["train.csv", "UTF-16-LE text", "byte-order mark", "iconv -f UTF-16-LE -t UTF-8"]),
    ("utf16_without_bom", "text,label\nhello,joy\nhi,anger\n".encode("utf-16-be"), TOY_SPEC,
     ["train.csv", "UTF-16-BE text without a byte-order mark", "iconv -f UTF-16-BE"]),
    ("gzip_file", gzip.compress(b"text,label\nhello,joy\n"), TOY_SPEC,
     ["train.csv", "gzip-compressed", "gunzip"]),
    ("xlsx_file", b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), TOY_SPEC,
     ["train.csv", "ZIP archive", ".xlsx", "save the sheet as CSV"]),
    ("binary_file", bytes(range(256)) * 8, TOY_SPEC, ["train.csv", "binary file, not text"]),
    ("numeric_labels_without_label_ids", "text,label\nhello,0\nhi,2\n", TOY_SPEC,
     ["train.csv", "line 2", "unknown label '0'", "line 3", "label_ids: true", "0 = 'joy'"]),
    ("wrong_label_separator", "text,labels\nhello,joy;;anger\nhi,sadness\n",
     {"task": "multi_label", "official_metric": "jaccard", "label_column": "labels", "label_delimiter": "|"},
     ["train.csv", "line 2", "'joy;;anger' looks like labels joined by ';'", "label_delimiter: ';'"]),
    ("several_labels_in_a_single_label_column", "text,label\nhello,joy|anger\n", TOY_SPEC,
     ["train.csv", "line 2", "several labels joined by '|'", "label_delimiter: '|'", "task: multi_label"]),
    ("empty_label_set", "text,joy,anger,sadness\nhello,1,0,0\nhi,0,0,0\nho,0,1,0\nhu,0,0,0\n", EC_SPEC,
     ["train.csv", "2 row(s) with no label at all", "lines 3, 5", "allow_empty_labels: true"]),
    ("flag_column_holds_2", "text,joy,anger,sadness\nhello,1,0,0\nhi,0,2,0\n", EC_SPEC,
     ["train.csv", "line 3", "column 'anger' is '2', expected 0 or 1"]),
    ("duplicate_id", "id,text,label\na,hello,joy\na,hi,joy\n", {**TOY_SPEC, "id_column": "id"},
     ["train.csv", "id 'a'", "unique"]),
    ("windows_1252", b"text,label\nit\x92s \x93fine\x94,joy\n", TOY_SPEC,
     ["train.csv", "line 2", "byte 0x92", "Windows-1252", "iconv -f cp1252 -t utf-8"]),
    ("c1_controls_of_a_latin1_conversion", "text,label\nhello,joy\nit\u0092s fine,joy\n".encode(), TOY_SPEC,
     ["train.csv", "C1 control characters", "U+0092", "line(s) 3", "iconv -f cp1252 -t utf-8"]),
    ("empty_label_cell", "text,label\nhello,joy\nhi,\nho,\"  \"\n", TOY_SPEC,
     ["train.csv", "empty label on 2 row(s) (lines 3, 4)", "fill in the label column 'label'"]),
]


@pytest.mark.parametrize("content, overrides, expected",
                         [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS])
def test_bad_input_message(tmp_path, make_spec, content, overrides, expected):
    files = {"train": write(tmp_path, "train.csv", content),
             "test": write(tmp_path, "test.csv", GOOD_CSV if "label_column" in overrides
                           else "text,joy,anger,sadness\nhello,1,0,0\n")}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, **overrides))
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"


def test_a_wrong_separator_never_gets_a_did_you_mean(tmp_path, make_spec):
    """`joy;;fear` is close to no label name on its own; "did you mean 'fear'?" sent the user the wrong way."""
    files = {"train": write(tmp_path, "train.csv", "text,labels\nhello,joy;;anger\n"),
             "test": write(tmp_path, "test.csv", "text,labels\nhello,joy\n")}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, task="multi_label", official_metric="jaccard", label_column="labels",
                        label_delimiter="|"))
    assert "did you mean" not in str(info.value)


def test_empty_label_sets_are_kept_where_the_dataset_allows_them(tmp_path, make_spec):
    content = "text,joy,anger,sadness\nhello,1,0,0\nnothing to feel,0,0,0\n"
    files = {s: write(tmp_path, f"{s}.csv", content) for s in ("train", "test")}
    fetched = fetch(make_spec(files=files, **EC_SPEC, allow_empty_labels=True))
    assert list(fetched.splits["test"]["labels"]) == [["joy"], []]


def test_a_folder_given_as_a_file_is_named(tmp_path, make_spec):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part-0.csv").write_text(GOOD_CSV)
    files = {"train": str(tmp_path / "train"), "test": write(tmp_path, "test.csv", GOOD_CSV)}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="label"))
    message = str(info.value)
    for part in ("is a folder, not a file", "dataset_registry.toy.files", "part-0.csv"):
        assert part in message, f"{part!r} missing from: {message}"


def test_a_1_2_mb_text_field_loads_without_a_memory_blow_up(tmp_path, make_spec):
    """csv's default limit (131072 characters per field) rejected it; the limit is restored after."""
    long_text = "so much dread " * 90_000  # 1.26 MB
    content = f'text,label\n"{long_text}",fear\nshort one,joy\n'
    files = {s: write(tmp_path, f"{s}.csv", content) for s in ("train", "validation", "test")}
    spec = make_spec(files=files, label_column="label", labels=["joy", "fear"])
    limit_before = csv.field_size_limit()
    tracemalloc.start()
    try:
        fetched = fetch(spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fetched.splits["train"]["text"][0] == long_text
    assert csv.field_size_limit() == limit_before
    # 1.26 MB files (bytes, decoded text, the csv buffer and the field): measured peak 18.7 MB; a reader
    # copying the file per row, or a limit raised by building huge buffers, would be far above.
    assert peak < 40e6, f"peak {peak / 1e6:.1f} MB"


def test_invalid_jsonl_line(tmp_path, make_spec):
    files = {"train": write(tmp_path, "train.jsonl", '{"text": "a", "label": "joy"}\n{"text": "b", label}\n'),
             "test": write(tmp_path, "test.jsonl", '{"text": "a", "label": "joy"}\n')}
    with pytest.raises(EmotuneError, match=r"train\.jsonl: line 2: not valid JSON .*one JSON object"):
        fetch(make_spec(files=files, label_column="label"))


def test_label_id_out_of_range(tmp_path, make_spec):
    files = {}
    for split in ("train", "test"):
        write(tmp_path, f"{split}_text.txt", "a\nb\n")
        write(tmp_path, f"{split}_labels.txt", "0\n3\n" if split == "train" else "0\n1\n")
        files[split] = {"text": str(tmp_path / f"{split}_text.txt"),
                        "labels": str(tmp_path / f"{split}_labels.txt")}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, format="lines", label_ids=True))
    message = str(info.value)
    for part in ("train_labels.txt", "line 2", "'3'", "0..2", "dataset_registry.toy.labels"):
        assert part in message, f"{part!r} missing from: {message}"


def test_lines_files_must_align(tmp_path, make_spec):
    write(tmp_path, "t.txt", "a\nb\nc\n")
    write(tmp_path, "l.txt", "0\n1\n")
    files = {s: {"text": str(tmp_path / "t.txt"), "labels": str(tmp_path / "l.txt")} for s in ("train", "test")}
    with pytest.raises(EmotuneError, match=r"t\.txt has 3 lines but .*l\.txt has 2"):
        fetch(make_spec(files=files, format="lines", label_ids=True))


def test_missing_file_names_it_and_the_key(tmp_path, make_spec):
    files = {"train": write(tmp_path, "train.csv", GOOD_CSV), "test": str(tmp_path / "tset.csv")}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="label"))
    assert "tset.csv does not exist" in str(info.value)
    assert "dataset_registry.toy.files" in str(info.value)


def test_checksum_mismatch_names_file_and_both_hashes(tmp_path, make_spec):
    files = {s: write(tmp_path, f"{s}.csv", GOOD_CSV) for s in ("train", "test")}
    pinned = "0" * 64
    actual = hashlib.sha256(GOOD_CSV.encode()).hexdigest()
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="label", sha256={files["test"]: pinned}))
    message = str(info.value)
    for part in ("checksum mismatch", "test.csv", pinned, actual, f"sha256.{files['test']}"):
        assert part in message, f"{part!r} missing from: {message}"


@pytest.mark.parametrize("content, bad_line", [
    pytest.param("text,label\nhello,joy\n\nhi,joyy\n", 4, id="after_blank_line"),
    pytest.param('text,label\n"two\nlines",joy\nhi,joyy\n', 4, id="after_multiline_quoted_text"),
])
def test_bad_label_line_number_counts_physical_lines(tmp_path, make_spec, content, bad_line):
    """The line a message names must be the line an editor shows, so the user finds the row."""
    files = {"train": write(tmp_path, "train.csv", content), "test": write(tmp_path, "test.csv", GOOD_CSV)}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="label"))
    assert f"line {bad_line}: unknown label 'joyy'" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Hugging Face Hub path (offline: a local folder, or an injected load_dataset)
# ---------------------------------------------------------------------------------------------
HUB_LABELS = ["sadness", "joy", "love"]


def hub_spec(make_spec, **hub):
    return make_spec(labels=HUB_LABELS, hub={"label_column": "label", **hub})


def classlabel_dict(splits=("train", "dev", "test")) -> "datasets.DatasetDict":
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=HUB_LABELS)})
    return datasets.DatasetDict({
        s: datasets.Dataset.from_dict({"text": [f"{s} one", f"{s} two", f"{s} three"], "label": [2, 0, 1]},
                                      features=features)
        for s in splits})


def test_read_hub_loads_a_local_folder_offline(tmp_path, make_spec, monkeypatch):
    """`hub.path` may be a local folder (a saved copy of a Hub dataset). `datasets.load_dataset`
    reads it without any network, so read_hub must not refuse it when the Hub is unreachable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "my_hub_copy"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "dev", "test"):
        pd.DataFrame({"text": [f"{split} a", f"{split} b"], "label": ["joy", "love"]}).to_parquet(
            folder / "data" / f"{split}-00000-of-00001.parquet")
    spec = hub_spec(make_spec, path=str(folder), splits={"train": "train", "validation": "dev", "test": "test"})
    try:
        fetched = read_hub(spec)
    except HubUnavailable as exc:
        pytest.fail(f"read_hub probed the network for a local folder: {exc}")
    assert as_records(fetched.splits["validation"]) == [("toy-validation-000000", "dev a", ["joy"]),
                                                        ("toy-validation-000001", "dev b", ["love"])]
    assert len(fetched.splits["train"]) == len(fetched.splits["test"]) == 2


def test_read_hub_maps_classlabel_ids_to_names_and_renamed_split(make_spec):
    dsd = classlabel_dict()
    calls = []

    def load_dataset(path, name, revision=None):
        calls.append((path, name, revision))
        return dsd

    spec = hub_spec(make_spec, path="someone/emo", name="split", revision="abc123",
                    splits={"train": "train", "validation": "dev", "test": "test"})
    fetched = read_hub(spec, load_dataset=load_dataset)
    assert calls == [("someone/emo", "split", "abc123")]
    assert set(fetched.splits) == set(SPLITS)
    assert as_records(fetched.splits["validation"]) == [("toy-validation-000000", "dev one", ["love"]),
                                                        ("toy-validation-000001", "dev two", ["sadness"]),
                                                        ("toy-validation-000002", "dev three", ["joy"])]
    assert fetched.source == "hub:someone/emo/split@abc123"
    assert fetched.checksums["validation.fingerprint"] == dsd["dev"]._fingerprint


def test_read_hub_partial_split_mapping_keeps_the_default_names(make_spec):
    """`splits: {validation: dev}` renames one split; train and test keep their usual names."""
    spec = hub_spec(make_spec, path="someone/emo", splits={"validation": "dev"})
    fetched = read_hub(spec, load_dataset=lambda *a, **k: classlabel_dict())
    assert set(fetched.splits) == set(SPLITS)
    assert list(fetched.splits["validation"]["text"]) == ["dev one", "dev two", "dev three"]


def test_read_hub_bool_label_columns_and_ids(make_spec):
    dsd = datasets.DatasetDict({
        s: datasets.Dataset.from_dict({"ID": [10, 11], "Tweet": ["both", "none"],
                                       "sadness": [True, False], "joy": [False, False], "love": [True, False]})
        for s in ("train", "test")})  # no validation split: fetch carves one
    spec = make_spec(task="multi_label", official_metric="jaccard", labels=HUB_LABELS,
                     hub={"path": "someone/ec", "text_column": "Tweet", "id_column": "ID",
                          "label_columns": HUB_LABELS}, allow_empty_labels=True)
    fetched = read_hub(spec, load_dataset=lambda *a, **k: dsd)
    assert set(fetched.splits) == {"train", "test"}
    assert as_records(fetched.splits["test"]) == [("10", "both", ["sadness", "love"]), ("11", "none", [])]


def test_read_hub_missing_split_says_which_exist(make_spec):
    spec = hub_spec(make_spec, path="someone/emo", splits={"train": "train", "validation": "dev", "test": "tst"})
    with pytest.raises(EmotuneError, match=r"no split 'tst'.*\['train', 'dev', 'test'\].*hub\.splits"):
        read_hub(spec, load_dataset=lambda *a, **k: classlabel_dict())


def test_read_hub_connection_error_becomes_hub_unavailable(make_spec):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/emo' on the Hub")

    with pytest.raises(HubUnavailable, match="Couldn't reach"):
        read_hub(hub_spec(make_spec, path="someone/emo"), load_dataset=offline)


def test_an_empty_label_cell_is_not_an_unknown_label(tmp_path, make_spec):
    files = {"train": write(tmp_path, "train.csv", "text,label\nhello,joy\nhi,\n"),
             "test": write(tmp_path, "test.csv", GOOD_CSV)}
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="label", label_ids=True))
    assert "empty label on 1 row(s) (lines 3)" in str(info.value) and "unknown label" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# The files users really have
# ---------------------------------------------------------------------------------------------
ML_SPEC = {"task": "multi_label", "official_metric": "jaccard", "labels": ["anger", "joy", "sadness", "fear"]}


def test_delimited_label_ids_split_on_the_delimiter_and_map_to_names(tmp_path, make_spec):
    """`3,12` with label_ids and label_delimiter ",": a common release format of multi-label corpora."""
    content = 'text,labels\nmixed,"3,1"\nangry,0\nall of it," 0, 2 ,3"\n'
    files = {s: write(tmp_path, f"{s}.csv", content) for s in ("train", "test")}
    fetched = fetch(make_spec(files=files, label_column="labels", label_ids=True, label_delimiter=",", **ML_SPEC))
    assert list(fetched.splits["test"]["labels"]) == [["fear", "joy"], ["anger"], ["anger", "sadness", "fear"]]
    files["train"] = write(tmp_path, "bad.csv", 'text,labels\nmixed,"3,9"\n')
    with pytest.raises(EmotuneError) as info:
        fetch(make_spec(files=files, label_column="labels", label_ids=True, label_delimiter=",", **ML_SPEC))
    assert "line 2: label '9' (of '3,9') is not an index 0..3" in str(info.value)


def write_parquet(path: Path, columns: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_parquet(path, index=False)
    return str(path)


def test_parquet_files_are_read_by_extension_or_format(tmp_path, make_spec):
    """What `datasets` exports and the Hub serves: list columns of names or ids, and plain label columns."""
    listed = {"text": ["so happy", "grim and angry", "nothing"], "labels": [["joy"], ["anger", "sadness"], []]}
    files = {s: write_parquet(tmp_path / f"{s}.parquet", listed) for s in SPLITS}
    fetched = fetch(make_spec(files=files, label_column="labels", allow_empty_labels=True, **ML_SPEC))
    assert as_records(fetched.splits["train"]) == [("toy-train-000000", "so happy", ["joy"]),
                                                   ("toy-train-000001", "grim and angry", ["anger", "sadness"]),
                                                   ("toy-train-000002", "nothing", [])]
    ids = {"sentence": ["so happy", "angry"], "label": [1, 0], "idx": [10, 11]}
    files = {s: write_parquet(tmp_path / f"{s}-part-0.data", ids) for s in SPLITS}  # no extension
    spec = make_spec(files=files, format="parquet", text_column="sentence", label_column="label", label_ids=True,
                     id_column="idx")
    assert as_records(fetch(spec).splits["test"]) == [("10", "so happy", ["anger"]), ("11", "angry", ["joy"])]
    with pytest.raises(EmotuneError) as info:  # its rows are numbered from 0, as pandas and the Hub number them
        fetch(make_spec(files={**files, "train": write_parquet(tmp_path / "t.parquet", {"text": ["a", "b"],
                                                                                         "label": ["joy", "joyy"]})},
                        format="parquet", label_column="label", text_column="text"))
    assert "t.parquet: 1 bad label value(s):\n  row 1: unknown label 'joyy'" in str(info.value)


def test_a_parquet_file_read_as_csv_says_how_to_read_it(tmp_path, make_spec):
    path = write_parquet(tmp_path / "train.csv", {"text": ["a"], "label": ["joy"]})
    with pytest.raises(EmotuneError, match=r"train\.csv: is a Parquet file.*\.parquet extension.*format parquet"):
        fetch(make_spec(files={"train": path, "test": path}, label_column="label"))


def test_label_whitespace_and_repeated_labels_are_repaired_and_counted(tmp_path, make_spec):
    content = "text,labels\nhello, joy\nho,anger \nha,joy|joy\nhe,joy| anger|joy\nhu,sadness\n"
    files = {s: write(tmp_path, f"{s}.csv", content) for s in ("train", "validation", "test")}
    files["validation"] = write(tmp_path, "validation.csv", "text,labels\nfine,joy\n")
    fetched = fetch(make_spec(files=files, label_column="labels", label_delimiter="|", **ML_SPEC))
    assert list(fetched.splits["train"]["labels"]) == [["joy"], ["anger"], ["joy"], ["joy", "anger"], ["sadness"]]
    repairs = fetched.repairs["train"]
    assert (repairs.whitespace, repairs.repeated) == ([2, 3], [4, 5])  # `joy| anger`: spaces at a delimiter
    assert fetched.label_repairs() == {
        split: {"whitespace_stripped": n, "repeated_labels_merged": n} for split, n in
        (("train", 2), ("validation", 0), ("test", 2))}
    train_warnings = [w for w in fetched.warnings if "train.csv" in w]
    assert train_warnings == [f"{files['train']}: 2 label value(s) with spaces around them (lines 2, 3): stripped",
                              f"{files['train']}: 2 row(s) naming a label more than once (lines 4, 5): each label "
                              f"kept once"]
    clean_file = {s: write(tmp_path / "clean", f"{s}.csv", "text,labels\nfine,joy\n") for s in SPLITS}
    assert fetch(make_spec(files=clean_file, label_column="labels", label_delimiter="|", **ML_SPEC)).label_repairs() \
        is None


def test_a_class_with_one_train_row_is_carved_unstratified_and_says_so(tmp_path, make_spec):
    labels = ["joy"] * 12 + ["anger"] * 7 + ["sadness"]
    train = "text,label\n" + "".join(f"text {i},{l}\n" for i, l in enumerate(labels))
    files = {"train": write(tmp_path, "train.csv", train), "test": write(tmp_path, "test.csv", GOOD_CSV)}
    fetched = fetch(make_spec(files=files, label_column="label"), seed=3, fraction=0.2)
    assert len(fetched.splits["validation"]) == 4
    assert fetched.notes == ["validation carved from train: 20%, NOT stratified (the label(s) sadness have a "
                             "single train row): a random split, seed 3"]
    assert len(fetched.warnings) == 1 and "without stratification" in fetched.warnings[0] \
        and "sadness" in fetched.warnings[0]
