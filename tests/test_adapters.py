"""Adapters on tiny random models of every architecture family: what trains, that one optimizer step
lowers the loss, that the frozen part stays frozen, QLoRA's 4-bit layers on the CPU, and that
save -> load reproduces the logits exactly. Offline, CPU only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emotune import adapters as ad
from emotune import model_registry as mr
from emotune import testing
from emotune.config import build
from emotune.errors import EmotuneError

torch.set_num_threads(1)

LABELS = ["joy", "anger", "sadness"]
TEXTS = ["i am so happy today", "why", "this is awful and i hate it", "i feel sad and lonely at night"]
SINGLE = torch.tensor([0, 1, 1, 2])
MULTI = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float)
HP = ad.AdapterHParams(r=4, alpha=8, dropout=0.1)
ARCHS = ["bert", "mpnet", "distilbert", "gpt2", "llama", "mistral", "gemma"]
LR = {"full": 1e-3, "head": 1e-2, "lora": 1e-2, "dora": 1e-2, "ia3": 1e-2, "qlora": 1e-2}




def batch(loaded):
    return loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")


def loss_of(model, enc, labels) -> float:
    with torch.no_grad():
        return model(**enc, labels=labels).loss.item()


def logits_of(model, enc) -> torch.Tensor:
    with torch.no_grad():
        return model(**enc).logits


def train_step(model, enc, labels, lr):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model(**enc, labels=labels).loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def frozen_weight(model):
    """A body weight that only `full` may change: the first attention projection's."""
    for name, p in model.named_parameters():
        if not p.requires_grad and p.dtype.is_floating_point and p.dim() == 2 and "embed" not in name:
            return name, p.detach().clone()
    return None, None


def check_trainable(model, loaded, adapter):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    counts = ad.parameter_counts(model)
    assert 0 < counts["trainable"] <= counts["total"]
    if adapter == "full":
        assert counts["trainable"] == counts["total"]
        return
    assert counts["trainable"] < counts["total"] / 2, counts
    heads = loaded.head_modules
    if adapter == "head":
        assert trainable and all(mr._covered(n.rsplit(".", 1)[0], heads) for n in trainable), trainable
        return
    head_params = [n for n in trainable if "modules_to_save" in n]
    assert head_params, "the classification head must train"
    marker = {"lora": "lora_", "dora": "lora_", "qlora": "lora_", "ia3": "ia3_l"}[adapter]
    others = [n for n in trainable if n not in head_params]
    assert others and all(marker in n for n in others), others
    if adapter == "dora":
        assert any("lora_magnitude_vector" in n for n in others)


@pytest.mark.parametrize("adapter", tuple(ad.BUILDERS))
@pytest.mark.parametrize("model_type", ARCHS)
def test_adapter_trains_and_round_trips(model_type, adapter, tiny, tmp_path):
    run_case(model_type, adapter, "single_label_classification", tiny, tmp_path)


@pytest.mark.parametrize("adapter", tuple(ad.BUILDERS))
@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_adapter_multi_label(model_type, adapter, tiny, tmp_path):
    run_case(model_type, adapter, "multi_label_classification", tiny, tmp_path)


