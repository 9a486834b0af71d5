"""The fetch (and clean) stage CLIs, run as DVC runs them, in a throw-away copy of the project."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

PARAMS_FILE = Path(__file__).resolve().parent.parent / "params.yaml"


USER_FILES = {
    "train": ("data/user/train.csv",
              "id,text,label\n"
              "u1,what a lovely day,joy\n"
              "u2,I can't believe they did that,anger\n"
              "u3,I miss you,sadness\n"
              "u4,best news ever,joy\n"
              "u5,also in the test split,joy\n"),
    "validation": ("data/user/dev.csv", "id,text,label\nv1,so happy for you,joy\nv2,furious,anger\n"),
    "test": ("data/user/test.csv", "id,text,label\nt1,Also in the test split!,joy\nt2,tears,sadness\nt3,ugh,anger\n"),
}
USER_ENTRY = {
    "description": "my own labelled sentences",
    "task": "single_label",
    "labels": ["joy", "anger", "sadness"],
    "official_metric": "macro_f1",
    "files": {split: path for split, (path, _) in USER_FILES.items()},
    "label_column": "label",
    "id_column": "id",
}


def make_user_project(project) -> Path:
    """A project copy with the user's dataset `mine` (files under data/user/) and a broken one `bad`."""
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"]["mine"] = USER_ENTRY
    params["dataset_registry"]["bad"] = {**USER_ENTRY, "files": {"train": "data/user/bad.csv",
                                                                 "test": "data/user/test.csv"}}
    root = project(params)
    for path, content in USER_FILES.values():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    (root / "data/user/bad.csv").write_text("id,text,label\nb1,fine,joy\nb2,an unquoted, comma,joy\n")
    return root


@pytest.fixture
def user_project(project) -> Path:
    return make_user_project(project)


@pytest.fixture(scope="module")
def fetched_project(project, run_stage) -> Path:
    """A user project where `python -m stages.fetch mine` has run (shared: each stage run costs seconds)."""
    root = make_user_project(project)
    result = run_stage(root, "fetch", "mine")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("fetch mine: ")
    return root


def assert_one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_fetch_user_csv_writes_splits_and_meta(fetched_project):
    out = fetched_project / "data/raw/mine"
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.parquet", "train.parquet",
                                                     "validation.parquet"]
    rows = {split: len(pd.read_parquet(out / f"{split}.parquet")) for split in ("train", "validation", "test")}
    assert rows == {"train": 5, "validation": 2, "test": 3}
    test = pd.read_parquet(out / "test.parquet")
    assert list(test["id"]) == ["t1", "t2", "t3"]
    assert [list(ls) for ls in test["labels"]] == [["joy"], ["sadness"], ["anger"]]

    meta = json.loads((out / "meta.json").read_text())
    assert meta["name"] == "mine" and meta["task"] == "single_label"
    assert meta["labels"] == ["joy", "anger", "sadness"]
    assert meta["official_metric"] == "macro_f1"
    assert meta["rows"] == rows
    assert meta["checksums"] == {path: hashlib.sha256(content.encode()).hexdigest()
                                 for path, content in USER_FILES.values()}
    assert not list((fetched_project / "data/raw").glob(".*")), "temporary folders left behind"


def test_clean_stage_after_fetch(fetched_project, run_stage):
    result = run_stage(fetched_project, "clean", "mine")
    assert result.returncode == 0, result.stderr

    train = pd.read_parquet(fetched_project / "data/clean/mine/train.parquet")
    assert "u5" not in set(train["id"]), "a train text that is also in test must be removed"
    report = json.loads((fetched_project / "metrics/clean/mine.json").read_text())
    assert report["rows_in"] == {"train": 5, "validation": 2, "test": 3}
    assert report["rows_out"] == {"train": 4, "validation": 2, "test": 3}
    assert report["dropped"]["train"]["leak_test"] == 1
    meta = json.loads((fetched_project / "data/clean/mine/meta.json").read_text())
    assert meta["rows"] == report["rows_out"]


def test_malformed_file_fails_cleanly_and_leaves_nothing(user_project, run_stage):
    result = run_stage(user_project, "fetch", "bad")
    message = assert_one_line_error(result)
    assert "bad.csv" in message and "line 3" in message and "4 fields, expected 3" in message

    raw = user_project / "data/raw"
    assert not (raw / "bad").exists()
    assert not raw.exists() or not [p.name for p in raw.iterdir() if "bad" in p.name]


def test_failed_fetch_keeps_the_previous_output(user_project, run_stage):
    assert run_stage(user_project, "fetch", "mine").returncode == 0
    before = {p.name: p.read_bytes() for p in (user_project / "data/raw/mine").iterdir()}
    (user_project / "data/user/test.csv").write_text("id,text,label\nt1,oops,happy\n")

    result = run_stage(user_project, "fetch", "mine")  # a label error lists rows, so several lines
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    assert "unknown label 'happy'" in result.stderr
    after = {p.name: p.read_bytes() for p in (user_project / "data/raw/mine").iterdir()}
    assert after == before
    assert sorted(p.name for p in (user_project / "data/raw").iterdir()) == ["mine"]


