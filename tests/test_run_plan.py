"""The typed run plan (emotune/plan.py RunPlan, TokenizePlan): what the plan stage writes is read back
and validated once, into the objects train, evaluate, export and predict use; the file's bytes stay
what DVC hashes."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from emotune import plan as plan_stage
from emotune.adapter_table import ADAPTERS, DEFAULT_HEAD_LR
from emotune.config import AdapterHParams, parse_params
from emotune.errors import EmotuneError
from emotune.plan import RunPlan, TokenizePlan, ZeroShotPlan, read_plan, zero_shot_plans

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped_plans():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for group in ("large", "generative"):  # opt-in groups: switched on, so their plans are checked too
        raw[group]["datasets"] = ["tweet_eval_emotion"]
    return plan_stage.make_plans(parse_params(raw))


def test_every_shipped_plan_round_trips_through_its_file(shipped_plans, tmp_path):
    for rel, plan in shipped_plans.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan.to_json(), indent=2))
        back = read_plan(path, TokenizePlan if rel.name == "tokenize.json" else RunPlan)
        assert back == plan and back.to_json() == plan.to_json(), rel


def test_the_plan_is_typed_where_the_run_reads_it(shipped_plans):
    lora = shipped_plans[Path("semeval2018_ec/minilm/lora.json")]
    assert isinstance(lora.hparams, AdapterHParams) and lora.hparams.r == 16
    assert lora.multi_label and not lora.generative and lora.train_key == "train"
    assert lora.train.lr == ADAPTERS["lora"].lr and lora.train.head_lr == DEFAULT_HEAD_LR
    assert lora.name == "semeval2018_ec/minilm/lora"
    generative = shipped_plans[Path("tweet_eval_emotion/smollm2/gen_lora.json")]
    assert generative.generative and generative.train_key == "generative.train"
    # only the keys an adapter reads are in its file; reading it back gives the defaults for the rest
    full = shipped_plans[Path("emotion/minilm/full.json")]
    assert full.to_json()["adapter"]["hparams"] == {"model_config": {}}


def test_with_train_checks_the_change_like_params_yaml(shipped_plans):
    lora = shipped_plans[Path("emotion/minilm/lora.json")]
    assert lora.with_train(lr=1e-3).train.lr == 1e-3 and lora.train.lr != 1e-3  # a new plan; frozen
    with pytest.raises(EmotuneError, match=r"train\.epochs"):
        lora.with_train(epochs=0)


def test_a_bad_plan_file_fails_naming_the_file_and_key(shipped_plans, tmp_path):
    raw = shipped_plans[Path("emotion/minilm/lora.json")].to_json()
    path = tmp_path / "lora.json"
    raw["adapter"]["hparams"]["r"] = "sixteen"
    path.write_text(json.dumps(raw))
    with pytest.raises(EmotuneError, match=rf"{path}: adapter\.hparams\.r"):
        read_plan(path)
    raw["adapter"]["hparams"]["r"] = 16
    del raw["train"]
    path.write_text(json.dumps(raw))
    with pytest.raises(EmotuneError, match=r"not a run plan of this emotune version .*dvc repro plan"):
        read_plan(path)
    with pytest.raises(EmotuneError, match=r"no plan; .*`dvc repro plan`"):
        read_plan(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------
# A model that is not available here stops `emotune check` and the plan stage (issue 28)
# ---------------------------------------------------------------------------------------------
MISSING = "no-such-org/no-such-model"


def user_env(**changes) -> dict:
    """The environment of a user's shell: no Hub settings of ours, the checkout's stages importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_")) and k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **changes}


@pytest.fixture
def missing_model_project(project):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["models"] = [*raw["models"], MISSING]
    return project(raw)


def run(root: Path, command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - start


def assert_says_what_to_do(result, key: str) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key} = '{MISSING}'"), result.stderr
    for part in ("is not available", "requirements-models.txt", "give a folder", "run with the Hub"):
        assert part in lines[0], f"{part!r} missing from: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["HF_HUB_OFFLINE", "unreachable"])
