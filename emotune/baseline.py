"""baseline: the reference rows of the leaderboard, scored by the same code as every fine-tuned run.

    python -m stages.baseline <dataset>                       # majority, TF-IDF, embeddings, BiLSTM
    python -m stages.baseline <dataset> --zero-shot <model>   # one instruction-tuned decoder, no training

Writes metrics/eval/<dataset>/baseline/<name>.json (+ plots, as emotune/evaluate.py) for
* majority      always the training prior: the most frequent class, or each label's majority
* tfidf_lr      TF-IDF word 1-2 grams + logistic regression (one-vs-rest for multi-label) on exactly the
                training rows the fine-tuned runs of the main matrix see (the same seeded sample of
                train.max_train_examples), so a fine-tuned row's gain over it is the model's, not the data's
* tfidf_lr_all  the same on every training row: what a classical model does with all the data
* embed_lr      frozen sentence embeddings (baseline.embedding_model, MiniLM by default; the audit stage's
                embedder, emotune/audit.py embed_texts) + logistic regression, on the runs' training rows
* bilstm        a bidirectional LSTM (or GRU, baseline.rnn.cell) trained from scratch on the word pieces of
                baseline.rnn.tokenizer, on the runs' training rows; the best epoch on validation is kept
* zero_shot_<model>  a decoder prompted with the label names (emotune/prompts.py, the generative recipe's
                prompt) and no training; answers parsed back to labels, invalid answers counted
Multi-label thresholds follow eval.threshold, tuned on validation exactly as for the runs. Every row
carries its cost like a run's: training time, trainable and total parameters, test examples/s.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from emotune import metrics
from emotune.config import RnnBaseline
from emotune.errors import EmotuneError, did_you_mean
from emotune.paths import BASELINES, zero_shot_name
from emotune.reports import scored
from emotune.rows import label_targets, sample_rows


def targets(frame, labels: list[str], multi: bool, where: str) -> np.ndarray:
    y = label_targets(frame["labels"], labels, multi, where)
    return np.asarray(y, dtype=np.float32 if multi else np.int64)


def full_proba(model, X, n_classes: int, multi: bool) -> np.ndarray:
    """predict_proba with one column per class of the dataset, also for classes absent from train."""
    probs = model.predict_proba(X)
    if multi and isinstance(probs, list):  # DummyClassifier: one (rows, classes seen) array per label
        return np.stack([p[:, list(c).index(1)] if 1 in c else np.zeros(X.shape[0])
                         for p, c in zip(probs, model.classes_)], 1)
    if multi:
        return probs
    out = np.zeros((X.shape[0], n_classes))
    out[:, model.classes_] = probs
    return out


@dataclass
class Fitted:
    """A trained baseline: probabilities for texts, and what it cost."""

    predict_proba: Callable[[list[str]], np.ndarray]
    trainable_params: int
    total_params: int


def _linear_params(model) -> int:
    """Weights of a fitted (one-vs-rest) logistic regression or prior."""
    estimators = getattr(model, "estimators_", None) or [model]
    return int(sum(e.coef_.size + e.intercept_.size if hasattr(e, "coef_") else len(getattr(e, "classes_", []))
                   for e in estimators))


def logistic(multi: bool, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    lr = LogisticRegression(max_iter=2000, C=4.0, random_state=seed)
    return OneVsRestClassifier(lr) if multi else lr


def fit_sklearn(name: str, train_text: list[str], y_train, multi: bool, seed: int, n_classes: int) -> Fitted:
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    if name == "majority":
        model = DummyClassifier(strategy="prior").fit(np.zeros((len(train_text), 1)), y_train)
        return Fitted(lambda texts: full_proba(model, np.zeros((len(texts), 1)), n_classes, multi),
                      0, n_classes)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    model = logistic(multi, seed).fit(vectorizer.fit_transform(train_text), y_train)
    size = _linear_params(model)
    return Fitted(lambda texts: full_proba(model, vectorizer.transform(texts), n_classes, multi), size, size)


def fit_embeddings(train_text: list[str], y_train, multi: bool, seed: int, n_classes: int,
                   model_name: str, batch_size: int) -> Fitted:
    """Logistic regression on the audit stage's sentence embeddings (frozen encoder)."""
    from emotune.audit import embed_texts, sentence_encoder

    model = logistic(multi, seed).fit(embed_texts(train_text, model_name, batch_size), y_train)
    encoder_params = sum(p.numel() for p in sentence_encoder(model_name)[1].parameters())
    head = _linear_params(model)
    return Fitted(lambda texts: full_proba(model, embed_texts(texts, model_name, batch_size), n_classes, multi),
                  head, head + encoder_params)