def test_dataset_typo_on_command_line(fetched_project, run_stage):
    message = assert_one_line_error(run_stage(fetched_project, "fetch", "emotoin"))
    assert "unknown dataset 'emotoin'" in message and "did you mean 'emotion'?" in message


def test_tweet_eval_sentiment_offline_explains_the_missing_training_texts(project, shipped_params, run_stage,
                                                                          mirror):
    shipped_params["fetch"]["mirror"] = str(mirror)  # the copy lives in tmp: point at the mirror absolutely
    root = project(shipped_params)
    message = assert_one_line_error(run_stage(root, "fetch", "tweet_eval_sentiment"))

    assert "tweet_eval_sentiment" in message
    assert "sentiment/train_text.txt does not exist" in message
    assert "mirror does not carry it" in message and "SOURCE.md" in message
    assert "Hugging Face Hub is unavailable" in message
    for other in ("val_text.txt", "test_text.txt", "labels.txt"):  # only the really missing file
        assert other not in message
    assert not (root / "data/raw/tweet_eval_sentiment").exists()


# ---------------------------------------------------------------------------------------------
# Nothing stale, nothing silent (issue 15)
# ---------------------------------------------------------------------------------------------
def test_a_user_file_outside_data_user_is_refused(project, run_stage):
    """DVC sees a dataset's own files only under data/user/ (dvc.yaml: every fetch depends on it)."""
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"]["elsewhere"] = {**USER_ENTRY, "files": {"train": "mydata/train.csv",
                                                                       "test": "data/user/test.csv"}}
    root = project(params)
    for path, content in (("mydata/train.csv", USER_FILES["train"][1]), USER_FILES["test"]):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    message = assert_one_line_error(run_stage(root, "fetch", "elsewhere"))
    for part in ("dataset_registry.elsewhere.files.train", "mydata/train.csv is outside data/user/",
                 "data/user/elsewhere/train.csv"):
        assert part in message, f"{part!r} missing from: {message}"
    assert not (root / "data/raw/elsewhere").exists()


def test_clean_warns_of_test_labels_never_seen_in_train(user_project, run_stage):
    (user_project / "data/user/train.csv").write_text("id,text,label\nu1,what a lovely day,joy\nu2,grr,anger\n")
    assert run_stage(user_project, "fetch", "mine").returncode == 0
    result = run_stage(user_project, "clean", "mine")
    assert result.returncode == 0, result.stderr
    assert "warning: mine: test labels never seen in train: sadness (1 test rows)" in result.stderr
    report = json.loads((user_project / "metrics/clean/mine.json").read_text())
    assert report["test_labels_unseen_in_train"] == {"sadness": 1}


def test_clean_with_no_training_rows_left_stops_and_writes_nothing(project, run_stage):
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"]["same"] = {**USER_ENTRY, "files": {"train": "data/user/test.csv",
                                                                  "test": "data/user/test.csv"}}
    root = project(params)
    (root / "data/user").mkdir(parents=True)
    (root / "data/user/test.csv").write_text(USER_FILES["test"][1] + "t4,so happy,joy\nt5,tearful,sadness\n")
    assert run_stage(root, "fetch", "same").returncode == 0
    message = assert_one_line_error(run_stage(root, "clean", "same"))
    assert "left no train rows" in message and "test file also declared as train" in message
    assert not (root / "data/clean/same").exists() and not (root / "metrics/clean/same.json").exists()