def test_a_model_that_is_not_here_stops_check_and_plan_in_seconds(missing_model_project, env):
    """Today's main passed both, and the tokenize stage failed ~50 s later with a traceback, leaving an
    empty data/tokenized/<dataset>/no-such-org/."""
    root = missing_model_project
    result, seconds = run(root, [sys.executable, "-m", "emotune.cli", "check"], user_env(**env))
    message = assert_says_what_to_do(result, "models[1]")
    assert ("HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in env else "cannot connect to 127.0.0.1") in message
    result, seconds_plan = run(root, [sys.executable, "-m", "stages.plan"], user_env(**env))
    assert_says_what_to_do(result, "models[1]")
    assert max(seconds, seconds_plan) < 30, (seconds, seconds_plan)  # measured: 1.4-2.0 s each, mostly imports
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]  # no plans, nothing tokenized


def test_a_hub_model_in_the_local_cache_passes_offline(missing_model_project, tmp_path):
    cache = tmp_path / "hf-cache"
    snapshot = cache / "models--no-such-org--no-such-model" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--no-such-org--no-such-model" / "refs").mkdir()
    (cache / "models--no-such-org--no-such-model" / "refs" / "main").write_text("0123abc")
    result, _ = run(missing_model_project, [sys.executable, "-m", "emotune.cli", "check"],
                    user_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache)))
    assert result.returncode == 0, result.stderr
    assert f"emotion/{MISSING}/head" in result.stdout


def test_a_max_length_above_the_model_s_limit_is_said_at_check_and_plan(project):
    """MiniLM reads 512 tokens (its tokenizer_config.json); today's main clamped 100000 to 512 silently."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["tokenize"]["max_length"] = 100000
    root = project(raw)
    expected = ("warning: tokenize.max_length 100000 is above what models[0] = 'minilm' reads (512 tokens, its "
                "tokenizer's model_max_length): its texts are cut at 512")
    for command in (["emotune.cli", "check"], ["stages.plan"]):
        result, _ = run(root, [sys.executable, "-m", *command], user_env(HF_HUB_OFFLINE="1"))
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1, result.stderr
    raw["tokenize"]["max_length"] = 512
    result, _ = run(project(raw), [sys.executable, "-m", "stages.plan"], user_env(HF_HUB_OFFLINE="1"))
    assert result.returncode == 0 and result.stderr == "", result.stderr


class NoSuchRepo(http.server.BaseHTTPRequestHandler):
    """The Hub's answer for a repository that does not exist (or is private): 404, X-Error-Code RepoNotFound."""

    def do_GET(self):
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "Repository not found"}')

    def log_message(self, *args):
        pass


def test_a_reachable_hub_without_the_model_stops_check_with_one_request(missing_model_project):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoSuchRepo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result, _ = run(missing_model_project, [sys.executable, "-m", "emotune.cli", "check"],
                        user_env(HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}"))
    finally:
        server.shutdown()
    message = assert_says_what_to_do(result, "models[1]")
    assert "is not available: the Hub has no such model (or it is private: set HF_TOKEN)" in message


def test_the_zero_shot_plans_say_which_pairs_are_scored(tmp_path):
    """dvc.yaml runs the zero-shot baseline on every dataset of `datasets`; the plan says which are scored, so
    a change to baseline.zero_shot.datasets changes the bytes of the pairs it adds or removes only."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    plans = zero_shot_plans(parse_params(raw))
    assert {str(rel): plan.scored for rel, plan in plans.items()} == {
        f"{d}/baseline/zero_shot_smollm2.json": d == "tweet_eval_emotion"
        for d in ("emotion", "tweet_eval_emotion", "semeval2018_ec", "semeval2025_eng")}
    assert "emotion is not in baseline.zero_shot.datasets" in plans[Path("emotion/baseline/zero_shot_smollm2.json")].why
    raw["baseline"]["zero_shot"]["datasets"] = ["tweet_eval_emotion", "emotion"]
    after = zero_shot_plans(parse_params(raw))
    changed = {str(rel) for rel in plans if plans[rel].to_json() != after[rel].to_json()}
    assert changed == {"emotion/baseline/zero_shot_smollm2.json"}
    for rel, plan in after.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan.to_json()))
        assert read_plan(path, ZeroShotPlan) == plan
