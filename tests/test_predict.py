"""predict: texts from --text, CSV, JSONL and stdin; CSV/JSONL output; the normalisation of clean; tuned
multi-label thresholds; --best from the leaderboard; generative runs report invalid answers; every error
names the file/row/key and the fix. Tiny decoder (Llama) runs trained on the toy dataset, offline."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from toy_runs import LABELS
from use_runs import CUE_LORA_LR, CUE_TEXTS, make_project, train_run

from emotune import predict as pr
from emotune import testing
from emotune.errors import EmotuneError
from emotune.prompts import parse_answer
from emotune.runs import best_run, normaliser, resolve_run

ROOT = Path(__file__).resolve().parent.parent  # the checkout


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """(root, classifier run, generative run): single-label toy runs of a tiny Llama."""
    base = tmp_path_factory.mktemp("predict")
    llama = testing.save_tiny_model("llama", base / "tiny-llama")
    root = make_project(base / "single")
    return root, train_run(root, llama, "lora", lr=CUE_LORA_LR), train_run(root, llama, "gen_lora")


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict-multi")
    root = make_project(base / "multi", "multi_label")
    return root, train_run(root, testing.save_tiny_model("llama", base / "tiny-llama"), "lora", "multi_label")


@pytest.fixture
def cli(monkeypatch, capsys):
    """cli(root, *argv, stdin=bytes) -> (stdout, stderr) of predict's main() run on project `root`."""

    def call(root: Path, *argv: str, stdin: bytes | None = None):
        monkeypatch.chdir(root)  # predict finds its project from the working directory
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsys.readouterr()
        pr.main(list(argv))
        return capsys.readouterr()

    return call


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


# ---------------------------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------------------------
def test_texts_from_the_command_line(single, cli):
    root, run, _ = single
    out, _ = cli(root, run, *[arg for text in CUE_TEXTS.values() for arg in ("--text", text)])
    rows = jsonl(out)
    assert [r["text"] for r in rows] == list(CUE_TEXTS.values())
    assert [r["label"] for r in rows] == list(CUE_TEXTS), "the trained toy run knows the cue words"
    for row in rows:
        assert list(row["probabilities"]) == LABELS
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    # the same numbers as the library call
    direct = pr.predict(resolve_run(run, root), list(CUE_TEXTS.values()), show_progress=False)
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in rows], direct.probabilities, atol=1e-6)


def test_csv_file_with_a_text_column_to_a_csv_file(single, cli, tmp_path):
    root, run, _ = single
    source = tmp_path / "reviews.csv"
    with open(source, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "review", "stars"])
        for i, text in enumerate(CUE_TEXTS.values()):
            writer.writerow([f"r{i}", text, "5"])
        writer.writerow(["r3", 'she said "i hate, hate this"', "1"])  # quoted comma and quotes
    target = tmp_path / "out" / "preds.csv"
    _, err = cli(root, run, "--input", str(source), "--text-column", "review", "--output", str(target))
    assert f"4 predictions of {run} -> {target}" in err
    rows = list(csv.DictReader(open(target)))
    assert list(rows[0]) == ["id", "text", "label", *(f"prob_{label}" for label in LABELS)]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    assert rows[3]["text"] == 'she said "i hate, hate this"'
    assert [r["label"] for r in rows[:3]] == list(CUE_TEXTS)
    assert not list(target.parent.glob(".*tmp*")), "written atomically, no temporary left"


def test_jsonl_file_and_stdin_lines(single, cli, tmp_path):
    root, run, _ = single
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"body": t, "n": i}) + "\n\n" for i, t in enumerate(CUE_TEXTS.values())))
    from_file = jsonl(cli(root, run, "--input", str(source), "--text-column", "body")[0])
    assert [r["label"] for r in from_file] == list(CUE_TEXTS) and "id" not in from_file[0]

    lines = "\n".join(CUE_TEXTS.values()) + "\n\n"  # blank lines carry no text
    from_stdin = jsonl(cli(root, run, stdin=lines.encode())[0])
    assert [r["text"] for r in from_stdin] == list(CUE_TEXTS.values())
    assert [r["probabilities"] for r in from_stdin] == [r["probabilities"] for r in from_file]

    as_csv = cli(root, run, "--output-format", "csv", stdin=lines.encode())[0]
    assert as_csv.splitlines()[0] == "text,label," + ",".join(f"prob_{label}" for label in LABELS)


def test_large_inputs_show_a_progress_bar(single, cli):
    root, run, _ = single
    texts = [CUE_TEXTS["joy"]] * 40
    _, err = cli(root, run, "--batch-size", "2", stdin="\n".join(texts).encode())  # chunks of 16 texts
    assert "40/40" in err
    _, err = cli(root, run, "--batch-size", "2", "--no-progress", stdin="\n".join(texts).encode())
    assert "40/40" not in err


