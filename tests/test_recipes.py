"""The published recipes (recipes/*.yaml, docs/training.md "Published recipes"): each one's overrides go through DVC's
own `-S` code onto params.yaml and validate; then every run of the recipe trains and evaluates on toy data
with a tiny config-built model of the same architecture (the Hub models cannot load here), and each
setting the write-up used is asserted where it takes effect: the model config, the peft config, the
optimizer and scheduler, the tokenized prompts. Recipe 4 also runs on the offline MiniLM (a BERT) as a
real smoke run."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from toy_runs import DATASET, local_entry, toy_params, write_audited

from emotune import evaluate as evaluate_stage
from emotune import plan as plan_stage
from emotune import recipes
from emotune import tokenize as tokenize_stage
from emotune import train as train_stage
from emotune.errors import EmotuneError
from emotune.paths import run_paths

ROOT = Path(__file__).resolve().parent.parent
# The architecture of each Hub model the recipes name (its tiny stand-in)
ARCH = {"gemma-1.1-2b-it": "gemma", "sfr-embedding-mistral": "mistral", "mistral-7b-instruct": "mistral",
        "distilbert": "distilbert", "bert-large": "bert", "gpt2": "gpt2", "tinyllama": "llama"}


def test_every_recipe_file_is_tested_here():
    assert recipes.recipe_names() == sorted(RECIPES)


def test_overrides_survive_dvcs_own_parser(tmp_path):
    """What `dvc exp run -S` would write into params.yaml is exactly each recipe's value."""
    for name in recipes.recipe_names():
        recipe = recipes.load_recipe(name)
        for offline in (False, True):
            written = yaml.safe_load(recipes.apply(recipe, offline, ROOT / "params.yaml",
                                                   tmp_path / "params.yaml").read_text())
            for key, value in recipe.overrides(offline).items():
                node = written
                for part in key.split("."):
                    node = node[part]
                if isinstance(value, dict):  # a mapping merges into params.yaml's
                    node = {k: node[k] for k in value}
                assert as_floats(node) == as_floats(value), (name, offline, key)
            recipes.check(recipe, offline)  # and validates


def as_floats(value):
    """DVC writes 3e-05 without a dot, which YAML 1.1 (PyYAML) reads as a string; emotune/config.py reads
    either as the float (tests/test_config.py), so compare them as floats."""
    if isinstance(value, dict):
        return {k: as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_floats(v) for v in value]
    if isinstance(value, str):
        try:
            return float(value) if any(c.isdigit() for c in value) and value[0] in "0123456789.-+" else value
        except ValueError:
            return value
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def test_a_bad_recipe_names_its_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"title": "t", "source": "s", "params": {"adapter.bias": "sometimes"}}))
    with pytest.raises(EmotuneError, match=r"bad.yaml: adapter.bias: 'sometimes' is not allowed"):
        recipes.check(recipes.load_recipe(str(bad)))
    bad.write_text(yaml.safe_dump({"title": "t", "source": "s", "params": {"train.lr": 1e-3}, "oops": 1}))
    with pytest.raises(EmotuneError, match=r"unknown key\(s\) \['oops'\]"):
        recipes.load_recipe(str(bad))
    with pytest.raises(EmotuneError, match="no recipe 'emotion_gpt' \\(did you mean 'emotion_gpt2'"):
        recipes.load_recipe("emotion_gpt")


def test_the_command_is_dvc_exp_run_with_the_overrides():
    recipe = recipes.load_recipe("semeval2025_bert_large")
    cmd = recipes.command(recipe, queue=True)
    assert cmd[:6] == ["dvc", "exp", "run", "-n", "semeval2025-bert-large", "--queue"]
    assert "++train.warmup_steps=1000" in cmd and cmd[cmd.index("++train.warmup_steps=1000") - 1] == "-S"
    assert "++adapter.model_config={hidden_dropout_prob:0.2,attention_probs_dropout_prob:0.2}" in cmd


# ---------------------------------------------------------------------------------------------
# Every run of every recipe, on tiny models of the same architectures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from emotune.testing import save_tiny_model

    root = tmp_path_factory.mktemp("recipe-models")
    made = {}

    def get(name: str) -> Path:  # a folder named like the recipe's model, so run paths read the same
        if name not in made:
            made[name] = save_tiny_model(ARCH[name], root / name)
        return made[name]

    return get


