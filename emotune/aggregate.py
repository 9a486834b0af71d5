"""aggregate: every evaluated run and baseline -> one leaderboard.

    python -m stages.aggregate

Reads metrics/eval/<dataset>/<model>/<adapter>.json (test metrics) and
metrics/train/<dataset>/<model>/<adapter>.json (cost of training) for every run of the matrices in
params.yaml, and metrics/eval/<dataset>/baseline/*.json. Writes
  metrics/leaderboard.json   {"rows": [...]}: one row per run and baseline, `best` on the best run of
                             each dataset (by its official metric)
  metrics/leaderboard.md     the same as markdown tables, one per dataset, with the published reference
                             number and each run's gain over TF-IDF + LR on the same training rows
  metrics/leaderboard.csv    flat rows (dvc plots)
  metrics/pareto/<dataset>.png  official metric against trainable parameters and training time; the
                             runs no other run beats on both axes are joined (the Pareto front)
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from emotune.atomic import atomic_dir, read_json, write_atomic, write_json
from emotune.config import Params
from emotune.errors import EmotuneError
from emotune.paths import BASELINES, eval_paths, project_root, zero_shot_name

COLUMNS = ["dataset", "model", "adapter", "kind", "official_metric", "official", "macro_f1", "micro_f1",
           "trainable_params", "total_params", "adapter_mb", "train_time_s", "train_examples",
           "train_examples_per_s", "epochs", "peak_memory_mb", "infer_examples_per_s", "latency_ms_p50",
           "collapsed", "vs_tfidf_rows"]
COLLAPSED_MARK = "(collapsed)"


def run_row(dataset: str, model: str, adapter: str, root: Path) -> dict:
    eval_file, _ = eval_paths(dataset, model, adapter, root)
    train_file = root / "metrics" / "train" / dataset / model / f"{adapter}.json"
    for path in (eval_file, train_file):
        if not path.exists():
            raise EmotuneError(f"{path}: missing; run `dvc repro` (the train and evaluate stages of "
                               f"{dataset}/{model}/{adapter})")
    ev, tr = read_json(eval_file), read_json(train_file)
    return {"dataset": dataset, "model": model, "adapter": adapter, "kind": "run",
            "official_metric": ev["official_metric"], "official": ev["official"],
            "macro_f1": ev["test"]["macro_f1"], "micro_f1": ev["test"]["micro_f1"],
            "trainable_params": tr["params"]["trainable"], "total_params": tr["params"]["total"],
            "adapter_mb": round(tr["adapter_bytes"] / 2**20, 2), "train_time_s": tr["train_time_s"],
            "train_examples": tr["train_examples"], "train_examples_per_s": tr["train_examples_per_s"],
            "epochs": tr.get("epochs_run"), "peak_memory_mb": tr["peak_memory_mb"],
            "infer_examples_per_s": ev["inference"]["batched_examples_per_s"],
            "latency_ms_p50": ev["inference"].get("latency_ms_p50"),
            # the train stage's flag: validation metric never above a constant prediction (emotune/metrics.py
            # collapse_warning); None for a metrics file written before the flag existed
            "collapsed": tr.get("collapsed"),
            **({"invalid_rate": ev["test"]["invalid_rate"]} if "invalid_rate" in ev["test"] else {})}


def baseline_row(dataset: str, name: str, root: Path, stage: str | None = None) -> dict:
    """A baseline's row, with its cost where the baseline recorded one (older reports have none)."""
    path, _ = eval_paths(dataset, "baseline", name, root)
    if not path.exists():
        raise EmotuneError(f"{path}: missing; run `dvc repro {stage or f'baseline@{dataset}'}`")
    ev = read_json(path)
    params, inference = ev.get("params") or {}, ev.get("inference") or {}
    cost = {"trainable_params": params.get("trainable"), "total_params": params.get("total"),
            "train_time_s": ev.get("train_time_s"), "infer_examples_per_s": inference.get("batched_examples_per_s")}
    return {"dataset": dataset, "model": "baseline", "adapter": name, "kind": "baseline",
            "official_metric": ev["official_metric"], "official": ev["official"],
            "macro_f1": ev["test"]["macro_f1"], "micro_f1": ev["test"]["micro_f1"],
            "train_examples": ev["train_examples"], **{k: v for k, v in cost.items() if v is not None},
            **({"invalid_rate": ev["test"]["invalid_rate"]} if "invalid_rate" in ev["test"] else {})}


def baseline_rows(params: Params, root: Path) -> list[dict]:
    """The trained baselines of every dataset, then the zero-shot rows (params baseline.zero_shot)."""
    rows = [baseline_row(d, name, root) for d in params.datasets for name in BASELINES]
    zero = params.baseline.zero_shot
    rows += [baseline_row(d, zero_shot_name(m), root, f"baseline_zero_shot@{d}-{m}")
             for d in params.zero_shot_datasets() for m in zero.models]
    return rows