# ---------------------------------------------------------------------------------------------
# BiLSTM / BiGRU from scratch
# ---------------------------------------------------------------------------------------------
PAD, UNK = 0, 1


def rnn_module(vocab_size: int, n_out: int, cfg: RnnBaseline):
    """Embeddings -> bidirectional LSTM/GRU -> [mean; max] over the real tokens -> dropout -> linear."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class RnnClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=PAD)
            cell = nn.LSTM if cfg.cell == "lstm" else nn.GRU
            self.rnn = cell(cfg.embedding_dim, cfg.hidden_size, num_layers=cfg.layers, batch_first=True,
                            bidirectional=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
            self.drop = nn.Dropout(cfg.dropout)
            self.out = nn.Linear(4 * cfg.hidden_size, n_out)

        def forward(self, ids, lengths):
            x = self.drop(self.embed(ids))
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=ids.shape[1])
            mask = (ids != PAD).unsqueeze(-1)
            mean = (h * mask).sum(1) / mask.sum(1).clamp(min=1)
            peak = h.masked_fill(~mask, torch.finfo(h.dtype).min).max(1).values
            return self.out(self.drop(torch.cat([mean, peak], -1)))

    return RnnClassifier()


def word_pieces(tokenizer_name: str, registry=None):
    """texts -> lists of token ids, split by the tokenizer of a registry model (its vocabulary only)."""
    from transformers import AutoTokenizer

    from emotune.model_registry import resolve_model

    resolved = resolve_model(tokenizer_name, registry)
    kwargs = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    return AutoTokenizer.from_pretrained(resolved.location, **kwargs)


def fit_rnn(train, val, labels: list[str], multi: bool, official: str, seed: int, cfg: RnnBaseline,
            max_length: int, registry=None, log=print) -> Fitted:
    """Train the RNN on `train` (its own vocabulary: the word pieces seen there, the rest UNK); keep the
    epoch with the best validation official metric (0.5 thresholds for multi-label, as the runs do)."""
    import torch
    import torch.nn.functional as F

    tokenizer = word_pieces(cfg.tokenizer, registry)

    def ids_of(texts):
        return tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]

    train_ids = ids_of(train["text"])
    vocab = {tok: i + 2 for i, tok in enumerate(sorted({t for row in train_ids for t in row}))}

    def encode(rows):  # padded tensor + lengths; an empty text becomes one UNK
        rows = [[vocab.get(t, UNK) for t in row] or [UNK] for row in rows]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return ids, lengths

    torch.manual_seed(seed)
    model = rnn_module(len(vocab) + 2, len(labels), cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    y = torch.as_tensor(targets(train, labels, multi, "train"))
    y_val = targets(val, labels, multi, "validation")
    val_ids = ids_of(val["text"])

    def proba(rows) -> np.ndarray:
        model.eval()
        out = []
        with torch.inference_mode():
            order = np.argsort([len(r) for r in rows])
            for start in range(0, len(rows), 256):
                idx = order[start:start + 256]
                logits = model(*encode([rows[i] for i in idx])).float().numpy()
                out.append((idx, logits))
        logits = np.zeros((len(rows), len(labels)), dtype=np.float32)
        for idx, part in out:
            logits[idx] = part
        return metrics.probabilities(logits, multi)

    generator = torch.Generator().manual_seed(seed)
    best, best_state = -np.inf, None
    for epoch in range(cfg.epochs):
        model.train()
        for batch in torch.randperm(len(train_ids), generator=generator).split(cfg.batch_size):
            ids, lengths = encode([train_ids[i] for i in batch.tolist()])
            logits = model(ids, lengths)
            loss = (F.binary_cross_entropy_with_logits(logits, y[batch]) if multi
                    else F.cross_entropy(logits, y[batch]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        score = metrics.classification_report(y_val, metrics.decide(proba(val_ids), multi, None), labels,
                                              multi)["test"][official]
        log(f"bilstm epoch {epoch + 1}/{cfg.epochs}: validation {official} {score:.4f}")
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    size = sum(p.numel() for p in model.parameters())
    return Fitted(lambda texts: proba(ids_of(texts)), size, size)


# ---------------------------------------------------------------------------------------------
# The trained baselines
# ---------------------------------------------------------------------------------------------
def dataset_entry(spec) -> dict:
    return {"name": spec.name, "task": spec.task, "labels": list(spec.labels), "official_metric": spec.official_metric}


def run_baseline(name: str, splits: dict, spec, cap: int | None, seed: int, threshold, params=None,
                 log=print) -> tuple[dict, np.ndarray, np.ndarray]:
    """Fit baseline `name` on its training rows, decide on test as the runs do, score with the runs' code.
    `params` (a Params) gives baseline.*, tokenize.max_length and the model registry; defaults otherwise."""
    from emotune.config import BaselineConfig, TokenizeConfig

    if name not in BASELINES:
        raise EmotuneError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    cfg = params.baseline if params is not None else BaselineConfig()
    registry = params.model_registry if params is not None else None
    max_length = (params.tokenize if params is not None else TokenizeConfig()).max_length
    labels, multi = list(spec.labels), spec.multi_label
    train = splits["train"] if name == "tfidf_lr_all" else sample_rows(splits["train"], cap, seed)
    y_train = targets(train, labels, multi, f"{spec.name}/train")
    texts = train["text"].tolist()
    import sklearn.dummy  # noqa: E401,F401  (not timed)

    tick = time.perf_counter()  # embed_lr's includes loading the encoder and embedding the training rows
    if name == "embed_lr":
        fitted = fit_embeddings(texts, y_train, multi, seed, len(labels), cfg.embedding_model,
                                cfg.embedding_batch_size)
    elif name == "bilstm":
        fitted = fit_rnn(train, splits["validation"], labels, multi, spec.official_metric, seed, cfg.rnn,
                         max_length, registry, log)
    else:
        fitted = fit_sklearn(name, texts, y_train, multi, seed, len(labels))
    train_time = time.perf_counter() - tick
    test = splits["test"]
    y_test = targets(test, labels, multi, f"{spec.name}/test")
    tick = time.perf_counter()
    probs = fitted.predict_proba(test["text"].tolist())
    infer = len(test) / max(time.perf_counter() - tick, 1e-9)
    thresholds, mode = None, "argmax"
    if multi and name != "majority":
        mode = "tuned" if threshold == "tuned" else f"fixed {threshold}"
        thresholds = [threshold] * len(labels)
        if threshold == "tuned":
            val = splits["validation"]
            thresholds = metrics.tune_thresholds(targets(val, labels, multi, f"{spec.name}/validation"),
                                                 fitted.predict_proba(val["text"].tolist()), spec.official_metric)
    elif multi:
        mode, thresholds = "fixed 0.5", [0.5] * len(labels)  # each label's majority outcome
    y_pred = metrics.decide(probs, multi, thresholds)
    cost = {"train_examples": int(len(train)), "train_time_s": round(train_time, 2),
            "params": {"trainable": fitted.trainable_params, "total": fitted.total_params},
            "inference": {"batched_examples_per_s": round(infer, 2), "note": "featurisation included"}}
    report = scored("baseline", dataset_entry(spec), "baseline", name, y_test, y_pred, probs, None, thresholds,
                    mode, cost)
    return report, y_test, y_pred


# ---------------------------------------------------------------------------------------------
# Zero-shot: an instruction-tuned decoder and the label names, no training
# ---------------------------------------------------------------------------------------------
def check_label_map(label_map: dict, theirs: list[str], ours: list[str], where: str) -> np.ndarray:
    """(their labels, our labels) 0/1 matrix from `label_map`; every label of the classifier must be listed
    (null for none of ours), so that no prediction is dropped silently."""
    unknown = [k for k in label_map if k not in theirs]
    if unknown:
        raise EmotuneError(f"{where}: {unknown} are not labels of the classifier"
                           f"{did_you_mean(unknown[0], theirs)}; its labels: {theirs}")
    missing = [t for t in theirs if t not in label_map]
    if missing:
        raise EmotuneError(f"{where}: the classifier's labels {missing} are not mapped; map each to one of "
                           f"{ours} or to null (no counterpart)")
    matrix = np.zeros((len(theirs), len(ours)), dtype=np.float32)
    for j, their in enumerate(theirs):
        target = label_map[their]
        if target is None:
            continue
        if target not in ours:
            raise EmotuneError(f"{where}.{their}: {target!r} is not a label of the dataset"
                               f"{did_you_mean(target, ours)}; its labels: {ours}")
        matrix[j, ours.index(target)] = 1.0
    return matrix


def off_the_shelf(model: str, splits: dict, spec, max_length: int, batch_size: int, label_map: dict | None,
                  registry=None, name: str | None = None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """A trained classifier with its own labels (e.g. an emotion classifier from the Hub), used as is:
    its probabilities summed into the dataset's labels through `label_map`. Single-label: the dataset
    label of its top class, invalid when that class maps to null; multi-label: every dataset label whose
    summed probability reaches 0.5."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from emotune.model_registry import resolve_model

    where = f"baseline.zero_shot.label_maps.{name or model}"
    resolved = resolve_model(model, registry)
    kwargs = {"local_files_only": True} if resolved.local else {"revision": resolved.revision}
    tick = time.perf_counter()
    net = AutoModelForSequenceClassification.from_pretrained(resolved.location, use_safetensors=True,
                                                             dtype=torch.float32, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolved.location, **kwargs)
    load_time = time.perf_counter() - tick
    theirs = [net.config.id2label[i] for i in range(net.config.num_labels)]
    if not label_map:
        raise EmotuneError(f"{where}: {model!r} is a classifier with its own labels {theirs}; map them to the "
                           f"dataset's {list(spec.labels)} (params baseline.zero_shot.label_maps)")
    labels, multi = list(spec.labels), spec.multi_label
    matrix = check_label_map(label_map, theirs, labels, where)
    texts = splits["test"]["text"].tolist()
    probs = np.zeros((len(texts), len(theirs)), dtype=np.float32)
    tick = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            logits = net(**enc).logits.float()
            their_multi = net.config.problem_type == "multi_label_classification"
            probs[start:start + batch_size] = (torch.sigmoid(logits) if their_multi else logits.softmax(-1)).numpy()
    infer = len(texts) / max(time.perf_counter() - tick, 1e-9)
    mapped = probs @ matrix
    top_mapped = matrix[probs.argmax(1)].sum(1) > 0
    invalid = ~top_mapped if not multi else np.zeros(len(texts), dtype=bool)
    y_pred = (mapped >= 0.5).astype(np.float32) if multi else np.where(invalid, -1, mapped.argmax(1))
    y_test = targets(splits["test"], labels, multi, f"{spec.name}/test")
    cost = {"train_examples": 0, "train_time_s": 0.0, "load_time_s": round(load_time, 2),
            "params": {"trainable": 0, "total": int(sum(p.numel() for p in net.parameters()))},
            "inference": {"batched_examples_per_s": round(infer, 2), "batch_size": batch_size},
            "zero_shot_model": name or model, "label_map": dict(label_map)}
    report = scored("baseline", dataset_entry(spec), "baseline", zero_shot_name(name or model), y_test, y_pred,
                    None, invalid, None, "label map" + (" + 0.5" if multi else ""), cost)
    return report, y_test, y_pred, invalid


