"""clean on small synthetic splits: normalisation, dropping rules, leakage, and the report."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from emotune.clean import clean_splits
from emotune.config import CleanConfig
from emotune.errors import EmotuneError
from emotune.text import normalise

DEFAULT = CleanConfig()


def frame(split: str, *rows) -> pd.DataFrame:
    """rows: (text, label-or-list) pairs; ids are `<split>-<n>`."""
    return pd.DataFrame({"id": [f"{split}-{i}" for i in range(len(rows))],
                         "text": [text for text, _ in rows],
                         "labels": [[lab] if isinstance(lab, str) else list(lab) for _, lab in rows]})


def splits(train=(), validation=(), test=()) -> dict[str, pd.DataFrame]:
    # every split needs at least one row that no rule touches
    return {"train": frame("train", *train, ("train anchor", "joy")),
            "validation": frame("validation", *validation, ("validation anchor", "joy")),
            "test": frame("test", *test, ("test anchor", "joy"))}


# clean only reads labels, task and tweets from the spec; a hub entry makes the spec valid.
HUB = {"path": "someone/toy"}


@pytest.fixture
def spec(make_spec):
    return make_spec(hub=HUB)


@pytest.fixture
def tweet_spec(make_spec):
    return make_spec(hub=HUB, tweets=True)


def rows_dropped(report, split) -> int:
    return sum(report["dropped"][split].values())


def texts(frame: pd.DataFrame) -> list[str]:
    return [t for t in frame["text"] if "anchor" not in t]


# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [
    ("Fish &amp; chips &lt;3", "Fish & chips <3"),            # HTML entities
    ("ﬁne ＡＢＣ ①", "fine ABC 1"),                               # NFKC: ligature, full width, circled
    ("  a\tb \n\n c\u00a0d  ", "a b c d"),                       # whitespace, incl. no-break space
    ("&nbsp;", ""),                                               # entity -> no-break space -> nothing
])
def test_normalise(raw, expected):
    assert normalise(raw, DEFAULT, tweets=False) == expected


def test_normalisation_steps_can_be_switched_off():
    cfg = dataclasses.replace(DEFAULT, html_unescape=False, unicode_form="none", collapse_whitespace=False)
    assert normalise("a &amp;  ﬁ", cfg, tweets=False) == "a &amp;  ﬁ"
    assert normalise("Hello World", dataclasses.replace(DEFAULT, lowercase=True), tweets=False) == "hello world"


TWEET = "@bob look https://t.co/xyz and www.example.com, mail me@x.org"


def test_mentions_and_urls_are_masked_only_for_tweets():
    assert normalise(TWEET, DEFAULT, tweets=True) == "@user look http and http mail me@x.org"
    assert normalise(TWEET, DEFAULT, tweets=False) == TWEET
    keep = dataclasses.replace(DEFAULT, mask_mentions=None, mask_urls=None)
    assert normalise(TWEET, keep, tweets=True) == TWEET


def test_clean_normalises_every_split(spec, tweet_spec):
    raw = splits(train=[(TWEET, "joy")], validation=[("  x &amp; y ", "joy")], test=[(TWEET, "anger")])
    # (the train tweet is also in test and leaks; look at test and validation)
    tweets, _ = clean_splits(raw, tweet_spec, DEFAULT)
    assert texts(tweets["test"]) == ["@user look http and http mail me@x.org"]
    assert texts(tweets["validation"]) == ["x & y"]
    plain, _ = clean_splits(raw, spec, DEFAULT)
    assert texts(plain["test"]) == [TWEET]


# ---------------------------------------------------------------------------------------------
# Dropping rules (train and validation only)
# ---------------------------------------------------------------------------------------------
def test_empty_texts_are_dropped_from_train_and_validation_but_kept_in_test(spec):
    raw = splits(train=[("", "joy"), ("   ", "anger"), ("&nbsp;", "joy"), ("ok", "joy")],
                 validation=[("", "joy")],
                 test=[("", "joy"), (" ", "anger")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert texts(clean["train"]) == ["ok"]
    assert report["dropped"]["train"]["empty"] == 3
    assert report["dropped"]["validation"]["empty"] == 1
    assert texts(clean["test"]) == ["", ""]
    assert report["test_problems_kept"]["empty"] == 2


def test_min_chars(spec):
    raw = splits(train=[("ok", "joy"), ("fine", "joy")])
    clean, report = clean_splits(raw, spec, dataclasses.replace(DEFAULT, min_chars=3))
    assert texts(clean["train"]) == ["fine"]
    assert report["dropped"]["train"]["empty"] == 1


def test_conflicting_labels_drop_every_copy(spec):
    raw = splits(train=[("I am happy", "joy"), ("I am happy", "joy"), ("i am HAPPY!", "anger"),
                        ("calm", "joy")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert texts(clean["train"]) == ["calm"]
    assert report["dropped"]["train"]["conflicting_labels"] == 3
    assert report["conflicting_texts"]["train"] == 1
    assert report["dropped"]["train"]["exact_duplicate"] == 0  # counted once, under the first reason


def test_conflicting_labels_can_be_kept(spec):
    raw = splits(train=[("I am happy", "joy"), ("I am happy", "anger")])
    clean, report = clean_splits(raw, spec, dataclasses.replace(DEFAULT, drop_conflicting=False))
    assert report["dropped"]["train"]["conflicting_labels"] == 0
    # Both readings stay (for the audit to judge); they are not duplicates of each other.
    assert list(clean["train"]["labels"][clean["train"]["text"] == "I am happy"]) == [["joy"], ["anger"]]
    assert report["dropped"]["train"]["exact_duplicate"] == 0


def test_multi_label_order_does_not_make_a_conflict(make_spec):
    spec = make_spec(task="multi_label", official_metric="jaccard", hub=HUB)
    raw = splits(train=[("mixed", ["joy", "anger"]), ("mixed", ["anger", "joy"])])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert report["dropped"]["train"]["conflicting_labels"] == 0
    assert report["dropped"]["train"]["exact_duplicate"] == 1
    assert texts(clean["train"]) == ["mixed"]


@pytest.mark.parametrize("dedupe, kept, exact, normalised", [
    ("normalised", ["Great day"], 2, 1),
    ("exact", ["Great day", "great day!!"], 2, 0),
])
def test_exact_and_normalised_duplicates(spec, dedupe, kept, exact, normalised):
    # "Great   day" equals "Great day" after whitespace normalisation, so it is an exact duplicate
    raw = splits(train=[("Great day", "joy"), ("Great day", "joy"), ("Great   day", "joy"),
                        ("great day!!", "joy")])
    clean, report = clean_splits(raw, spec, dataclasses.replace(DEFAULT, dedupe=dedupe))
    assert texts(clean["train"]) == kept
    assert report["dropped"]["train"]["exact_duplicate"] == exact
    assert report["dropped"]["train"]["normalised_duplicate"] == normalised


def test_spreadsheet_errors_are_dropped_from_train_and_listed_in_test(spec):
    raw = splits(train=[("#NAME?", "joy")], test=[("#NAME?", "anger"), (" #VALUE! ", "joy")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert texts(clean["train"]) == []
    assert report["dropped"]["train"]["spreadsheet_error"] == 1
    assert texts(clean["test"]) == ["#NAME?", "#VALUE!"]
    assert report["test_spreadsheet_error_ids"] == ["test-0", "test-1"]


def test_texts_without_word_characters_are_not_all_one_duplicate(spec):
    """Emoji-only texts are common in tweets. Under the normalised key every one of them becomes
    the empty string, so distinct texts must not be merged into one 'conflicting' group."""
    raw = splits(train=[("😂😂😂", "joy"), ("😡", "anger"), ("😭!!", "sadness")], test=[("🙂", "joy")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert report["dropped"]["train"]["conflicting_labels"] == 0
    assert report["dropped"]["train"]["leak_test"] == 0
    assert texts(clean["train"]) == ["😂😂😂", "😡", "😭!!"]


# ---------------------------------------------------------------------------------------------
# Leakage and the test split
# ---------------------------------------------------------------------------------------------
def test_leakage_is_removed_from_train_and_validation_never_from_test(spec):
    raw = splits(train=[("See you tomorrow", "joy"), ("Hello there", "joy"), ("only train", "anger")],
                 validation=[("Bye now", "sadness"), ("hello there.", "joy")],
                 test=[("see you tomorrow!", "joy"), ("BYE NOW", "sadness")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert texts(clean["train"]) == ["only train"]
    assert texts(clean["validation"]) == ["hello there."]  # validation keeps what train loses
    assert texts(clean["test"]) == ["see you tomorrow!", "BYE NOW"]
    assert report["dropped"]["train"]["leak_test"] == 1
    assert report["dropped"]["train"]["leak_validation"] == 1
    assert report["dropped"]["validation"]["leak_test"] == 1
    assert report["overlap_before"] == {"train&validation": 0, "train&test": 0, "validation&test": 0,
                                        "texts_in_several_splits": 0}  # exact texts differ


def test_overlap_before_counts_exact_shared_texts(spec):
    raw = splits(train=[("same", "joy"), ("both", "joy")], validation=[("same", "joy")],
                 test=[("same", "joy"), ("both", "joy")])
    _, report = clean_splits(raw, spec, DEFAULT)
    assert report["overlap_before"] == {"train&validation": 1, "train&test": 2, "validation&test": 1,
                                        "texts_in_several_splits": 2}


def test_test_split_is_counted_not_fixed(spec):
    test_rows = [("dup", "joy"), ("dup", "joy"), ("clash", "joy"), ("Clash!", "anger"), ("", "joy")]
    raw = splits(test=test_rows)
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert list(clean["test"]["id"]) == list(raw["test"]["id"])
    assert list(clean["test"]["labels"]) == list(raw["test"]["labels"])
    assert report["test_problems_kept"] == {"empty": 1, "spreadsheet_error": 0, "conflicting_labels": 2,
                                            "exact_duplicate": 1, "normalised_duplicate": 0}


def test_report_counts_add_up(spec):
    raw = splits(train=[("", "joy"), ("#N/A", "joy"), ("a b", "joy"), ("A B", "anger"), ("dup", "joy"),
                        ("dup", "joy"), ("Dup.", "joy"), ("in test", "joy"), ("in val", "joy"), ("keep", "joy")],
                 validation=[("In val", "joy"), ("In test!", "joy"), ("v", "sadness"), ("v", "sadness")],
                 test=[("in test", "joy"), ("t", "anger")])
    clean, report = clean_splits(raw, spec, DEFAULT)
    assert report["rows_in"] == {"train": 11, "validation": 5, "test": 3}
    assert texts(clean["train"]) == ["dup", "keep"]
    assert texts(clean["validation"]) == ["In val", "v"]
    for split in ("train", "validation", "test"):
        assert report["rows_out"][split] == len(clean[split])
    for split in ("train", "validation"):
        assert report["rows_in"][split] - rows_dropped(report, split) == report["rows_out"][split]
    assert report["rows_out"]["test"] == report["rows_in"]["test"]
    assert report["label_counts"]["train"] == {"joy": 3, "anger": 0, "sadness": 0}


# ---------------------------------------------------------------------------------------------
# Nothing silent (issue 15)
# ---------------------------------------------------------------------------------------------
def test_all_blank_training_texts_stop_with_the_cause(spec):
    raw = {"train": frame("train", ("", "joy"), ("   ", "anger"), ("\u00a0", "joy")),
           "validation": frame("validation", ("fine", "joy")), "test": frame("test", ("t", "joy"))}
    with pytest.raises(EmotuneError) as info:
        clean_splits(raw, spec, DEFAULT)
    message = str(info.value)
    for part in ("left no train rows (of 3", "empty 3", "blank", "text_column"):
        assert part in message, f"{part!r} missing from: {message}"


def test_the_test_file_declared_as_train_too_stops_with_the_cause(spec):
    """Every train row is leakage: clean used to exit 0 with zero training rows."""
    test = frame("test", ("one", "joy"), ("two", "anger"), ("three", "sadness"))
    raw = {"train": test.assign(id=["a", "b", "c"]), "validation": frame("validation", ("v", "joy")), "test": test}
    with pytest.raises(EmotuneError) as info:
        clean_splits(raw, spec, DEFAULT)
    message = str(info.value)
    for part in ("left no train rows", "leak_test 3", "test file also declared as train", "files"):
        assert part in message, f"{part!r} missing from: {message}"


def test_the_test_file_declared_as_validation_stops_too(spec):
    test = frame("test", ("one", "joy"), ("two", "anger"))
    raw = {"train": frame("train", ("a train text", "joy")), "validation": test, "test": test}
    with pytest.raises(EmotuneError, match="left no validation rows.*leak_test 2"):
        clean_splits(raw, spec, DEFAULT)


def test_test_labels_never_seen_in_train_are_counted(spec):
    raw = splits(train=[("happy", "joy")], test=[("so sad", "sadness"), ("tears", "sadness")])
    _, report = clean_splits(raw, spec, DEFAULT)
    assert report["test_labels_unseen_in_train"] == {"sadness": 2}
    _, report = clean_splits(splits(train=[("sad", "sadness")], test=[("tears", "sadness")]), spec, DEFAULT)
    assert report["test_labels_unseen_in_train"] == {}


def test_empty_label_sets_are_counted_per_split(make_spec):
    spec = make_spec(hub=HUB, task="multi_label", official_metric="jaccard", allow_empty_labels=True)
    raw = splits(train=[("nothing", []), ("also nothing", []), ("happy", ["joy"])], test=[("meh", [])])
    _, report = clean_splits(raw, spec, DEFAULT)
    assert report["empty_label_sets"] == {"train": 2, "validation": 0, "test": 1}
