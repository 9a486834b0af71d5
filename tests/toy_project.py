"""A throw-away copy of the project (stages/, emotune/, dvc.yaml, params.yaml) as a git + DVC repository with one
tiny CSV dataset `toy` and a tiny BERT in the folder `tiny-bert`: what the DVC-level tests run `dvc repro`,
`dvc exp run`, `dvc plots show` and the report script in."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from toy_runs import LABELS, toy_frame

from emotune import testing

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PARAMS_FILE = ROOT / "params.yaml"

VENV_BIN = Path(sys.executable).parent
DVC = str(VENV_BIN / "dvc")


def write_csv(path: Path, frame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(label=frame["labels"].str[0])[["id", "text", "label"]].to_csv(path, index=False)


def dvc_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1", DVC_NO_ANALYTICS="1",
               PYTHONDONTWRITEBYTECODE="1", OMP_WAIT_POLICY="PASSIVE", GIT_AUTHOR_NAME="test",
               GIT_AUTHOR_EMAIL="test@example.com", GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    return env


def sh(root: Path, *command: str, timeout: int = 600) -> str:
    result = subprocess.run(command, cwd=root, env=dvc_env(), capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def skipped(output: str) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", output))


def write_toy_project(root: Path, adapters: tuple[str, ...] = ("lora", "ia3"), epochs: int = 2) -> Path:
    """The project (stages/, dvc.yaml, params.yaml) with one tiny CSV dataset `toy` and a tiny BERT in
    the folder `tiny-bert`, as a git + DVC repository with one commit and nothing reproduced yet."""
    testing.copy_project_code(ROOT, root)
    params = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params["dataset_registry"]["toy"] = {
        "task": "single_label", "labels": LABELS, "official_metric": "macro_f1", "label_column": "label",
        "id_column": "id", "files": {"train": "data/user/toy/train.csv", "validation": "data/user/toy/dev.csv",
                  "test": "data/user/toy/test.csv"}}
    params.update(datasets=["toy"], models=["tiny-bert"], adapters=list(adapters),
                  large={"datasets": [], "models": [], "adapters": []},
                  generative={"datasets": [], "models": [], "adapters": []},
                  reference={"models": [], "adapters": []})  # empty groups: no stages
    params["audit"].update(model="tfidf", folds=2)
    # the toy baselines embed and split words with the tiny BERT; no zero-shot decoder
    params["baseline"]["embedding_model"] = "tiny-bert"
    params["baseline"]["rnn"].update(tokenizer="tiny-bert", epochs=2)
    params["baseline"]["zero_shot"].update(datasets=[], models=[])
    params["adapter"].update(r=4, alpha=8)
    params["train"].update(epochs=epochs, batch_size=16, threads=1, lr=1e-2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for k, (split, n, name) in enumerate([("train", 120, "train"), ("validation", 40, "dev"), ("test", 30, "test")]):
        write_csv(root / "data/user/toy" / f"{name}.csv", toy_frame(n, "single_label", 100 + k, split))
    testing.save_tiny_model("bert", root / "tiny-bert")
    sh(root, "git", "init", "-q")
    sh(root, DVC, "init", "-q")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project")  # DVCLive inside a stage needs a repository with a commit
    return root


def build_toy_project(root: Path) -> Path:
    """`write_toy_project` (lora and ia3, 2 epochs), fully reproduced once and committed."""
    write_toy_project(root)
    out = sh(root, DVC, "repro")
    expected = {"fetch@toy", "clean@toy", "audit@toy", "plan", "tokenize@toy-tiny-bert",
                "train@toy-tiny-bert-lora", "train@toy-tiny-bert-ia3", "evaluate@toy-tiny-bert-lora",
                "evaluate@toy-tiny-bert-ia3", "baseline@toy", "aggregate"}
    assert ran(out) == expected, out
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "baseline")
    return root