def run_case(model_type, adapter, problem_type, tiny, tmp_path):
    torch.manual_seed(0)
    labels = MULTI if problem_type == "multi_label_classification" else SINGLE
    loaded = ad.load_base(str(tiny(model_type)), adapter, LABELS, problem_type)
    model = ad.apply_adapter(loaded, adapter, HP)
    check_trainable(model, loaded, adapter)
    if adapter == "qlora":
        import bitsandbytes as bnb

        linear4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
        assert linear4 and all("lora" not in n.rsplit(".", 1)[-1] for n in linear4)
        head = [m for n, m in model.named_modules() if n.endswith(loaded.head_modules[-1])]
        assert head and not any(isinstance(m, bnb.nn.Linear4bit) for m in head)
    model.eval()  # no dropout: the loss is a deterministic function of the weights
    enc = batch(loaded)
    before = loss_of(model, enc, labels)
    initial = logits_of(model, enc)
    name, weight = frozen_weight(model)
    train_step(model, enc, labels, LR[adapter])
    after = loss_of(model, enc, labels)
    assert after < before, (before, after)
    if adapter != "full":
        assert torch.equal(dict(model.named_parameters())[name], weight), f"{name} changed"

    expected = logits_of(model, enc)
    folder = ad.save_trained(model, tmp_path / "saved", loaded, adapter, HP, extra={"note": "t"})
    files = {p.name for p in folder.iterdir()}
    assert ad.METADATA_FILE in files and "tokenizer.json" in files
    assert {"full": "model.safetensors", "head": ad.HEAD_FILE}.get(adapter, "adapter_model.safetensors") in files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    meta = json.loads((folder / ad.METADATA_FILE).read_text())
    assert meta["adapter"] == adapter and meta["labels"] == LABELS and meta["problem_type"] == problem_type
    assert meta["hparams"]["r"] == 4 and meta["extra"] == {"note": "t"}
    assert meta["base_provenance"]["files"]["model.safetensors"]

    trained = ad.load_trained(folder)
    assert trained.labels == LABELS
    assert trained.model.config.id2label == dict(enumerate(LABELS))
    enc2 = batch(trained)
    assert all(torch.equal(enc[k], enc2[k]) for k in enc)  # the saved tokenizer pads the same way
    got = logits_of(trained.model, enc2)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0), (got - expected).abs().max()
    assert not torch.allclose(got, initial, atol=1e-4), "the reloaded model must carry the training"


def test_head_adapter_trains_only_the_head_but_keeps_new_modules(tiny):
    loaded = ad.load_base(str(tiny("distilbert")), "head", LABELS)
    model = ad.apply_adapter(loaded, "head", HP)
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"pre_classifier", "classifier"}


def test_qlora_needs_a_quantised_model_and_vice_versa(tiny):
    plain = ad.load_base(str(tiny("llama")), "lora", LABELS)
    with pytest.raises(EmotuneError, match="quantize_4bit=True"):
        ad.apply_adapter(plain, "qlora", HP)
    quantised = ad.load_base(str(tiny("llama")), "qlora", LABELS)
    with pytest.raises(EmotuneError, match="quantize_4bit=False"):
        ad.apply_adapter(quantised, "lora", HP)


def test_explicit_targets_and_their_errors(tiny):
    loaded = ad.load_base(str(tiny("llama")), "lora", LABELS)
    hp = ad.AdapterHParams(r=2, alpha=4, target_modules=["q_proj", "v_proj"])
    model = ad.apply_adapter(loaded, "lora", hp)
    lora = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert lora == {"q_proj", "v_proj"}
    loaded = ad.load_base(str(tiny("llama")), "lora", LABELS)
    with pytest.raises(EmotuneError, match=r"\['qproj'\] match no module.*q_proj"):
        ad.apply_adapter(loaded, "lora", ad.AdapterHParams(target_modules=["qproj"]))
    with pytest.raises(EmotuneError, match="not among the targets"):
        ad.apply_adapter(loaded, "ia3", ad.AdapterHParams(ia3_feedforward_modules=["o_proj"]))


def test_ia3_defaults_scale_keys_values_and_ffn_input(tiny):
    loaded = ad.load_base(str(tiny("bert")), "ia3", LABELS)
    config = ad.peft_config(loaded, "ia3", HP)
    assert set(config.target_modules) == {"key", "value", "output.dense"}
    assert set(config.feedforward_modules) == {"output.dense"}
    assert config.modules_to_save == ["pooler", "classifier"]  # BERT's pooled [CLS] path is the head
    assert "bert.pooler.dense" in config.exclude_modules


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_bert_pooler_trains_in_full_and_stays_out_of_lora_and_4bit(tiny, adapter):
    import bitsandbytes as bnb

    loaded = ad.load_base(str(tiny("bert")), adapter, LABELS)
    model = ad.apply_adapter(loaded, adapter, HP)
    pooler = {n: p for n, p in model.named_parameters() if ".pooler." in n}
    assert not [n for n in pooler if "lora_" in n], "the pooler is trained in full, not through LoRA"
    assert any(p.requires_grad and "modules_to_save" in n for n, p in pooler.items())
    assert not [n for n, m in model.named_modules() if ".pooler." in n and isinstance(m, bnb.nn.Linear4bit)]
    assert [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)] or adapter == "lora"