def leaderboard(params: Params, root: Path | None = None) -> list[dict]:
    root = project_root() if root is None else Path(root)
    rows = [run_row(*run, root) for matrix in params.matrices() for run in matrix.runs()]
    rows += baseline_rows(params, root)
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        runs = [r for r in mine if r["kind"] == "run"]
        best = max(runs, key=lambda r: r["official"]) if runs else None
        tfidf = [r for r in mine if r["adapter"] in ("tfidf_lr", "tfidf_lr_all")]
        reference = params.dataset(dataset).reference
        for r in mine:
            r["best"] = r is best
            same = same_rows_tfidf(r, tfidf) if r["kind"] == "run" else None
            if same is not None:
                r["vs_tfidf_lr"] = round(r["official"] - same["official"], 4)
                r["vs_tfidf_rows"] = same["train_examples"]
            if reference is not None and reference.metric == r["official_metric"]:
                r["reference"], r["vs_reference"] = reference.value, round(r["official"] - reference.value, 4)
    return sorted(rows, key=lambda r: (r["dataset"], r["kind"] != "run", -r["official"]))


def same_rows_tfidf(run: dict, tfidf: list[dict]) -> dict | None:
    """The TF-IDF + LR baseline trained on as many rows as `run` (tfidf_lr on the capped sample,
    tfidf_lr_all on all rows: a reference run on all rows is compared with the latter); else tfidf_lr."""
    same = [b for b in tfidf if b["train_examples"] == run["train_examples"]]
    return (same or [b for b in tfidf if b["adapter"] == "tfidf_lr"] or [None])[0]


def rows_text(n) -> str:
    return "" if n is None else f"{n:,}"


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.2f}M"
    return str(value)


def markdown(rows: list[dict], params: Params) -> str:
    out = ["# Leaderboard", "",
           "Test split of each dataset. **bold** = best fine-tuned run of the dataset (official metric). "
           "`rows` and `epochs` = training rows and epochs run (early stopping may end a run before "
           "`train.epochs`). `vs TF-IDF` = official metric minus TF-IDF + LR trained on the same number of "
           "rows (tfidf_lr on the capped sample, tfidf_lr_all on all rows); `vs ref.` = minus the "
           "published reference (trained on all rows, see the source). Costs are from the train and "
           "evaluate stages on the machine that ran them. "
           f"{COLLAPSED_MARK} after an adapter: its validation metric was 0 or at the level of a constant "
           "prediction in every epoch (the train stage warned): the model learned nothing.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        reference = params.dataset(dataset).reference
        out.append(f"## {dataset} ({mine[0]['official_metric']})")
        if reference is not None:
            out.append(f"Reference: {reference.metric} {reference.value} ({reference.source})")
        out += ["", "| model | adapter | official | macro F1 | micro F1 | rows | epochs | vs TF-IDF | vs ref. | "
                "trainable | adapter MB | train s | train ex/s | peak MB | infer ex/s | p50 ms |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in mine:
            official = f"**{fmt(r['official'])}**" if r["best"] else fmt(r["official"])
            out.append("| " + " | ".join([
                r["model"], r["adapter"] + (f" {COLLAPSED_MARK}" if r.get("collapsed") else ""), official,
                fmt(r["macro_f1"]), fmt(r["micro_f1"]), rows_text(r.get("train_examples")), fmt(r.get("epochs")),
                fmt(r.get("vs_tfidf_lr")), fmt(r.get("vs_reference")), fmt(r.get("trainable_params")),
                fmt(r.get("adapter_mb"), 2), fmt(r.get("train_time_s"), 0), fmt(r.get("train_examples_per_s"), 1),
                fmt(r.get("peak_memory_mb"), 0), fmt(r.get("infer_examples_per_s"), 1),
                fmt(r.get("latency_ms_p50"), 1)]) + " |")
        out.append("")
    return "\n".join(out)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal cost and higher or equal metric, one
    strictly. Returned by increasing cost."""
    keep = [i for i, (c, m) in enumerate(points)
            if not any((c2 <= c and m2 >= m) and (c2 < c or m2 > m) for c2, m2 in points)]
    return sorted(keep, key=lambda i: points[i][0])


def pareto_plot(rows: list[dict], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["dataset"] == dataset and r["kind"] == "run"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, cost, label in ((axes[0], "trainable_params", "trainable parameters"),
                            (axes[1], "train_time_s", "training time (s)")):
        points = [(max(r[cost], 1), r["official"]) for r in runs]
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:blue")
        for r, (x, y) in zip(runs, points):
            ax.annotate(f"{r['model']}/{r['adapter']}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="tab:orange", label="Pareto front")
        for b in (r for r in rows if r["dataset"] == dataset and r["kind"] == "baseline" and r["adapter"] != "majority"):
            ax.axhline(b["official"], linestyle="--", linewidth=0.8, color="gray")
            ax.annotate(b["adapter"], (ax.get_xlim()[0], b["official"]), fontsize=7, color="gray")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {runs[0]['official_metric'] if runs else ''}")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{dataset}: quality against cost")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_leaderboard(params: Params, root: Path | None = None) -> list[dict]:
    root = project_root() if root is None else Path(root)
    rows = leaderboard(params, root)
    metrics_dir = root / "metrics"
    write_json(metrics_dir / "leaderboard.json", {"rows": rows})
    write_atomic(metrics_dir / "leaderboard.md", lambda tmp: tmp.write_text(markdown(rows, params), encoding="utf-8"))
    write_atomic(metrics_dir / "leaderboard.csv",
                 lambda tmp: pd.DataFrame(rows).reindex(columns=COLUMNS + ["best"]).to_csv(tmp, index=False))
    with atomic_dir(metrics_dir / "pareto") as out:
        for dataset in dict.fromkeys(r["dataset"] for r in rows if r["kind"] == "run"):
            pareto_plot(rows, dataset, out / f"{dataset}.png")
    return rows