def readme_add_a_dataset_example() -> dict:
    """The params.yaml snippet of README "Add a dataset", as YAML."""
    readme = (PARAMS_FILE.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Add a dataset"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    return yaml.safe_load(block[: block.index("```")])


def test_the_readme_add_a_dataset_example_works_as_written(project, run_stage):
    example = readme_add_a_dataset_example()
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    for key, value in example.items():
        params[key] = {**params[key], **value} if key == "dataset_registry" else value
    entry = example["dataset_registry"]["my_reviews"]
    contents = {split: "review,anger,joy,sadness\n" + "".join(
        f"{split} review number {i} {word},{int(word == 'grr')},{int(word == 'yay')},{int(word == 'sob')}\n"
        for i, word in enumerate(["grr", "yay", "sob"] * 10)) for split in entry["files"]}
    by_path = {path: contents[split] for split, path in entry["files"].items()}
    entry["sha256"] = {path: hashlib.sha256(by_path[path].encode()).hexdigest() for path in entry["sha256"]}
    root = project(params)
    for path, content in by_path.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    for stage in ("fetch", "clean"):
        result = run_stage(root, stage, "my_reviews")
        assert result.returncode == 0, result.stderr
    report = json.loads((root / "metrics/clean/my_reviews.json").read_text())
    assert report["rows_in"]["validation"] > 0, "validation is carved from train"


def test_editing_a_user_file_reruns_its_fetch_under_dvc(tmp_path):
    """In a real git + DVC project: an edited user file shows in `dvc status` and `dvc repro` reruns the
    fetch; with its sha256 pinned, the rerun stops with the mismatch message (it used to be skipped:
    "Stage 'fetch@toy' didn't change, skipping")."""
    from toy_project import DVC, dvc_env, ran, sh, write_toy_project

    root = write_toy_project(tmp_path / "project")
    assert ran(sh(root, DVC, "repro", "clean@toy")) == {"fetch@toy", "clean@toy"}
    assert "fetch@toy" not in sh(root, DVC, "status", "fetch@toy")

    train = root / "data/user/toy/train.csv"
    with open(train, "a", newline="") as fh:
        fh.write('extra-1,"so much dread, sad and lonely",sadness\r\n')
    status = sh(root, DVC, "status", "fetch@toy")
    assert "fetch@toy" in status and "data/user" in status, status
    out = sh(root, DVC, "repro", "clean@toy")
    assert ran(out) == {"fetch@toy", "clean@toy"}, out
    assert "extra-1" in set(pd.read_parquet(root / "data/raw/toy/train.parquet")["id"])

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["dataset_registry"]["toy"]["sha256"] = {"data/user/toy/train.csv": hashlib.sha256(train.read_bytes()).hexdigest()}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, DVC, "repro", "clean@toy")
    with open(train, "a", newline="") as fh:
        fh.write('extra-2,"even more dread",sadness\r\n')
    assert "fetch@toy" in sh(root, DVC, "status", "fetch@toy")
    result = subprocess.run([DVC, "repro", "clean@toy"], cwd=root, env=dvc_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode != 0
    assert "checksum mismatch" in result.stdout + result.stderr
    assert "sha256.data/user/toy/train.csv" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# The files users really have (issue 28)
# ---------------------------------------------------------------------------------------------
def test_repaired_labels_are_warned_recorded_and_counted_by_clean(project, run_stage):
    """` joy`, `anger ` and `joy|joy` load (stripped; one joy), each kind with one warning line naming the
    lines, in meta.json and in the clean report; and a killed fetch's temporary folder goes on this run."""
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"]["mixed"] = {
        "task": "multi_label", "labels": ["joy", "anger", "sadness"], "official_metric": "jaccard",
        "files": {"train": "data/user/mixed/train.csv", "validation": "data/user/mixed/dev.csv",
                  "test": "data/user/mixed/test.csv"}, "label_column": "labels", "label_delimiter": "|"}
    root = project(params)
    files = {"train": "text,labels\nwhat a day, joy\ngrr,anger \nyay yay,joy|joy\nsob,sadness\nugh,anger|sadness\n",
             "dev": "text,labels\nso happy,joy\nfurious,anger\n", "test": "text,labels\ntears,sadness\nyes,joy\n"}
    for name, content in files.items():
        (root / f"data/user/mixed/{name}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / f"data/user/mixed/{name}.csv").write_text(content)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f"data/raw/.mixed.tmp-{dead.pid}"
    stale.mkdir(parents=True)
    (stale / "train.parquet").write_text("half")

    result = run_stage(root, "fetch", "mixed")
    assert result.returncode == 0, result.stderr
    assert result.stderr.replace(f"{root}/", "").splitlines() == [
        "warning: data/user/mixed/train.csv: 2 label value(s) with spaces around them (lines 2, 3): stripped",
        "warning: data/user/mixed/train.csv: 1 row(s) naming a label more than once (lines 4): each label kept once"]
    assert sorted(p.name for p in (root / "data/raw").iterdir()) == ["mixed"]
    train = pd.read_parquet(root / "data/raw/mixed/train.parquet")
    assert [list(labels) for labels in train["labels"]] == [["joy"], ["anger"], ["joy"], ["sadness"],
                                                            ["anger", "sadness"]]
    meta = json.loads((root / "data/raw/mixed/meta.json").read_text())
    assert meta["label_repairs"]["train"] == {"whitespace_stripped": 2, "repeated_labels_merged": 1}

    assert run_stage(root, "clean", "mixed").returncode == 0
    report = json.loads((root / "metrics/clean/mixed.json").read_text())
    assert report["label_repairs"] == {"whitespace_stripped": {"train": 2, "validation": 0, "test": 0},
                                       "repeated_labels_merged": {"train": 1, "validation": 0, "test": 0}}
    assert report["label_counts"]["train"]["joy"] == 2  # `joy|joy` counts once
