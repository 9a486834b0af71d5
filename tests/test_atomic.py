"""Stage outputs are all-or-nothing: a failure never leaves a half-written folder or file."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from emotune.atomic import atomic_dir, write_atomic, write_json


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_atomic_dir_leaves_nothing_when_the_body_fails(tmp_path, error):
    final = tmp_path / "out" / "emotion"
    (tmp_path / "out").mkdir()
    with pytest.raises(error):
        with atomic_dir(final) as tmp:
            (tmp / "train.parquet").write_text("half")
            raise error()
    assert not final.exists()
    assert listing(final.parent) == []  # no .emotion.tmp-* either


def test_atomic_dir_removes_the_folders_it_created_when_the_body_fails(tmp_path):
    """A tokenize of the Hub model org/model that failed left an empty data/tokenized/<dataset>/org/."""
    final = tmp_path / "data" / "tokenized" / "emotion" / "no-such-org" / "no-such-model"
    (tmp_path / "data").mkdir()
    with pytest.raises(OSError):
        with atomic_dir(final):
            raise OSError("no such model")
    assert listing(tmp_path) == ["data"] and listing(tmp_path / "data") == []


def test_atomic_dir_keeps_the_old_folder_when_the_body_fails(tmp_path):
    final = tmp_path / "emotion"
    final.mkdir()
    (final / "old.txt").write_text("previous run")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert listing(final) == ["old.txt"]
    assert (final / "old.txt").read_text() == "previous run"
    assert listing(tmp_path) == ["emotion"]


def test_atomic_dir_replaces_the_folder_on_success(tmp_path):
    final = tmp_path / "emotion"
    final.mkdir()
    (final / "stale.txt").write_text("from an earlier run")
    with atomic_dir(final) as tmp:
        assert tmp != final and tmp.parent == final.parent
        assert not (final / "new.txt").exists()  # nothing visible before the body finishes
        (tmp / "new.txt").write_text("new")
    assert listing(final) == ["new.txt"]
    assert listing(tmp_path) == ["emotion"]  # no .old-* or .tmp-* left


def test_atomic_dir_creates_parents(tmp_path):
    with atomic_dir(tmp_path / "data" / "raw" / "x") as tmp:
        (tmp / "a").write_text("1")
    assert (tmp_path / "data" / "raw" / "x" / "a").read_text() == "1"


def test_write_json_writes_and_replaces(tmp_path):
    path = tmp_path / "metrics" / "clean" / "emotion.json"
    write_json(path, {"rows": 1})
    write_json(path, {"rows": 2, "labels": ["joy"]})
    assert json.loads(path.read_text()) == {"rows": 2, "labels": ["joy"]}
    assert listing(path.parent) == ["emotion.json"]


def test_write_json_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "emotion.json"
    write_json(path, {"rows": 1})
    with pytest.raises(TypeError):
        write_json(path, {"rows": {1, 2}})  # a set is not JSON
    assert json.loads(path.read_text()) == {"rows": 1}
    assert listing(tmp_path) == ["emotion.json"]


def test_write_json_failure_creates_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "new.json", {"bad": object()})
    assert listing(tmp_path) == []


def test_write_atomic_removes_a_half_written_temp_file(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("old")

    def write_then_fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, write_then_fail)
    assert path.read_text() == "old"
    assert listing(tmp_path) == ["report.txt"]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_run_s_temporaries_of_this_output_go_on_the_next_run(tmp_path):
    """A fetch killed while writing left data/raw/.emotion.tmp-<pid>/ forever; the next run of the same
    output removes it (and a half-renamed .old-<pid>), never another output's or a live process's."""
    final = tmp_path / "raw" / "emotion"
    stale = [final.with_name(f".emotion.tmp-{dead_pid()}"), final.with_name(f".emotion.old-{dead_pid()}")]
    for folder in stale:
        folder.mkdir(parents=True)
        (folder / "train.parquet").write_text("half")
    running = final.with_name(f".emotion.tmp-{os.getppid()}")  # a live process: still writing
    other = final.with_name(f".tweets.tmp-{dead_pid()}")  # another output's: its own next run's
    for folder in (running, other):
        folder.mkdir()
    with atomic_dir(final) as tmp:
        (tmp / "train.parquet").write_text("new")
    assert listing(final.parent) == sorted(["emotion", running.name, other.name])

    report = tmp_path / "metrics" / "emotion.json"
    report.parent.mkdir()
    half = report.with_name(f".emotion.json.tmp-{dead_pid()}")
    half.write_text("{")
    write_json(report, {"rows": 1})
    assert listing(report.parent) == ["emotion.json"]