def run_recipe(name: str, root: Path, tiny_models, sizes=(96, 40, 30), offline: bool = False,
               models: dict | None = None) -> dict:
    """Plan, train and evaluate every run of recipe `name` on toy data of the recipe's task; returns
    {(matrix, model, adapter): (plan, train output, eval report, log lines)}."""
    params = recipes.check(recipes.load_recipe(name), offline)
    task = params.dataset(next(d for m in params.matrices() for d in m.datasets)).task
    toy = toy_params(task).dataset_registry[DATASET]
    params = dataclasses.replace(params, dataset_registry={**params.dataset_registry, DATASET: toy})
    audited = write_audited(root / "data" / "audited" / DATASET, task, sizes)
    wandb = importlib.util.find_spec("wandb") is not None
    out = {}
    for matrix in params.matrices():
        for model_name in matrix.models:
            folder = (models or {}).get(model_name) or tiny_models(model_name)
            model = local_entry(folder)
            data = root / "data" / "tokenized" / DATASET / model["name"]
            if not (data / "meta.json").exists():
                data.mkdir(parents=True)
                tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, DATASET, model), audited, data)
            for adapter in matrix.adapters:
                plan = plan_stage.run_plan(params, matrix, DATASET, model, adapter)
                plan = plan.with_train(threads=2)
                if not wandb:  # the optional extra: tests/test_train.py runs it offline where installed
                    plan = plan.with_train(report_to=[r for r in plan.train.report_to if r != "wandb"])
                paths = run_paths(DATASET, model["name"], adapter, root)
                paths.plan.parent.mkdir(parents=True, exist_ok=True)
                paths.plan.write_text(json.dumps(plan.to_json()))
                lines = []
                result = train_stage.train(plan, paths, device="cpu", log=lines.append)
                report = evaluate_stage.evaluate_run(DATASET, model["name"], adapter, 0.5, 2, root, device="cpu")
                out[(matrix.name or "main", model_name, adapter)] = (plan, result, report, lines, paths)
    return out


def card(paths) -> dict:
    return json.loads((paths.model / "run.json").read_text())


def learning_rates(paths) -> dict[int, float]:
    """DVCLive's train/learning_rate curve: step -> the body's LR (the first optimizer group)."""
    frame = pd.read_csv(paths.live / "plots" / "metrics" / "train" / "learning_rate.tsv", sep="\t")
    return dict(zip(frame["step"], frame["learning_rate"]))


def unwrapped_linears(model, head: tuple[str, ...]) -> list[str]:
    """Linear layers outside the head that no adapter wraps (peft keeps the original as `base_layer`)."""
    wrapped = {n.rsplit(".base_layer", 1)[0] for n, _ in model.named_modules() if n.endswith(".base_layer")}
    out = []
    for name, module in model.named_modules():
        if (type(module).__name__ in ("Linear", "Linear4bit", "Conv1D") and ".lora_" not in name
                and name not in wrapped and not name.endswith("base_layer")
                and not any(f".{h}" in f".{name}" for h in head)):
            out.append(name)
    return out


def peft_config(model):
    return model.peft_config["default"]


def test_recipe_1_semeval2018_gemma_lora_r128_ia3_and_sfr_mistral(tmp_path, tiny_models):
    runs = run_recipe("semeval2018_gemma", tmp_path, tiny_models)
    assert set(runs) == {("main", "gemma-1.1-2b-it", "lora"), ("main", "gemma-1.1-2b-it", "ia3"),
                         ("large", "sfr-embedding-mistral", "lora")}
    for (matrix, model_name, adapter), (plan, result, report, _, paths) in runs.items():
        model = result["model"]
        config = peft_config(model)
        assert unwrapped_linears(model, ("score",)) == [], (model_name, adapter)  # all linear layers
        args = card(paths)["training_arguments"]
        assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (8, 4)
        assert plan.train.max_train_examples is None
        if adapter == "lora":
            assert (config.r, config.lora_alpha, config.lora_dropout, config.bias) == (128, 256, 0.01, "lora_only")
            assert "score" in config.modules_to_save  # the score head trains and is saved
            from safetensors import safe_open

            with safe_open(paths.model / "adapter_model.safetensors", "pt") as f:
                assert any("score" in k for k in f.keys())
        else:
            assert type(config).__name__ == "IA3Config"
        assert report["test"]["jaccard"] >= 0
    params = recipes.check(recipes.load_recipe("semeval2018_gemma"))
    assert params.train.report_to == ["wandb"]
    zero = params.baseline.zero_shot
    assert zero.models == ["michellejieli/emotion_text_classifier"] and zero.label_maps[zero.models[0]]["joy"] == "joy"
    assert params.baseline.rnn.cell == "lstm"


