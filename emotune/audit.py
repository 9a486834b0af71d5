"""audit: data/clean/<dataset> -> data/audited/<dataset> + metrics/audit/<dataset>.json.

Finds probably-mislabeled training examples with cleanlab. Every train and validation row gets
out-of-fold predicted probabilities from a cheap model (K-fold over train+validation pooled), then
cleanlab's label quality score and issue flag; multi-label datasets use cleanlab's multi-label
functions, never a flattened single-label view. With `audit.action: drop` the flagged rows of
`audit.drop_splits` are removed, worst first, up to `audit.max_drop_fraction` of each split. The
test split is copied through untouched.

    python -m stages.audit <dataset>
"""
from __future__ import annotations

import functools
import sys

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from tqdm.auto import tqdm

from emotune.config import AuditConfig, DatasetSpec
from emotune.errors import EmotuneError

AUDITED = ("train", "validation")
CLASS_WEIGHT = None


# ---------------------------------------------------------------------------------------------
# Out-of-fold predicted probabilities
# ---------------------------------------------------------------------------------------------
def label_matrix(labels: pd.Series, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)), dtype=int)
    for row, names in enumerate(labels):
        y[row, [index[n] for n in names]] = 1
    return y


def classifier(multi_label: bool, seed: int):
    # Balanced class weights: rare emotions (surprise, trust) otherwise never get probability mass,
    # and cleanlab would flag every one of them.
    lr = LogisticRegression(C=4.0, tol=1e-3, max_iter=500, class_weight=CLASS_WEIGHT, random_state=seed)
    return OneVsRestClassifier(lr) if multi_label else lr


def tfidf_features():
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, strip_accents="unicode")


