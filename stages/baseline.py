"""baseline: the classical rows of the leaderboard, scored by the same code as every fine-tuned run.

    python -m stages.baseline <dataset>

Writes metrics/eval/<dataset>/baseline/<name>.json (+ plots, as stages/evaluate.py) for
* majority      always the training prior: the most frequent class, or each label's majority
* tfidf_lr      TF-IDF word 1-2 grams + logistic regression (one-vs-rest for multi-label) on exactly the
                training rows the fine-tuned runs of the main matrix see (the same seeded sample of
                train.max_train_examples), so a fine-tuned row's gain over it is the model's, not the data's
* tfidf_lr_all  the same on every training row: what a classical model does with all the data
Multi-label thresholds follow eval.threshold, tuned on validation exactly as for the runs.
"""
from __future__ import annotations

import argparse

import numpy as np

from stages import metrics
from stages.artifacts import load_splits, run_stage
from stages.config import ROOT, load_params
from stages.evaluate import eval_paths, scored, write_report
from stages.tokenize import label_targets
from stages.train import sample_rows

BASELINES = ("majority", "tfidf_lr", "tfidf_lr_all")


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


def fit(name: str, train_text, y_train, multi: bool, seed: int):
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    if name == "majority":
        model = DummyClassifier(strategy="prior")
    else:
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                              (OneVsRestClassifier if multi else lambda m: m)(
                                  LogisticRegression(max_iter=2000, C=4.0, random_state=seed)))
    return model.fit(train_text, y_train)


def predict_proba(model, texts, n_classes: int, multi: bool) -> np.ndarray:
    if hasattr(model, "steps"):
        return full_proba(model.steps[-1][1], model[:-1].transform(texts), n_classes, multi)
    return full_proba(model, np.zeros((len(texts), 1)), n_classes, multi)


def run_baseline(name: str, splits: dict, spec, cap: int | None, seed: int, threshold) -> tuple[dict, np.ndarray, np.ndarray]:
    labels, multi = list(spec.labels), spec.multi_label
    train = splits["train"] if name == "tfidf_lr_all" else sample_rows(splits["train"], cap, seed)
    y_train = targets(train, labels, multi, f"{spec.name}/train")
    model = fit(name, train["text"].tolist(), y_train, multi, seed)
    test = splits["test"]
    y_test = targets(test, labels, multi, f"{spec.name}/test")
    probs = predict_proba(model, test["text"].tolist(), len(labels), multi)
    thresholds, mode = None, "argmax"
    if multi and name != "majority":
        mode = "tuned" if threshold == "tuned" else f"fixed {threshold}"
        thresholds = [threshold] * len(labels)
        if threshold == "tuned":
            val = splits["validation"]
            val_probs = predict_proba(model, val["text"].tolist(), len(labels), multi)
            thresholds = metrics.tune_thresholds(targets(val, labels, multi, f"{spec.name}/validation"), val_probs)
    elif multi:
        mode, thresholds = "fixed 0.5", [0.5] * len(labels)  # each label's majority outcome
    y_pred = metrics.decide(probs, multi, thresholds)
    dataset = {"name": spec.name, "task": spec.task, "labels": labels, "official_metric": spec.official_metric}
    report = scored("baseline", dataset, "baseline", name, y_test, y_pred, probs, None, thresholds, mode,
                    {"train_examples": int(len(train))})
    return report, y_test, y_pred


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Majority and TF-IDF + logistic regression baselines")
    parser.add_argument("dataset")
    args = parser.parse_args(argv)
    params = load_params()
    spec = params.dataset(args.dataset)
    splits = load_splits(ROOT / "data" / "audited" / args.dataset)
    for name in BASELINES:
        report, y_true, y_pred = run_baseline(name, splits, spec, params.train.max_train_examples, params.seed,
                                              params.eval.threshold)
        write_report(report, y_true, y_pred, *eval_paths(args.dataset, "baseline", name))
        print(f"baseline {args.dataset}/{name} ({report['train_examples']} train rows): test "
              f"{report['official_metric']} {report['official']:.4f}, macro F1 {report['test']['macro_f1']:.4f}")


if __name__ == "__main__":
    run_stage(main)