def test_texts_are_normalised_as_clean_normalised_the_training_data(single):
    root, run, _ = single
    trained_run = resolve_run(run, root)
    raw = ["i am so happy &amp; great @bob   today http://t.co/x", "we are sad&lt;3"]
    clean = ["i am so happy & great @user today http", "we are sad<3"]
    assert [normaliser("toy", root)(t) for t in raw] == clean
    got = pr.predict(trained_run, raw, show_progress=False).probabilities
    np.testing.assert_allclose(got, pr.predict(trained_run, clean, show_progress=False).probabilities, atol=1e-6)
    trained = trained_run.load()
    unnormalised = pr.classifier_probabilities(trained, trained_run, raw, 32, show_progress=False)
    assert np.abs(unnormalised - got).max() > 1e-3, "the normalisation changes what the model sees"


def test_clean_settings_come_from_dvc_lock_when_it_has_them(tmp_path):
    root = make_project(tmp_path)
    assert normaliser("toy", root)("a &amp; b @bob") == "a & b @user"
    lock = {"schema": "2.0", "stages": {"clean@toy": {"params": {"params.yaml": {
        "clean": {"html_unescape": False, "mask_mentions": None}, "dataset_registry.toy": {"tweets": True}}}}}}
    (root / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    assert normaliser("toy", root)("a &amp; b @bob") == "a &amp; b @bob"


# ---------------------------------------------------------------------------------------------
# Multi-label thresholds, --best, generative runs
# ---------------------------------------------------------------------------------------------
def test_multi_label_sets_use_the_runs_tuned_thresholds(multi, cli):
    root, run = multi
    texts = list(CUE_TEXTS.values())
    out, err = cli(root, run, *[a for t in texts for a in ("--text", t)])
    assert "metrics/eval/toy/tiny-llama/lora.json is missing" in err and "using threshold 0.5" in err
    rows = jsonl(out)
    for row in rows:
        assert row["labels"] == [label for label, p in row["probabilities"].items() if p > 0.5]
    assert any(row["labels"] for row in rows)

    evaluation = root / "metrics" / "eval" / "toy" / "tiny-llama" / "lora.json"
    evaluation.parent.mkdir(parents=True)
    evaluation.write_text(json.dumps({"labels": LABELS, "task": "multi_label", "thresholds": [1.0, 0.0, 0.5]}))
    out, err = cli(root, run, *[a for t in texts for a in ("--text", t)])
    assert "missing" not in err
    for row in jsonl(out):  # joy never (p > 1 is impossible), anger always, sadness above 0.5
        assert row["labels"] == ["anger"] + (["sadness"] if row["probabilities"]["sadness"] > 0.5 else [])

    as_csv = list(csv.DictReader(io.StringIO(cli(root, run, "--text", texts[2], "--output-format", "csv")[0])))
    assert as_csv[0]["labels"].split("|")[0] == "anger"

    evaluation.write_text(json.dumps({"labels": ["joy", "sadness", "anger"], "task": "multi_label",
                                      "thresholds": [0.5, 0.5, 0.5]}))
    with pytest.raises(EmotuneError, match=r"lora.json: labels .* differ from the run's"):
        cli(root, run, "--text", texts[0])
    evaluation.unlink()


def test_best_run_from_the_leaderboard(single, cli):
    root, run, _ = single
    board = root / "metrics" / "leaderboard.json"
    with pytest.raises(EmotuneError, match=r"metrics/leaderboard.json: missing; `dvc repro` writes it"):
        cli(root, "--best", "toy", "--text", "hi")
    board.parent.mkdir(parents=True, exist_ok=True)
    row = {"dataset": "toy", "model": "tiny-llama", "official_metric": "accuracy"}
    board.write_text(json.dumps({"rows": [
        {**row, "adapter": "majority", "kind": "baseline", "best": True, "official": 0.4},
        {**row, "adapter": "gen_lora", "kind": "run", "best": False, "official": 0.5},
        {**row, "adapter": "lora", "kind": "run", "best": True, "official": 0.9}]}))
    assert best_run("toy", root).name == run
    assert jsonl(cli(root, "--best", "toy", "--text", CUE_TEXTS["anger"])[0])[0]["label"] == "anger"
    with pytest.raises(EmotuneError, match=r"no best run for dataset 'tyo' \(did you mean 'toy'\?\); it ranks toy"):
        cli(root, "--best", "tyo", "--text", "hi")
    board.unlink()


def test_generative_runs_answer_with_label_words_and_report_invalid_answers(single, cli):
    root, _, gen_run = single
    rows = jsonl(cli(root, gen_run, *[a for t in CUE_TEXTS.values() for a in ("--text", t)])[0])
    for row in rows:
        names = parse_answer(row["answer"], LABELS, False)
        assert row["valid"] == (names is not None)
        assert row["label"] == (names[0] if names else None)
        assert "probabilities" not in row

    class Babbler:  # a model whose second answer names no label
        def predict(self, texts, **kwargs):
            return [["joy"], None][:len(texts)], ["joy", "happy-ish"][:len(texts)]

    result = pr.predict(resolve_run(gen_run, root), ["a", "b"], trained=Babbler(), show_progress=False)
    assert result.predicted == [["joy"], None]
    assert result.notes == ["1 of 2 answers name no valid label (written with valid=false and their raw answer; "
                            "not mapped to a label)"]
    inputs = pr.Inputs(["a", "b"], "--text", [1, 2])
    assert pr.records(inputs, result)[1] == {"text": "b", "label": None, "answer": "happy-ish", "valid": False}


# ---------------------------------------------------------------------------------------------
# Errors name the file, row or key, and the fix
# ---------------------------------------------------------------------------------------------
def test_unknown_runs(single, tmp_path):
    root, run, _ = single
    with pytest.raises(EmotuneError, match=r"models/toy/tiny-llama/lorra: no trained run 'toy/tiny-llama/lorra' "
                                           r"\(did you mean 'toy/tiny-llama/lora'\?\); trained runs: "):
        resolve_run("toy/tiny-llama/lorra", root)
    with pytest.raises(EmotuneError, match=r"expected <dataset>/<model>/<adapter>"):
        resolve_run("toy/lora", root)
    with pytest.raises(EmotuneError, match=r"no run is trained yet: `dvc repro` trains"):
        resolve_run("toy/tiny-llama/lora", tmp_path)


@pytest.mark.parametrize("name, content, argv, message", [
    ("in.csv", "id,body\n1,hello\n", [], r"in.csv: no column 'text'; its columns are 'id', 'body': pass "
                                          r"--text-column NAME"),
    ("in.csv", "id,Text\n1,hello\n", [], r"no column 'text' \(did you mean 'Text'\?\)"),
    ("in.csv", "id,text\n", [], r"in.csv: no texts to predict \(the input is empty or has only a header\)"),
    ("in.txt", "\n  \n", [], r"in.txt: no texts to predict"),
    ("in.jsonl", '{"text": "a"}\n{"text": \n', [], r"in.jsonl: line 2: not valid JSON"),
    ("in.jsonl", '{"text": "a"}\n{"text": ""}\n{"text": 3}\n', [],
     r"in.jsonl: line 2: no text in column 'text' \(and 1 more lines\); fill or remove them"),
    ("in.csv", 'text,id\n"a",1\nb,2,3\n', [], r"in.csv: line 3: 3 fields, expected 2 \(text, id\); check the "
                                               r"delimiter ',' and the quoting of that line, or pass --format"),
    ("in.xlsx", "x", [], r"in.xlsx: cannot tell the format from the extension '.xlsx'; pass --format"),
    ("in.txt", b"caf\xe9\n", [], r"in.txt: line 1: byte 0xe9 is not UTF-8"),
])
def test_bad_inputs(name, content, argv, message, tmp_path):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(EmotuneError, match=message):
        pr.read_inputs(None, path, None, *argv)


def test_bad_command_lines(single, cli):
    root, run, _ = single
    with pytest.raises(EmotuneError, match=r"stdin: no texts to predict"):
        cli(root, run, stdin=b"\n\n")
    with pytest.raises(EmotuneError, match=r"--text number 2 is empty"):
        cli(root, run, "--text", "hi", "--text", " ")
    with pytest.raises(EmotuneError, match=r"name one run"):
        cli(root, run, "--best", "toy", "--text", "hi")
    with pytest.raises(EmotuneError, match=r"nope.csv: no such file \(--input\)"):
        cli(root, run, "--input", "nope.csv")
    with pytest.raises(EmotuneError, match=r"preds.xlsx: cannot tell the output format"):
        cli(root, run, "--text", "hi", "--output", "preds.xlsx")


@pytest.mark.parametrize("command", [["emotune", "predict"], ["python", "-m", "emotune.predict"]],
                         ids=["console script", "python -m"])
def test_the_command_exits_with_one_clear_line(command):
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / command[0]), *command[1:], "nope/x/y", "--text", "hi"], cwd=ROOT / "data",
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: models/nope/x/y: no trained run 'nope/x/y'"), result.stderr
    assert "Traceback" not in result.stderr