def test_gpt2_uses_fan_in_fan_out(tiny):
    loaded = ad.load_base(str(tiny("gpt2")), "lora", LABELS)
    assert ad.peft_config(loaded, "lora", HP).fan_in_fan_out
    loaded = ad.load_base(str(tiny("bert")), "lora", LABELS)
    assert not ad.peft_config(loaded, "lora", HP).fan_in_fan_out


def test_hparams_from_params_yaml_are_validated():
    hp = build(ad.AdapterHParams, {"r": 8, "alpha": 16, "dropout": 0, "target_modules": ["query"]}, "adapter")
    assert hp == ad.AdapterHParams(r=8, alpha=16, dropout=0.0, target_modules=["query"])
    with pytest.raises(EmotuneError, match="adapter.rank: unknown key.*allowed: r, alpha"):
        build(ad.AdapterHParams, {"rank": 8}, "adapter")
    with pytest.raises(EmotuneError, match="adapter.r: must be >= 1"):
        ad.check_hparams(ad.AdapterHParams(r=0))
    with pytest.raises(EmotuneError, match="adapter.dropout"):
        ad.check_hparams(ad.AdapterHParams(dropout=1.0))
    with pytest.raises(EmotuneError, match="not in target_modules"):
        ad.check_hparams(ad.AdapterHParams(target_modules=["key"], ia3_feedforward_modules=["value"]))
    with pytest.raises(EmotuneError, match="unknown adapter 'lroa' \\(did you mean 'lora'\\?\\)"):
        ad.check_adapter("lroa")


def test_load_trained_refuses_a_changed_base(tiny, tmp_path):
    folder = testing.save_tiny_model("bert", tmp_path / "base")
    loaded = ad.load_base(str(folder), "lora", LABELS)
    model = ad.apply_adapter(loaded, "lora", HP)
    saved = ad.save_trained(model, tmp_path / "out", loaded, "lora", HP)
    testing.save_tiny_model("bert", folder, seed=1)  # same name, other weights
    with pytest.raises(EmotuneError, match="changed since training"):
        ad.load_trained(saved)
    with pytest.raises(EmotuneError, match="not a model saved by emotune"):
        ad.load_trained(tmp_path / "base")


def test_parameter_counts_unpack_4bit(tiny):
    plain = ad.load_base(str(tiny("llama")), "lora", LABELS).model
    quantised = ad.load_base(str(tiny("llama")), "qlora", LABELS).model
    assert ad.parameter_counts(quantised)["total"] == ad.parameter_counts(plain)["total"]


# ---------------------------------------------------------------------------------------------
# Adapter options the published recipes use (bias, all-linear, rsLoRA, model config overrides)
# ---------------------------------------------------------------------------------------------
def lora_modules(model) -> set[str]:
    return {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}


def linear_modules(model, kinds=("Linear", "Conv1D", "Linear4bit")) -> set[str]:
    return {n for n, m in model.named_modules() if type(m).__name__ in kinds}


@pytest.mark.parametrize("model_type, adapter", [("bert", "lora"), ("llama", "lora"), ("llama", "qlora"),
                                                 ("gpt2", "lora"), ("mpnet", "dora")])
