"""Factories for offline tests, benchmarks and pipeline smoke runs: tiny random models built from configs
(no Hub, no download), so every architecture emotune supports can be exercised on a CPU in seconds; and
planted label noise, to measure how much of it the audit stage recovers (tests/test_audit.py,
bench/audit_model_choice.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from emotune.errors import EmotuneError
from emotune.models import ARCHITECTURES

TINY_WORDS = ("i am you are we they he she it is was feel felt so very really not no this that the a an and "
              "but of to in on for with my your love hate happy sad angry afraid scared surprised joy fear "
              "anger sadness disgust trust good bad great awful terrible wonderful today tomorrow day night "
              "people friend family work home life time hope worried excited tired calm nervous lonely proud "
              "grateful sorry thanks wow omg what why how when where who can can't don't won't will would "
              "should could like just").split()
_ENCODER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_DECODER_SPECIALS = ("<unk>", "<s>", "</s>")
_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=128)
_TINY_DECODER = dict(_TINY, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=None,
                     tie_word_embeddings=False)
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "bert": dict(_TINY, pad_token_id=0),
    "roberta": dict(_TINY, pad_token_id=0, max_position_embeddings=130),
    "mpnet": dict(_TINY, pad_token_id=0, max_position_embeddings=130),
    "distilbert": dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=128, pad_token_id=0),
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=2, eos_token_id=2),
    "llama": dict(_TINY_DECODER),
    "mistral": dict(_TINY_DECODER, sliding_window=None),
    "gemma": dict(_TINY_DECODER, head_dim=16),
    "gemma2": dict(_TINY_DECODER, head_dim=16, sliding_window=64),
    "gemma3_text": dict(_TINY_DECODER, head_dim=16, sliding_window=64),
}


def save_tiny_model(model_type: str, folder: Path, seed: int = 0) -> Path:
    """Write a randomly initialised 2-layer, hidden-64 model of `model_type` (the pretrained body, as a Hub
    checkpoint has it: no classification head) with a word-level tokenizer over TINY_WORDS to `folder`.
    Decoder tokenizers have an eos but no pad token, like the real ones."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, BertTokenizerFast, PreTrainedTokenizerFast

    if model_type not in TINY_CONFIGS:
        raise EmotuneError(f"no tiny config for {model_type!r}; known: {', '.join(TINY_CONFIGS)}")
    decoder = ARCHITECTURES[model_type].decoder
    specials = _DECODER_SPECIALS if decoder else _ENCODER_SPECIALS
    vocab = {token: i for i, token in enumerate((*specials, *TINY_WORDS))}
    config = AutoConfig.for_model(model_type, vocab_size=len(vocab), **TINY_CONFIGS[model_type])
    torch.manual_seed(seed)
    folder = Path(folder)
    if decoder:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

        backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        backend.normalizer = normalizers.Lowercase()
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                            eos_token="</s>")
        model = AutoModelForCausalLM.from_config(config)
    else:
        # transformers 5: BertTokenizerFast(vocab_file=...) is silently ignored; pass the mapping
        inputs = ["input_ids", "token_type_ids", "attention_mask"] if model_type == "bert" else \
            ["input_ids", "attention_mask"]
        tokenizer = BertTokenizerFast(vocab=vocab, model_input_names=inputs)
        model = AutoModel.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# Planted label noise: what the audit should find
# ---------------------------------------------------------------------------------------------
def plant_label_noise(frame, classes: list[str], rate: float, seed: int,
                      multi_label: bool) :
    """Corrupt a known `rate` of rows (seeded): single-label rows get another class, multi-label rows
    get one label toggled. Returns the noisy frame and the mask of corrupted rows, to measure how
    much of the planted noise the audit recovers."""
    import numpy as np

    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(frame), dtype=bool)
    flipped[rng.choice(len(frame), size=int(round(rate * len(frame))), replace=False)] = True
    labels = frame["labels"].tolist()
    for row in np.flatnonzero(flipped):
        if multi_label:
            toggle = classes[rng.integers(len(classes))]
            labels[row] = sorted(set(labels[row]) ^ {toggle}, key=classes.index)
        else:
            labels[row] = [rng.choice([c for c in classes if c != labels[row][0]])]
    return frame.assign(labels=labels), flipped



def planted_noise_recovery(train, spec, cfg, seed: int,
                           rate: float = 0.08) -> dict[str, float]:
    """Plant `rate` label flips in `train`, audit it, and score how well the flips are found:
    precision/recall of the flagged set, AUROC of the quality score, precision of the k worst rows
    (k = number planted). Random flagging scores precision = rate, AUROC = 0.5."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from emotune.audit import audit_splits

    noisy, planted = plant_label_noise(train, spec.labels, rate, seed=seed + 1, multi_label=spec.multi_label)
    empty = noisy.iloc[:0]
    audited, _, _ = audit_splits({"train": noisy, "validation": empty, "test": empty}, spec, cfg, seed)
    flags = audited["train"]["is_label_issue"].to_numpy()
    quality = audited["train"]["label_quality"].to_numpy()
    hits = int((flags & planted).sum())
    worst = np.argsort(quality, kind="stable")[: planted.sum()]
    return {"rows": len(train), "planted": int(planted.sum()), "flagged": int(flags.sum()),
            "precision": hits / max(int(flags.sum()), 1), "recall": hits / int(planted.sum()),
            "flag_rate": float(flags.mean()), "auroc": float(roc_auc_score(planted, -quality)),
            "precision_at_k": float(planted[worst].mean())}


# What a throw-away copy of the project needs besides params.yaml and its data: the code its dvc.yaml hashes
# (each stage depends on its stages/ and emotune/ files, so `python -m stages.<name>` there runs that copy),
# and every other file a stage depends on (the aggregate reads the measured seed spread).
PROJECT_CODE = ("stages", "emotune")
PROJECT_FILES = ("dvc.yaml", ".dvcignore", ".gitignore", "metrics/bench/seed_calibration.json")


def copy_project_code(checkout: Path, root: Path) -> None:
    """Copy the pipeline's code and dvc.yaml with the files its stages depend on from `checkout` to `root`."""
    import shutil

    for package in PROJECT_CODE:
        shutil.copytree(checkout / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkout / name, root / name)
