"""Integration: the default datasets read from the real mirror, and what clean does with them.

The expected numbers are copied from each folder's SOURCE.md (counted from the raw files) and from
the published split sizes. Skipped when ../shared/datasets is not beside the checkout.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from emotune.clean import clean_splits
from emotune.config import load_params
from emotune.data_registry import fetch_dataset
from emotune.errors import EmotuneError
from emotune.text import dedupe_key, normalise

SPLITS = ("train", "validation", "test")
DEFAULT_DATASETS = ["emotion", "tweet_eval_emotion", "semeval2018_ec", "semeval2025_eng"]

PUBLISHED_SIZES = {
    "emotion": (16000, 2000, 2000),
    "tweet_eval_emotion": (3257, 374, 1421),
    "semeval2018_ec": (6838, 886, 3259),
    "semeval2025_eng": (2768, 116, 2767),
}

# Per-label row counts from the SOURCE.md tables; "<none>" counts multi-label rows with no label.
SOURCE_MD_COUNTS = {
    "emotion": {
        "train": dict(sadness=4666, joy=5362, love=1304, anger=2159, fear=1937, surprise=572),
        "validation": dict(sadness=550, joy=704, love=178, anger=275, fear=212, surprise=81),
        "test": dict(sadness=581, joy=695, love=159, anger=275, fear=224, surprise=66),
    },
    "tweet_eval_emotion": {
        "train": dict(anger=1400, joy=708, optimism=294, sadness=855),
        "validation": dict(anger=160, joy=97, optimism=28, sadness=89),
        "test": dict(anger=558, joy=358, optimism=123, sadness=382),
    },
    "semeval2018_ec": {
        "train": dict(anger=2544, anticipation=978, disgust=2602, fear=1242, joy=2477, love=700, optimism=1984,
                      pessimism=795, sadness=2008, surprise=361, trust=357, **{"<none>": 204}),
        "validation": dict(anger=315, anticipation=124, disgust=319, fear=121, joy=400, love=132, optimism=307,
                           pessimism=100, sadness=265, surprise=35, trust=43, **{"<none>": 14}),
        "test": dict(anger=1101, anticipation=425, disgust=1099, fear=485, joy=1442, love=516, optimism=1143,
                     pessimism=375, sadness=960, surprise=170, trust=153, **{"<none>": 75}),
    },
    "semeval2025_eng": {
        "train": dict(anger=333, fear=1611, joy=674, sadness=878, surprise=839, **{"<none>": 239}),
        "validation": dict(anger=16, fear=63, joy=31, sadness=35, surprise=31, **{"<none>": 13}),
        "test": dict(anger=322, fear=1544, joy=670, sadness=881, surprise=799, **{"<none>": 293}),
    },
}

NAME_ERROR_IDS = ["eng_test_track_a_01020", "eng_test_track_a_02101", "eng_test_track_a_02336",
                  "eng_test_track_a_02441", "eng_test_track_a_02710"]


@pytest.fixture(scope="module")
def params(mirror):
    shipped = load_params()
    # Only the mirror: a test must never wait for (or silently use) the Hub.
    return dataclasses.replace(shipped, fetch=dataclasses.replace(shipped.fetch, mirror=str(mirror),
                                                                  source="mirror"))


@pytest.fixture(scope="module")
def fetched(params):
    return {name: fetch_dataset(params.dataset(name), params.fetch, params.seed) for name in DEFAULT_DATASETS}


@pytest.fixture(scope="module")
def cleaned(params, fetched):
    return {name: clean_splits(fetched[name].splits, params.dataset(name), params.clean)
            for name in DEFAULT_DATASETS}


def label_counts(frame) -> Counter:
    return Counter(label for labels in frame["labels"] for label in (labels or ["<none>"]))


def rows_dropped(report, split) -> int:
    return sum(report["dropped"][split].values())


def test_default_datasets_are_the_ones_tested(params):
    assert sorted(params.datasets) == sorted(DEFAULT_DATASETS)


@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_fetch_gives_published_sizes_labels_and_checksums(params, fetched, name):
    spec, result = params.dataset(name), fetched[name]
    assert tuple(len(result.splits[s]) for s in SPLITS) == PUBLISHED_SIZES[name]
    assert result.checksums == spec.sha256, "every mirrored file is read and matches its pinned hash"
    assert not result.notes  # nothing carved, nothing unexpected
    assert result.label_repairs() is None  # no label needed stripping or merging: meta.json keeps its bytes
    for split in SPLITS:
        frame = result.splits[split]
        assert list(frame.columns) == ["id", "text", "labels"]
        assert frame["id"].is_unique
        assert label_counts(frame) == SOURCE_MD_COUNTS[name][split], split
        if not spec.multi_label:
            assert frame["labels"].map(len).eq(1).all()


def test_tweet_eval_sentiment_mirror_only_names_the_missing_file(params, mirror):
    """With fetch.source: mirror the gap in the mirror is reported, with the way out."""
    with pytest.raises(EmotuneError) as info:
        fetch_dataset(params.dataset("tweet_eval_sentiment"), params.fetch, params.seed)
    message = str(info.value)
    assert "sentiment/train_text.txt does not exist" in message
    assert str(mirror / "tweeteval" / "SOURCE.md") in message
    assert "set fetch.source to auto or hub" in message
    assert "val_text.txt" not in message and "test_text.txt" not in message


def test_emotion_known_problems_are_found(cleaned):
    _, report = cleaned["emotion"]
    assert report["overlap_before"]["texts_in_several_splits"] == 19
    assert report["dropped"]["train"]["exact_duplicate"] == 1
    assert report["conflicting_texts"]["train"] == 30
    assert report["dropped"]["train"]["conflicting_labels"] == 60  # every copy of the 30 texts
    assert report["conflicting_texts"]["validation"] == 2


@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_clean_leaves_no_leakage_and_adds_up(params, cleaned, name):
    splits, report = cleaned[name]
    mode = params.clean.dedupe
    keys = {s: set(splits[s]["text"].map(lambda t: dedupe_key(t, mode))) for s in SPLITS}
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    for split in ("train", "validation"):
        assert report["rows_in"][split] - rows_dropped(report, split) == report["rows_out"][split] \
            == len(splits[split])


@pytest.mark.parametrize("name", DEFAULT_DATASETS)
def test_clean_keeps_every_test_row(params, fetched, cleaned, name):
    spec = params.dataset(name)
    raw, clean = fetched[name].splits["test"], cleaned[name][0]["test"]
    assert list(clean["id"]) == list(raw["id"])
    assert list(clean["labels"].map(list)) == list(raw["labels"].map(list))
    assert list(clean["text"]) == [normalise(t, params.clean, spec.tweets) for t in raw["text"]]
    assert cleaned[name][1]["rows_out"]["test"] == PUBLISHED_SIZES[name][2]


def test_semeval2025_keeps_and_reports_the_name_error_rows(cleaned):
    splits, report = cleaned["semeval2025_eng"]
    test = splits["test"]
    assert sorted(test.loc[test["text"] == "#NAME?", "id"]) == NAME_ERROR_IDS
    assert sorted(report["test_spreadsheet_error_ids"]) == NAME_ERROR_IDS
    assert report["test_problems_kept"]["spreadsheet_error"] == 5