@functools.lru_cache(maxsize=2)
def sentence_encoder(model_name: str):
    """(tokenizer, model in eval mode) of an offline sentence encoder, loaded once per process (the
    baseline stage embeds train, validation and test with it)."""
    from transformers import AutoModel, AutoTokenizer

    from emotune.model_registry import resolve_model

    folder = resolve_model(model_name).folder
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def embed_texts(texts: list[str], model_name: str, batch_size: int) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (the sentence-transformers recipe)."""
    import torch

    tokenizer, model = sentence_encoder(model_name)
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in tqdm(range(0, len(texts), batch_size), desc="embed", unit="batch"):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=128,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def out_of_fold_probs(texts: list[str], y: np.ndarray, multi_label: bool, cfg: AuditConfig,
                      seed: int) -> np.ndarray:
    """Predicted probabilities for every row from a model that never saw that row."""
    # The cost grows with the rows (bench/data_scale.py): say up front what runs, the bars give the ETA.
    print(f"audit: {len(texts)} rows, audit.model={cfg.model}: "
          + (f"embedding every text with {cfg.embedding_model}, then " if cfg.model != "tfidf" else "")
          + f"{cfg.folds} cross-validation folds", file=sys.stderr, flush=True)
    embeddings = (embed_texts(texts, cfg.embedding_model, cfg.batch_size)
                  if cfg.model in ("embeddings", "both") else None)
    texts = np.asarray(texts, dtype=object)

    def features(idx, vectorizer):
        parts = []
        if vectorizer is not None:
            parts.append(vectorizer.transform(texts[idx]))
        if embeddings is not None:
            parts.append(csr_matrix(embeddings[idx]))
        return hstack(parts).tocsr()

    target = y if multi_label else y.argmax(1)
    folds = (KFold(cfg.folds, shuffle=True, random_state=seed) if multi_label
             else StratifiedKFold(cfg.folds, shuffle=True, random_state=seed))
    probs = np.zeros(y.shape, dtype=float)
    for fit_idx, held_idx in tqdm(list(folds.split(texts, target)), desc="cross-validate", unit="fold"):
        # The vocabulary is fitted inside the fold: held-out words must not leak into the features.
        vectorizer = tfidf_features().fit(texts[fit_idx]) if cfg.model in ("tfidf", "both") else None
        model = classifier(multi_label, seed).fit(features(fit_idx, vectorizer), target[fit_idx])
        probs[held_idx] = model.predict_proba(features(held_idx, vectorizer))
    return probs


# ---------------------------------------------------------------------------------------------
# cleanlab
# ---------------------------------------------------------------------------------------------
def find_issues(y: np.ndarray, probs: np.ndarray, classes: list[str], multi_label: bool) -> dict:
    """Per-row quality/flags plus dataset-level health, from cleanlab."""
    if multi_label:
        from cleanlab.multilabel_classification import dataset, filter, rank

        labels = [list(np.flatnonzero(row)) for row in y]
        flags = filter.find_label_issues(labels, probs)
        quality = rank.get_label_quality_scores(labels, probs)
        per_class = np.asarray(filter.find_multilabel_issues_per_class(labels, probs))  # rows x classes
        class_noise = {c: float(per_class[:, i].mean()) for i, c in enumerate(classes)}
        health = float(dataset.overall_multilabel_health_score(labels, probs))
        suggested = [[classes[i] for i in np.flatnonzero(p >= 0.5)] for p in probs]
        if not (y.sum(1) == 0).any():
            # The data never has an empty label set (dataset_registry allow_empty_labels is off, or no row
            # uses it), so "no label" is no suggestion: offer the most probable label instead.
            suggested = [names or [classes[int(p.argmax())]] for names, p in zip(suggested, probs)]
    else:
        from cleanlab import dataset, filter, rank

        labels = y.argmax(1)
        flags = filter.find_label_issues(labels, probs)
        quality = rank.get_label_quality_scores(labels, probs)
        ranked = dataset.rank_classes_by_label_quality(labels, probs, class_names=classes)
        class_noise = {row["Class Name"]: float(row["Label Noise"]) for _, row in ranked.iterrows()}
        class_noise = {c: class_noise.get(c, 0.0) for c in classes}
        health = float(dataset.overall_label_health_score(labels, probs, verbose=False))
        suggested = [[classes[i]] for i in probs.argmax(1)]
    return {"flags": np.asarray(flags, dtype=bool), "quality": np.asarray(quality, dtype=float),
            "class_noise": class_noise, "health_score": health, "suggested": suggested}


def audit_splits(splits: dict[str, pd.DataFrame], spec: DatasetSpec, cfg: AuditConfig, seed: int):
    """Returns (audited splits with label_quality / is_label_issue / suggested_labels, report, review)."""
    pooled = pd.concat([splits[s].assign(source_split=s) for s in AUDITED], ignore_index=True)
    y = label_matrix(pooled["labels"], spec.labels)
    too_rare = [c for c, n in zip(spec.labels, y.sum(0)) if n < cfg.folds]
    if too_rare and not spec.multi_label:
        raise EmotuneError(f"dataset {spec.name!r}: classes {too_rare} have fewer than audit.folds="
                           f"{cfg.folds} examples in train+validation; lower audit.folds")
    probs = out_of_fold_probs(pooled["text"].tolist(), y, spec.multi_label, cfg, seed)
    found = find_issues(y, probs, spec.labels, spec.multi_label)
    pooled["label_quality"] = found["quality"]
    pooled["is_label_issue"] = found["flags"]
    pooled["suggested_labels"] = found["suggested"]

    out, report_splits = {}, {}
    for split in AUDITED:
        part = pooled[pooled["source_split"] == split].drop(columns="source_split").reset_index(drop=True)
        flagged = int(part["is_label_issue"].sum())
        dropped = 0
        if cfg.action == "drop" and split in cfg.drop_splits:
            cap = int(cfg.max_drop_fraction * len(part))
            worst = part[part["is_label_issue"]].nsmallest(cap, "label_quality").index
            dropped = len(worst)
            part = part.drop(index=worst).reset_index(drop=True)
        out[split] = part
        report_splits[split] = {"rows": len(part) + dropped, "flagged": flagged,
                                "flagged_rate": round(flagged / max(len(part) + dropped, 1), 4),
                                "dropped": dropped, "rows_out": len(part)}
    out["test"] = splits["test"].assign(label_quality=np.nan, is_label_issue=False,
                                        suggested_labels=[[] for _ in range(len(splits["test"]))])
    given = pooled["labels"].map(tuple)
    accuracy = float(np.mean([set(g) == set(s) for g, s in zip(given, found["suggested"])]))
    report = {
        "dataset": spec.name, "task": spec.task, "model": cfg.model, "folds": cfg.folds,
        "action": cfg.action, "health_score": round(found["health_score"], 4),
        "issues_found": int(found["flags"].sum()),
        "issue_rate": round(float(found["flags"].mean()), 4),
        "out_of_fold_exact_match": round(accuracy, 4),
        "splits": report_splits,
        "class_noise_rate": {c: round(v, 4) for c, v in found["class_noise"].items()},
    }
    review = pooled[pooled["is_label_issue"]].nsmallest(cfg.top_k, "label_quality")
    return out, report, review


def review_markdown(review: pd.DataFrame, spec: DatasetSpec) -> str:
    lines = [f"# {spec.name}: most suspicious labels", "",
             "Lowest cleanlab label quality first. `given` is the dataset's label; `suggested` is what "
             "the out-of-fold model predicts.", "",
             "| split | id | quality | given | suggested | text |", "|---|---|---|---|---|---|"]
    for row in review.itertuples():
        text = str(row.text).replace("|", "\\|")[:200]
        lines.append(f"| {row.source_split} | {row.id} | {row.label_quality:.3f} | {', '.join(row.labels) or '(none)'}"
                     f" | {', '.join(row.suggested_labels) or '(none)'} | {text} |")
    return "\n".join(lines) + "\n"