def test_all_linear_targets_every_body_linear_and_keeps_the_head_out(tiny, model_type, adapter):
    loaded = ad.load_base(str(tiny(model_type)), adapter, LABELS)
    body_linears = {n for n in linear_modules(loaded.model) if not mr._covered(n, loaded.head_modules)}
    hp = ad.AdapterHParams(r=4, alpha=8, target_modules="all-linear")
    assert ad.peft_config(loaded, adapter, hp).target_modules == "all-linear"  # peft's own shorthand
    model = ad.apply_adapter(loaded, adapter, hp)
    got = {n.removeprefix("base_model.model.") for n in lora_modules(model)}
    assert got == body_linears, (got ^ body_linears)
    assert not [n for n in got if mr._covered(n, loaded.head_modules)], "no LoRA inside the trained head"
    if adapter == "qlora":  # the 4-bit layers are the ones LoRA sits on
        import bitsandbytes as bnb

        base = {n.removeprefix("base_model.model.").removesuffix(".base_layer")
                for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
        assert base == body_linears


def test_ia3_on_all_linear_layers_keeps_the_architecture_feedforward(tiny):
    loaded = ad.load_base(str(tiny("llama")), "ia3", LABELS)
    hp = ad.AdapterHParams(target_modules="all-linear")
    config = ad.peft_config(loaded, "ia3", hp)
    # expanded by emotune to short names (peft's own expansion gives full paths that its IA3Config then
    # refuses to load back: see adapters._targets)
    every_linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(config.target_modules) == every_linear and set(config.feedforward_modules) == {"down_proj"}
    model = ad.apply_adapter(loaded, "ia3", hp)
    scaled = {n.split(".ia3_l")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".ia3_l." in n}
    assert scaled == every_linear


def test_ia3_on_all_linear_layers_saves_and_loads_back(tiny, tmp_path):
    loaded = ad.load_base(str(tiny("llama")), "ia3", LABELS)
    hp = ad.AdapterHParams(target_modules="all-linear")
    model = ad.apply_adapter(loaded, "ia3", hp)
    ad.save_trained(model, tmp_path / "run", loaded, "ia3", hp)
    back = ad.load_trained(tmp_path / "run")
    assert sum(".ia3_l." in n for n, _ in back.model.named_parameters()) == \
        sum(".ia3_l." in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_bias_setting_reaches_peft_and_decides_which_biases_train(tiny, bias):
    loaded = ad.load_base(str(tiny("bert")), "lora", LABELS)
    hp = ad.AdapterHParams(r=4, alpha=8, bias=bias, target_modules=["query", "value"])
    assert ad.peft_config(loaded, "lora", hp).bias == bias
    model = ad.apply_adapter(loaded, "lora", hp)
    body_biases = {n for n, p in model.named_parameters()
                   if p.requires_grad and n.endswith(".bias") and "modules_to_save" not in n}
    if bias == "none":
        assert body_biases == set()
    elif bias == "lora_only":  # exactly the biases of the layers LoRA wraps
        assert body_biases and all(n.endswith(("query.base_layer.bias", "value.base_layer.bias"))
                                   for n in body_biases), body_biases
    else:
        assert any(".key.bias" in n for n in body_biases) and any("LayerNorm.bias" in n for n in body_biases)


def test_rslora_scales_by_alpha_over_sqrt_r(tiny):
    loaded = ad.load_base(str(tiny("llama")), "lora", LABELS)
    model = ad.apply_adapter(loaded, "lora", ad.AdapterHParams(r=16, alpha=32, use_rslora=True))
    assert model.peft_config["default"].use_rslora
    scalings = {m.scaling["default"] for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)}
    assert scalings == {32 / 16 ** 0.5}  # plain LoRA: 32 / 16 = 2.0
    generative = ad.AdapterHParams(r=4, alpha=8, use_rslora=True, bias="lora_only")
    from emotune.generative import apply_generative_adapter, load_causal

    gen = load_causal(str(tiny("llama")), "gen_lora", LABELS, "single_label")
    config = apply_generative_adapter(gen, "gen_lora", generative).peft_config["default"]
    assert config.use_rslora and config.bias == "lora_only"


@pytest.mark.parametrize("adapter", ["full", "lora", "qlora"])
def test_model_config_overrides_reach_the_loaded_model_and_survive_a_reload(tiny, tmp_path, adapter):
    overrides = {"hidden_dropout_prob": 0.2, "attention_probs_dropout_prob": 0.2}
    hp = ad.AdapterHParams(r=4, alpha=8, model_config=overrides)
    loaded = ad.load_base(str(tiny("bert")), adapter, LABELS, hp=hp)
    assert loaded.model.config.hidden_dropout_prob == 0.2
    assert loaded.model.config.attention_probs_dropout_prob == 0.2
    dropouts = {m.p for n, m in loaded.model.named_modules() if type(m).__name__ == "Dropout"}
    assert dropouts == {0.2}, dropouts  # the modules themselves, not only the config
    model = ad.apply_adapter(loaded, adapter, hp)
    trained = ad.load_trained(ad.save_trained(model, tmp_path / "out", loaded, adapter, hp))
    assert trained.metadata["hparams"]["model_config"] == overrides
    config = trained.model.config if adapter == "full" else trained.model.base_model.model.config
    assert config.hidden_dropout_prob == 0.2
    plain = ad.load_base(str(tiny("bert")), adapter, LABELS)
    assert plain.model.config.hidden_dropout_prob == 0.1


def test_model_config_mistakes_are_named_before_the_weights_load(tiny):
    folder = str(tiny("bert"))
    with pytest.raises(EmotuneError, match=r"adapter.model_config.hidden_dropout: .*no config key "
                                           r"'hidden_dropout' \(did you mean 'hidden_dropout_prob'\?\)"):
        ad.load_base(folder, "full", LABELS, hp=ad.AdapterHParams(model_config={"hidden_dropout": 0.2}))
    with pytest.raises(EmotuneError, match="resid_pdrop"):  # GPT-2 names its dropout differently
        ad.load_base(str(tiny("gpt2")), "full", LABELS,
                     hp=ad.AdapterHParams(model_config={"hidden_dropout_prob": 0.2}))
    with pytest.raises(EmotuneError, match="'high' for a float key"):
        ad.load_base(folder, "full", LABELS, hp=ad.AdapterHParams(model_config={"hidden_dropout_prob": "high"}))
    with pytest.raises(EmotuneError, match="model_config.num_labels: set by emotune"):
        ad.check_hparams(ad.AdapterHParams(model_config={"num_labels": 4}))


def test_new_options_from_params_yaml_are_validated():
    hp = build(ad.AdapterHParams, {"target_modules": "all-linear", "bias": "lora_only", "use_rslora": True,
                                   "model_config": {"hidden_dropout_prob": 0.2}}, "adapter")
    assert ad.check_hparams(hp) == ad.AdapterHParams(target_modules="all-linear", bias="lora_only",
                                                     use_rslora=True, model_config={"hidden_dropout_prob": 0.2})
    with pytest.raises(EmotuneError, match=r"adapter.target_modules: 'all_linear'.*did you mean 'all-linear'"):
        build(ad.AdapterHParams, {"target_modules": "all_linear"}, "adapter")
    with pytest.raises(EmotuneError, match=r"adapter.bias: 'lora'.*did you mean 'lora_only'"):
        build(ad.AdapterHParams, {"bias": "lora"}, "adapter")
    with pytest.raises(EmotuneError, match="adapter.target_modules: a non-empty list"):
        ad.check_hparams(ad.AdapterHParams(target_modules="query"))


# ---------------------------------------------------------------------------------------------
# The adapter table (emotune/adapter_table.py): every other place derives from it
# ---------------------------------------------------------------------------------------------
def test_every_table_entry_has_its_builder_and_every_builder_an_entry():
    import importlib

    from emotune import generative as gen
    from emotune.adapter_table import ADAPTERS

    assert not set(ad.BUILDERS) & set(gen.BUILDERS)
    assert set(ad.BUILDERS) | set(gen.BUILDERS) == set(ADAPTERS)
    for name, entry in ADAPTERS.items():
        module, function = entry.builder.split(":")
        recipe = gen if entry.generative else ad  # the generative recipe builds the generative entries
        assert module == recipe.__name__, (name, entry.builder)
        assert getattr(importlib.import_module(module), function) is recipe.BUILDERS[name], (name, entry.builder)
        assert entry.description and "\n" not in entry.description
        assert entry.lr > 0
        assert not (entry.whole_body and entry.peft) and not (entry.generative and not entry.peft), name


def test_the_table_names_every_adapter_hparam_and_only_those():
    import dataclasses

    from emotune.adapter_table import ADAPTERS, AdapterHParams

    fields = [f.name for f in dataclasses.fields(AdapterHParams)]
    read = {key for entry in ADAPTERS.values() for key in entry.hparams}
    assert read == set(fields), "an `adapter:` key no adapter reads (or a key the table invents)"
    for entry in ADAPTERS.values():
        assert "model_config" in entry.hparams and len(set(entry.hparams)) == len(entry.hparams), entry.name


def test_every_adapter_params_yaml_names_resolves_to_the_table():
    import typing

    from emotune import config
    from emotune.adapter_table import ADAPTERS, AdapterName

    assert typing.get_args(AdapterName) == tuple(ADAPTERS)  # what params validation allows, in table order
    params = config.load_params()
    listed = [a for matrix in params.matrices() for a in matrix.adapters]
    listed += [a for group in config.GROUPS for a in getattr(params, group).adapters]
    assert listed and all(a in ADAPTERS for a in listed), listed
    with pytest.raises(EmotuneError, match=r"adapters\[1\]: 'qlroa' is not allowed \(did you mean 'qlora'\?\)"):
        config.build(config.RunGroup, {"adapters": ["lora", "qlroa"]}, "large")
    with pytest.raises(EmotuneError, match="unknown adapter 'gen_lora'.*; choose one of full, head, lora, dora, ia3, "
                                           "qlora$"):
        ad.check_adapter("gen_lora")  # the classifier side builds the classifier entries only


def test_the_generative_and_quantized_flags_drive_plans_optimizers_and_runs(tmp_path):
    from emotune import plan
    from emotune import train as tr
    from emotune.adapter_table import ADAPTERS, DEFAULT_HEAD_LR, names
    from emotune.runs import Run

    assert names(generative=True) == ("gen_lora", "gen_qlora")
    assert names(quantized=True) == ("qlora", "gen_qlora")
    for name, entry in ADAPTERS.items():
        assert plan.head_lr(name, 2e-4) == (2e-4 if entry.generative else DEFAULT_HEAD_LR)  # no head to train
        assert Run("d", "m", name, tmp_path).generative == entry.generative
        assert (tr.resolve_optim("auto", name, "cuda") == "paged_adamw_8bit") == entry.quantized
        assert tr.resolve_optim("auto", name, "cpu") == "adamw_torch_fused"
        if not entry.generative:
            assert ad.needs_4bit(name) == entry.quantized


def test_a_new_adapter_is_one_table_entry_and_its_builder(tiny, monkeypatch):
    """QDoRA (DoRA on the 4-bit body) as a new adapter: an entry and a builder, nothing else; the loader
    quantises, the builder wraps, the plan takes its LR and keys, all from the table."""
    import bitsandbytes as bnb

    from emotune import adapter_table, plan
    from emotune.config import load_params

    entry = adapter_table.Adapter("qdora", "DoRA on a 4-bit NF4 body", ("r", "alpha", "model_config"), 3e-3,
                                  "emotune.adapters:dora_config", quantized=True)
    monkeypatch.setitem(adapter_table.ADAPTERS, "qdora", entry)
    monkeypatch.setitem(ad.BUILDERS, "qdora", ad.dora_config)
    loaded = ad.load_base(str(tiny("llama")), "qdora", LABELS)
    assert loaded.quantized
    model = ad.apply_adapter(loaded, "qdora", HP)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert any("lora_magnitude_vector" in n for n, p in model.named_parameters() if p.requires_grad)
    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    model_entry = {"name": "m", "kind": "local", "folder": "/nowhere", "files": {}}
    run = plan.run_plan(params, params.matrices()[0], params.datasets[0], model_entry, "qdora")
    assert run.to_json()["adapter"] == {"name": "qdora", "hparams": {"r": 16, "alpha": 32, "model_config": {}}}
    assert (run.train.lr, run.lr_source) == (3e-3, "DEFAULT_LR")


def test_the_docs_adapter_table_is_the_adapter_table():
    import re
    from pathlib import Path

    from emotune.adapter_table import ADAPTERS

    doc = (Path(__file__).resolve().parent.parent / "docs/training.md").read_text(encoding="utf-8")
    block = doc.split("| adapter | what | default LR | `adapter:` keys it reads |\n", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([0-9.e-]+) \| ([^|]+) \|$", block, re.M)
    assert [r[0] for r in rows] == list(ADAPTERS), "docs/training.md: one row per adapter, in table order"
    for name, description, lr, keys in rows:
        entry = ADAPTERS[name]
        same = keys.strip().removeprefix("as ")
        read = ADAPTERS[same].hparams if same in ADAPTERS else tuple(k.strip() for k in keys.split(","))
        assert (description.strip(), float(lr), read) == (entry.description, entry.lr, entry.hparams), name