def test_recipe_2_multilabel_comparative_full_lora_qlora(tmp_path, tiny_models):
    runs = run_recipe("multilabel_comparative", tmp_path, tiny_models)
    assert set(runs) == {("main", "distilbert", "full"),
                         *{("large", m, a) for m in ("gemma-1.1-2b-it", "mistral-7b-instruct") for a in ("lora", "qlora")}}
    for (matrix, model_name, adapter), (plan, result, report, _, paths) in runs.items():
        args = card(paths)["training_arguments"]
        assert (args["optim"], args["lr_scheduler_type"]) == ("adamw_torch_fused", "linear")  # AdamW + schedule
        assert {"accuracy", "micro_f1", "macro_f1"} <= set(report["test"])
        if adapter == "qlora":
            import bitsandbytes as bnb

            assert any(isinstance(m, bnb.nn.Linear4bit) for m in result["model"].modules())
        if adapter == "full":
            assert all(p.requires_grad for p in result["model"].parameters())
    confusion = tmp_path / "metrics" / "eval" / DATASET / "distilbert" / "full" / "label_confusion.csv"
    assert list(pd.read_csv(confusion).columns) == ["label", "tp", "fp", "fn", "tn"]


def test_recipe_3_tweeteval_tinyllama_qlora_sft_with_the_system_prompt(tmp_path, tiny_models):
    from transformers import AutoTokenizer

    from emotune import prompts
    from emotune.model_card import model_card  # noqa: F401  (the card is built by export; its text is below)

    recipe = recipes.load_recipe("tweeteval_sentiment_tinyllama")
    system = recipe.params["tokenize.prompt.system"]
    runs = run_recipe("tweeteval_sentiment_tinyllama", tmp_path, tiny_models)
    assert set(runs) == {("generative", "tinyllama", "gen_qlora")}
    plan, result, report, lines, paths = runs[("generative", "tinyllama", "gen_qlora")]
    config = peft_config(result["model"])
    assert (config.r, config.lora_alpha, set(config.target_modules)) == (8, 16, {"k_proj", "v_proj"})
    assert config.task_type == "CAUSAL_LM"
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in result["model"].modules())  # 4 bit
    args = card(paths)["training_arguments"]
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"], args["learning_rate"],
            args["lr_scheduler_type"], args["num_train_epochs"]) == (12, 128, 5e-4, "linear", 1)
    # the paged optimizer (state offloaded to CPU memory) where there is a GPU; said and replaced on the CPU
    assert plan.train.optim == "paged_adamw_8bit"
    assert train_stage.resolve_optim("paged_adamw_8bit", "gen_qlora", "cuda") == "paged_adamw_8bit"
    assert args["optim"] == "adamw_torch_fused" and any("paged_adamw_8bit pages optimizer state" in m for m in lines)
    # the system prompt is in every tokenized prompt, and travels with the saved model
    tokenizer = AutoTokenizer.from_pretrained(paths.model)
    with_system = prompts.prompt_format(tokenizer, plan.dataset.labels, False, system=system).prefix_ids
    assert with_system != prompts.prompt_format(tokenizer, plan.dataset.labels, False).prefix_ids
    for ids in pd.read_parquet(paths.data / "gen_train.parquet")["prompt_ids"]:
        assert list(ids[:len(with_system)]) == with_system
    metadata = json.loads((paths.model / "emotune_model.json").read_text())
    assert metadata["prompt"]["settings"] == {"system": system, "instruction": None}
    assert 0 <= report["test"]["invalid_rate"] <= 1


def test_recipe_4_semeval2025_bert_large_dropout_warmup_early_stopping(tmp_path, tiny_models):
    runs = run_recipe("semeval2025_bert_large", tmp_path, tiny_models)
    plan, result, report, _, paths = runs[("main", "bert-large", "full")]
    check_recipe_4(plan, result, paths)