def rank_labels_per_label(net, tokenizer, test, labels: list[str], max_length: int, batch_size: int,
                          device: str, prompt: dict | None = None) -> np.ndarray:
    """(rows, labels) log-likelihood of each label's answer (its tokens and eos) after the prompt: the
    generative recipe's prompts and answer-token loss (emotune/generative.py), one pass per label over the
    whole prompt. The reference for `rank_labels`, which computes the same scores sharing the prompt."""
    import torch

    from emotune.generative import GenerativeBatches
    from emotune.prompts import tokenize_prompts
    from emotune.rows import eval_batches

    scores = np.zeros((len(test), len(labels)), dtype=np.float64)
    for j, label in enumerate(labels):
        frame = test.assign(labels=[[label]] * len(test))
        rows = GenerativeBatches(tokenize_prompts(frame, tokenizer, labels, False, max_length, prompt),
                                 tokenizer.pad_token_id, False)
        with torch.inference_mode():
            for idx in eval_batches(rows.lengths, batch_size):
                batch = {k: v.to(device) for k, v in rows.collate(idx).items()}
                answer = batch.pop("targets")
                logits = net(**batch, logits_to_keep=answer.shape[1] + 1).logits[:, :-1].float()
                logp = torch.log_softmax(logits, -1).gather(-1, answer.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                scores[idx, j] = (logp * (answer != -100)).sum(1).cpu().numpy()
    return scores


def label_answer_ids(tokenizer, test, labels: list[str], max_length: int, prompt: dict | None) -> list[list[int]]:
    """Each label's answer token ids (its words and eos) exactly as tokenize_prompts builds them."""
    from emotune.prompts import tokenize_prompts

    one = test.iloc[:1]
    return [tokenize_prompts(one.assign(labels=[[label]]), tokenizer, labels, False, max_length, prompt)
            ["answer_ids"].iloc[0].tolist() for label in labels]


def rank_labels(net, tokenizer, test, labels: list[str], max_length: int, batch_size: int,
                device: str, prompt: dict | None = None) -> np.ndarray:
    """The scores of `rank_labels_per_label` (each label's answer log-likelihood after the prompt), with
    the prompt computed once per text instead of once per label: one pass over a batch's left-padded
    prompts fills the KV cache and gives every answer's first token; the cache is then repeated for each
    label and one pass over the labels' remaining answer tokens (right-padded) scores them all. The
    answers are 2-4 tokens against prompts of 60-120, so the work per text drops to about one prompt
    pass instead of one per label."""
    import torch

    from emotune.generative import GenerativeBatches
    from emotune.prompts import tokenize_prompts
    from emotune.rows import eval_batches

    answers = label_answer_ids(tokenizer, test, labels, max_length, prompt)
    n_labels, longest = len(labels), max(map(len, answers))
    rows = GenerativeBatches(tokenize_prompts(test.assign(labels=[[labels[0]]] * len(test)), tokenizer, labels,
                                              False, max_length, prompt), tokenizer.pad_token_id, False)
    # Continuations: every answer but its last token (the last is only predicted), right-padded.
    width = max(longest - 1, 1)
    follow = torch.zeros((n_labels, width), dtype=torch.long)
    follow_mask = torch.zeros((n_labels, width), dtype=torch.long)
    targets = torch.full((n_labels, width), -100, dtype=torch.long)
    for j, ids in enumerate(answers):
        follow[j, :len(ids) - 1] = torch.tensor(ids[:-1], dtype=torch.long)
        follow_mask[j, :len(ids) - 1] = 1
        targets[j, :len(ids) - 1] = torch.tensor(ids[1:], dtype=torch.long)
    first = torch.tensor([ids[0] for ids in answers])
    scores = np.zeros((len(test), n_labels), dtype=np.float64)
    with torch.inference_mode():
        for idx in eval_batches(rows.prompt_lengths, batch_size):
            batch = {k: v.to(device) for k, v in rows._left_padded([rows.prompts[i] for i in idx]).items()}
            out = net(**batch, use_cache=True, logits_to_keep=1)
            head = torch.log_softmax(out.logits[:, -1].float(), -1)[:, first.to(device)]  # (rows, labels)
            cache = out.cache  # (transformers 5.24 renamed past_key_values to cache)
            cache.batch_repeat_interleave(n_labels)  # row r's prompt becomes rows r*L .. r*L+L-1
            size = len(idx)
            real = batch["attention_mask"].sum(1, keepdim=True)  # prompt tokens of each row
            positions = (real + torch.arange(width, device=device)).repeat_interleave(n_labels, 0)
            mask = torch.cat([batch["attention_mask"].repeat_interleave(n_labels, 0),
                              follow_mask.to(device).repeat(size, 1)], 1)
            logits = net(input_ids=follow.to(device).repeat(size, 1), attention_mask=mask, position_ids=positions,
                         cache=cache, use_cache=True).logits.float()
            answer = targets.to(device).repeat(size, 1)
            logp = torch.log_softmax(logits, -1).gather(-1, answer.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            rest = (logp * (answer != -100)).sum(1).view(size, n_labels)
            scores[idx] = (head + rest).double().cpu().numpy()
    return scores


def zero_shot(model: str, splits: dict, spec, max_length: int, batch_size: int, registry=None,
              device: str | None = None, name: str | None = None,
              label_map: dict | None = None, decode: str = "generate",
              prompt: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None]:
    """Prompt `model` (a decoder: registry name, Hub id or folder) with the generative recipe's
    instruction listing the label names, generate greedily, parse the answers back to labels
    (emotune/prompts.py parse_answer); an answer that names no label is invalid and scored as wrong.
    A classifier with its own labels (an encoder whose config has them, or any model given a
    `label_map`) goes to `off_the_shelf` instead. `prompt`: params.yaml tokenize.prompt (system message,
    instruction), the prompt the generative runs are trained with. Returns (report, gold, predictions, invalid
    answers mask or None): the per-row file needs the mask, since a multi-label invalid answer predicts
    nothing yet scores 0)."""
    from transformers import AutoConfig

    from emotune.model_registry import resolve_model
    from emotune.models import arch_defaults

    resolved = resolve_model(model, registry)
    config = AutoConfig.from_pretrained(resolved.location, **({"local_files_only": True} if resolved.local
                                                              else {"revision": resolved.revision}))
    arch = arch_defaults(config.model_type)
    trained_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if label_map or (trained_head and not (arch and arch.decoder)):
        return off_the_shelf(model, splits, spec, max_length, batch_size, label_map, registry, name)
    import contextlib

    import torch

    from emotune.adapters import parameter_counts
    from emotune.devices import pick_device
    from emotune.generative import GenerativeBatches, decode_predictions, generate, load_causal
    from emotune.prompts import answer_text, eos_id, tokenize_prompts
    from emotune.rows import eval_batches

    labels, multi = list(spec.labels), spec.multi_label
    device = device or pick_device()
    tick = time.perf_counter()
    loaded = load_causal(model, "gen_lora", labels, spec.task, registry=registry,
                         device=device if device != "cpu" else None)
    net = loaded.model.eval()
    load_time = time.perf_counter() - tick
    tokenizer = loaded.tokenizer
    test = splits["test"]
    rows = GenerativeBatches(tokenize_prompts(test, tokenizer, labels, multi, max_length, prompt),
                             tokenizer.pad_token_id, multi)
    # Room for the longest valid answer (every label, for multi-label) plus a little: an answer still
    # going by then is not a valid one.
    longest = answer_text(labels, True) if multi else max(labels, key=lambda lab: len(tokenizer(lab)["input_ids"]))
    max_new_tokens = len(tokenizer(" " + longest, add_special_tokens=False)["input_ids"]) + 2
    eos = eos_id(tokenizer)
    if decode == "rank":
        if multi:
            raise EmotuneError(f"zero-shot decode rank scores one label per text; {spec.name} is multi-label "
                               f"(use decode: generate)")
        tick = time.perf_counter()
        scores = rank_labels(net, tokenizer, test, labels, max_length, batch_size, device, prompt)
        infer = len(test) / max(time.perf_counter() - tick, 1e-9)
        probs = metrics.probabilities(scores, False)  # softmax over the labels' answer log-likelihoods
        y_pred, texts = probs.argmax(1), []
        cost = {"train_examples": 0, "train_time_s": 0.0, "load_time_s": round(load_time, 2),
                "params": {"trainable": 0, "total": parameter_counts(net)["total"]},
                "inference": {"batched_examples_per_s": round(infer, 2), "batch_size": batch_size,
                              "device": device, "threads": torch.get_num_threads(),
                              "note": "the prompt once per text (KV cache), then every label's answer"},
                "zero_shot_model": name or model, "decode": "rank"}
        report = scored("baseline", dataset_entry(spec), "baseline", zero_shot_name(name or model), rows.targets,
                        y_pred, probs, None, None, "ranked label likelihood", cost)
        return report, rows.targets, y_pred, None
    texts = [""] * len(rows)
    tick = time.perf_counter()
    for idx in eval_batches(rows.prompt_lengths, batch_size):
        for i, ids in zip(idx, generate(net, rows, idx, max_new_tokens, eos, device, contextlib.nullcontext)):
            texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
    infer = len(rows) / max(time.perf_counter() - tick, 1e-9)
    y_pred, invalid = decode_predictions(texts, labels, multi)
    counts = parameter_counts(net)
    cost = {"train_examples": 0, "train_time_s": 0.0, "load_time_s": round(load_time, 2),
            "params": {"trainable": 0, "total": counts["total"]},
            "inference": {"batched_examples_per_s": round(infer, 2), "batch_size": batch_size, "device": device,
                          "threads": torch.get_num_threads(), "max_new_tokens": max_new_tokens},
            "zero_shot_model": name or model, "decode": "generate", "answers_sample": texts[:20]}
    report = scored("baseline", dataset_entry(spec), "baseline", zero_shot_name(name or model), rows.targets, y_pred,
                    None, invalid, None, "generated", cost)
    return report, rows.targets, y_pred, invalid
