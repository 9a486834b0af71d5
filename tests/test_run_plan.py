"""The typed run plan (emotune/plan.py RunPlan, TokenizePlan): what the plan stage writes is read back
and validated once, into the objects train, evaluate, export and predict use; the file's bytes stay
what DVC hashes."""
from __future__ import annotations

import json
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