def check_recipe_4(plan, result, paths):
    config = result["model"].config
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.2, 0.2)
    assert {m.p for m in result["model"].modules() if isinstance(m, torch.nn.Dropout)} == {0.2}
    args = card(paths)["training_arguments"]
    assert (args["learning_rate"], args["warmup_steps"], args["lr_scheduler_type"], args["weight_decay"],
            args["max_grad_norm"], args["per_device_train_batch_size"], args["num_train_epochs"]) == \
        (3e-5, 1000, "linear", 0.01, 1.0, 16, 15)
    assert plan.train.early_stopping_patience == 2
    # the scheduler got 1,000 warmup steps: optimizer step s (from 1) ran at 3e-5 * (s - 1) / 1000, the LR
    # Trainer logs at step s
    rates = learning_rates(paths)
    assert len(rates) >= 2
    for step, lr in rates.items():
        assert lr == pytest.approx(3e-5 * (step - 1) / 1000, rel=1e-6), step
    summary = result["summary"]
    assert summary["epochs_run"] <= 15 and summary["epochs_run"] >= min(summary["best_epoch"] + 2, 15)


def test_recipe_4_offline_on_minilm_a_real_bert(tmp_path, tiny_models):
    from emotune.model_registry import resolve_model

    minilm = resolve_model("minilm").folder
    runs = run_recipe("semeval2025_bert_large", tmp_path, tiny_models, sizes=(48, 20, 20), offline=True,
                      models={"minilm": minilm})
    plan, result, report, _, paths = runs[("main", "minilm", "full")]
    assert plan.train.max_train_examples == 200
    config = result["model"].config
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.2, 0.2)
    assert card(paths)["training_arguments"]["warmup_steps"] == 1000


def test_recipe_5_emotion_gpt2_head_lora_qlora(tmp_path, tiny_models):
    runs = run_recipe("emotion_gpt2", tmp_path, tiny_models)
    assert set(runs) == {("main", "gpt2", a) for a in ("head", "lora", "qlora")}
    for (_, _, adapter), (plan, result, report, _, paths) in runs.items():
        model = result["model"]
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(paths.model)
        assert tokenizer.pad_token == tokenizer.eos_token and model.config.pad_token_id == tokenizer.eos_token_id
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if adapter == "head":
            assert trainable and all("score" in n for n in trainable)
        else:
            assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
        assert card(paths)["training_arguments"]["num_train_epochs"] == 3
        assert 0 <= report["official"] <= 1


RECIPES = ("semeval2018_gemma", "multilabel_comparative", "tweeteval_sentiment_tinyllama",
           "semeval2025_bert_large", "emotion_gpt2")


def test_recipe_3_offline_on_smollm2_a_real_llama(tmp_path, tiny_models):
    """The real smoke run of recipe 3: SmolLM2-135M-Instruct (a Llama, like TinyLlama; the optional offline
    models of requirements-models.txt) in 4 bit, with the recipe's system prompt in its chat template."""
    from transformers import AutoTokenizer

    from emotune.model_registry import resolve_model

    try:
        smollm2 = resolve_model("smollm2").folder
    except EmotuneError as exc:
        pytest.skip(f"smollm2 is an optional offline model (make .venv/models-installed): {exc}")
    recipe = recipes.load_recipe("tweeteval_sentiment_tinyllama")
    system = recipe.offline["tokenize.prompt.system"]
    runs = run_recipe("tweeteval_sentiment_tinyllama", tmp_path, tiny_models, sizes=(48, 16, 12), offline=True,
                      models={"smollm2": smollm2})
    plan, result, report, lines, paths = runs[("generative", "smollm2", "gen_qlora")]
    assert (peft_config(result["model"]).r, set(peft_config(result["model"]).target_modules)) == (8, {"k_proj", "v_proj"})
    tokenizer = AutoTokenizer.from_pretrained(paths.model)
    prompt = tokenizer.decode(pd.read_parquet(paths.data / "gen_test.parquet")["prompt_ids"].iloc[0])
    assert prompt.index(system) < prompt.index("Text: ")  # the system turn, before the user's text
    assert "system" in prompt  # SmolLM2's template has a system role
    assert 0 <= report["test"]["invalid_rate"] <= 1
