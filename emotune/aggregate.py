"""aggregate: every evaluated run and baseline -> one leaderboard.

    python -m stages.aggregate

Reads metrics/eval/<dataset>/<model>/<adapter>.json (test metrics) and
metrics/train/<dataset>/<model>/<adapter>.json (cost of training) for every run of the matrices in
params.yaml, and metrics/eval/<dataset>/baseline/*.json. Writes
  metrics/leaderboard.json   {"rows": [...]}: one row per run and baseline, `best` on the best run of
                             each dataset (by its official metric), each with its 95% interval and its
                             paired difference to that best run (`vs_best*`, `tied_for_best`: below)
  metrics/leaderboard.md     the same as markdown tables, one per dataset, with the published reference
                             number and each run's gain over TF-IDF + LR on the same training rows
  metrics/leaderboard.csv    flat rows (dvc plots)
  metrics/pareto/<dataset>.png  official metric (with its 95% interval) against trainable parameters and
                             training time; the runs no other run beats on both axes are joined (the
                             Pareto front)

Statistics (emotune/stats.py, docs/noise.md): every row and the best run of its dataset are compared on the
same test rows (their predictions.csv.gz files): the difference of the official metric with its paired
bootstrap interval; "tied for best" when that interval covers 0. That answers question 1 (is this trained
model better than that one on this test set); question 2 (is this adapter better) needs seeds:
`method_vs_best` holds its answer (emotune/seeds.py), "cannot tell (one seed)" with one seed.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd

from emotune import stats
from emotune.atomic import atomic_dir, read_json, write_atomic, write_json
from emotune.config import Params
from emotune.errors import EmotuneError
from emotune.paths import BASELINES, eval_paths, predictions_path, project_root, zero_shot_name
from emotune.seeds import ONE_SEED, known_spread, method_verdict, read_seed_spread, summarize_seeds

COLUMNS = ["dataset", "model", "adapter", "kind", "official_metric", "official", "macro_f1", "micro_f1",
           "trainable_params", "total_params", "adapter_mb", "train_time_s", "train_examples",
           "train_examples_per_s", "epochs", "peak_memory_mb", "infer_examples_per_s", "latency_ms_p50",
           "collapsed", "vs_tfidf_rows", "official_ci95_low", "official_ci95_high", "vs_best", "vs_best_ci95_low",
           "vs_best_ci95_high", "tied_for_best"]
COLLAPSED_MARK = "(collapsed)"
TIED_MARK = "tied for best"


def interval_fields(ev: dict) -> dict:
    """The headline intervals of a metrics report (absent in reports written before they existed)."""
    out = {"official_ci95": ev.get("official_ci95")}
    for metric in stats.HEADLINE:
        out[stats.interval_key(metric)] = ev["test"].get(stats.interval_key(metric))
    return out


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
            "collapsed": tr.get("collapsed"), **interval_fields(ev),
            # a tune-group run (emotune/tune.py): its search's trials and minutes
            **({"tuned": tr["tuned"]} if tr.get("tuned") else {}),
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
            **interval_fields(ev),
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
        if best is not None:
            compare_to_best(mine, best, root)
    return sorted(rows, key=lambda r: (r["dataset"], r["kind"] != "run", -r["official"]))


def row_predictions(row: dict, root: Path) -> stats.Predictions | None:
    """The per-row predictions of a leaderboard row; None when its stage wrote none (an older report)."""
    path = predictions_path(row["dataset"], row["model"], row["adapter"], root)
    if not path.exists():
        return None
    report = read_json(eval_paths(row["dataset"], row["model"], row["adapter"], root)[0])
    return stats.run_predictions(report, path.read_bytes(), str(path))


def best_difference(row: dict, best: dict, mine: stats.Predictions | None,
                    theirs: stats.Predictions | None) -> stats.Difference:
    """`row` minus the best run on the official metric: paired on the same test rows when both have
    per-row predictions of the same rows, else from the two intervals (stats.unpaired_difference)."""
    metric = row["official_metric"]
    if mine is not None and theirs is not None and stats.aligned(mine, theirs) is not None:
        return stats.paired_difference(mine, theirs, metric)
    return stats.unpaired_difference(metric, row["official"], row.get("official_ci95"), best["official"],
                                     best.get("official_ci95"))


def compare_to_best(rows: list[dict], best: dict, root: Path) -> None:
    """Per row of one dataset: `vs_best` (official metric minus the best run's), `vs_best_ci95` (its 95%
    interval), `vs_best_p`, `vs_best_mcnemar_p` (accuracy only), `vs_best_verdict` (better / worse / within
    noise), `vs_best_paired` (paired bootstrap on the same test rows, or the unpaired fallback),
    `tied_for_best` (True for the best run and every row whose interval covers 0; None without any
    interval), and `method_vs_best` (question 2)."""
    theirs = row_predictions(best, root)
    for row in rows:
        row["method_vs_best"] = ONE_SEED  # question 2: add_seed_verdicts answers it for the runs
        if row is best:
            row.update(vs_best=0.0, vs_best_ci95=stats.as_json(0.0, 0.0), vs_best_verdict="best",
                       vs_best_paired=theirs is not None, tied_for_best=True)
            continue
        diff = best_difference(row, best, row_predictions(row, root), theirs)
        known = not math.isnan(diff.low)
        row.update(vs_best=round(diff.difference, 4), vs_best_ci95=diff.as_json() if known else None,
                   vs_best_p=None if diff.p_value is None else round(diff.p_value, 4),
                   vs_best_verdict=diff.verdict if known else None, vs_best_paired=diff.paired,
                   tied_for_best=diff.tied if known else None)
        if diff.mcnemar_p is not None:
            row["vs_best_mcnemar_p"] = float(f"{diff.mcnemar_p:.3g}")


def same_rows_tfidf(run: dict, tfidf: list[dict]) -> dict | None:
    """The TF-IDF + LR baseline trained on as many rows as `run` (tfidf_lr on the capped sample,
    tfidf_lr_all on all rows: a reference run on all rows is compared with the latter); else tfidf_lr."""
    same = [b for b in tfidf if b["train_examples"] == run["train_examples"]]
    return (same or [b for b in tfidf if b["adapter"] == "tfidf_lr"] or [None])[0]


def tuned_mark(row: dict) -> str:
    """' (tuned: 20 trials, 35 min)' after a tune-group run's adapter; '' for any other row."""
    tuned = row.get("tuned")
    return f" (tuned: {tuned['trials']} trials, {tuned['minutes']:.0f} min)" if tuned else ""


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


def official_text(row: dict) -> str:
    """0.789 [0.771, 0.807]: the official metric and its 95% interval (bold for the best run)."""
    value = f"**{fmt(row['official'])}**" if row["best"] else fmt(row["official"])
    ci = stats.ends(row.get("official_ci95"))
    return value + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def vs_best_text(row: dict) -> str:
    """-0.005 [-0.019, +0.009] tied for best; "best" on the best run; "" without a best run."""
    if row.get("vs_best_verdict") == "best":
        return "best"
    if row.get("vs_best") is None:
        return ""
    ci = stats.ends(row.get("vs_best_ci95"))
    text = f"{row['vs_best']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
    if row.get("tied_for_best"):
        text += f" {TIED_MARK}"
    return text + ("" if row.get("vs_best_paired") or not ci else " (unpaired)")


def markdown(rows: list[dict], params: Params) -> str:
    out = ["# Leaderboard", "",
           "Test split of each dataset. **bold** = best fine-tuned run of the dataset (official metric). "
           "`rows` and `epochs` = training rows and epochs run (early stopping may end a run before "
           "`train.epochs`). `vs TF-IDF` = official metric minus TF-IDF + LR trained on the same number of "
           "rows (tfidf_lr on the capped sample, tfidf_lr_all on all rows); `vs ref.` = minus the "
           "published reference (trained on all rows, see the source). Costs are from the train and "
           "evaluate stages on the machine that ran them. "
           f"{COLLAPSED_MARK} after an adapter: its validation metric was 0 or at the level of a constant "
           "prediction in every epoch (the train stage warned): the model learned nothing.", "",
           "Which question each column answers (docs/noise.md). **Question 1: is this trained model better "
           "than that one on this test set?** `official [95% CI]`: the official metric and a bootstrap "
           "interval over the test rows; `vs best (Q1)`: minus the dataset's best run, with the 95% interval "
           "of a paired bootstrap on the same test rows; *tied for best*: that interval covers 0, so the test "
           "set cannot tell the row from the best. Both cover test-sampling noise only: another seed or "
           "another training sample moves a run further. **Question 2: is this adapter / setting better?** "
           f"`method (Q2)`: needs several seeds per variant; with one seed it says \"{ONE_SEED}\".", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        reference = params.dataset(dataset).reference
        out.append(f"## {dataset} ({mine[0]['official_metric']})")
        if reference is not None:
            out.append(f"Reference: {reference.metric} {reference.value} ({reference.source})")
        out += ["", "| model | adapter | official [95% CI] | macro F1 | micro F1 | rows | epochs | vs TF-IDF | "
                "vs ref. | vs best (Q1) | method (Q2) | trainable | adapter MB | train s | train ex/s | peak MB | "
                "infer ex/s | p50 ms |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in mine:
            out.append("| " + " | ".join([
                r["model"], r["adapter"] + (f" {COLLAPSED_MARK}" if r.get("collapsed") else "") + tuned_mark(r),
                official_text(r),
                fmt(r["macro_f1"]), fmt(r["micro_f1"]), rows_text(r.get("train_examples")), fmt(r.get("epochs")),
                fmt(r.get("vs_tfidf_lr")), fmt(r.get("vs_reference")), vs_best_text(r), r.get("method_vs_best", ""),
                fmt(r.get("trainable_params")),
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


def error_bars(runs: list[dict]) -> tuple[list[float], list[float]]:
    """(below, above) each run's official metric to the ends of its 95% interval (0 without one)."""
    spans = [stats.ends(r.get("official_ci95")) or (r["official"], r["official"]) for r in runs]
    return ([max(r["official"] - lo, 0.0) for r, (lo, _) in zip(runs, spans)],
            [max(hi - r["official"], 0.0) for r, (_, hi) in zip(runs, spans)])


def pareto_plot(rows: list[dict], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["dataset"] == dataset and r["kind"] == "run"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, cost, label in ((axes[0], "trainable_params", "trainable parameters"),
                            (axes[1], "train_time_s", "training time (s)")):
        points = [(max(r[cost], 1), r["official"]) for r in runs]
        below, above = error_bars(runs)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[below, above], fmt="o", color="tab:blue",
                    ecolor="tab:blue", elinewidth=1, capsize=3, label="run, 95% interval (test rows)")
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


def flat_rows(rows: list[dict]) -> list[dict]:
    """The rows with each interval's ends as two columns (for the CSV)."""
    out = []
    for r in rows:
        flat = dict(r)
        for key in ("official_ci95", "vs_best_ci95"):
            low, high = stats.ends(r.get(key)) or (None, None)
            flat[f"{key}_low"], flat[f"{key}_high"] = low, high
        out.append(flat)
    return out


def write_leaderboard(params: Params, root: Path | None = None) -> list[dict]:
    root = project_root() if root is None else Path(root)
    rows = leaderboard(params, root)
    add_seed_verdicts(rows, params, root)
    metrics_dir = root / "metrics"
    write_json(metrics_dir / "leaderboard.json", {"rows": rows})
    write_json(metrics_dir / SUMMARY, summary(rows))
    write_atomic(metrics_dir / "leaderboard.md",
                 lambda tmp: tmp.write_text(markdown(rows, params) + seeds_markdown(rows), encoding="utf-8"))
    write_atomic(metrics_dir / "leaderboard.csv",
                 lambda tmp: pd.DataFrame(flat_rows(rows)).reindex(columns=COLUMNS + ["best"]).to_csv(tmp, index=False))
    with atomic_dir(metrics_dir / "pareto") as out:
        for dataset in dict.fromkeys(r["dataset"] for r in rows if r["kind"] == "run"):
            pareto_plot(rows, dataset, out / f"{dataset}.png")
    return rows


# ---------------------------------------------------------------------------------------------
# Seeds (question 2: is this adapter / setting better?) and the summary metrics file
# ---------------------------------------------------------------------------------------------
SUMMARY = "summary.json"  # metrics/summary.json: the one DVC metrics file of a run (dvc.yaml), what `dvc exp show` leads with


def seed_values(row: dict, params: Params, root: Path) -> dict[int, float]:
    """{seed: official test metric} of a run: the primary seed (`seed`, the row itself), then every extra seed
    of `seeds` for a run of the main matrix (the only one `seeds` multiplies)."""
    values = {params.seed: row["official"]}
    if (row["dataset"], row["model"], row["adapter"]) not in params.matrices()[0].runs():
        return values
    for seed in params.seeds:
        path, _ = eval_paths(row["dataset"], row["model"], row["adapter"], root, seed)
        if not path.exists():
            raise EmotuneError(f"{path}: missing; run `dvc repro` (the train_seeds and evaluate_seeds stages of "
                               f"{row['dataset']}/{row['model']}/{row['adapter']} seed {seed})")
        values[seed] = read_json(path)["official"]
    return values


def add_seed_verdicts(rows: list[dict], params: Params, root: Path) -> None:
    """Per run: each seed's official metric (`seeds`), their mean and sd, and the method-level verdict against
    the dataset's best variant by seed mean (`method_vs_best`, with `method_vs_best_detail`): Welch's t over
    seeds (emotune/seeds.py says why that test). With one seed on either side the verdict is ONE_SEED and the
    detail quotes how far seeds move that kind of run (metrics/bench/seed_calibration.json)."""
    spread = read_seed_spread(root)
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        runs = [r for r in rows if r["dataset"] == dataset and r["kind"] == "run"]
        summaries = {}
        for r in runs:
            summary = summarize_seeds(seed_values(r, params, root))
            summaries[id(r)] = summary
            r["seeds"] = {str(s): v for s, v in zip(summary.seeds, summary.values)}
            r["seed_mean"] = round(summary.mean, 4)
            r["seed_sd"] = None if summary.sd is None else round(summary.sd, 4)
        # The best variant among the runs `seeds` multiplies (the main matrix): a one-seed run of another
        # group (the all-rows reference runs, best on every dataset) would make every verdict ONE_SEED.
        seeded = [r for r in runs if summaries[id(r)].n > 1] or runs
        best = max(seeded, key=lambda r: summaries[id(r)].mean) if runs else None
        for r in runs:
            r["method_best"] = r is best
            mine, theirs = summaries[id(r)], summaries[id(best)]
            verdict = method_verdict(mine.values, theirs.values)
            detail = {"best": f"{best['model']}/{best['adapter']}",
                      **{k: v for k, v in dataclasses.asdict(verdict).items() if k != "verdict"}}
            if r is best:
                r["method_vs_best"] = "best" if mine.n > 1 else ONE_SEED
            else:
                r["method_vs_best"] = verdict.verdict
            if verdict.verdict == ONE_SEED or (r is best and mine.n == 1):
                known = known_spread(spread, dataset, r["adapter"])
                detail["measured_seed_sd"] = None if known is None else known.sd
                detail["measured_on"] = None if known is None else f"{known.measured_on}, {known.seeds} seeds"
            r["method_vs_best_detail"] = detail


def seed_text(r: dict) -> str:
    """mean ± sd (n seeds), or the one seed's value."""
    if r.get("seed_sd") is None:
        return f"{fmt(r['official'])} (1 seed)"
    return f"{r['seed_mean']:.3f} ± {r['seed_sd']:.3f} ({len(r['seeds'])} seeds)"


def method_text(r: dict) -> str:
    detail = r.get("method_vs_best_detail", {})
    if r["method_vs_best"] in ("best",):
        return "**best** (by seed mean)"
    if "measured_seed_sd" in detail:
        known = detail["measured_seed_sd"]
        spread = (f"; seeds move such a run by sd {known:.3f} ({detail['measured_on']}, bench/seed_calibration.py)"
                  if known is not None else "; no seed spread measured for this adapter (bench/seed_calibration.py)")
        return f"{r['method_vs_best']}{spread}"
    return (f"{r['method_vs_best']}: {detail['difference']:+.3f} [{detail['low']:+.3f}, {detail['high']:+.3f}], "
            f"p {detail['p_value']:.3f}")


def seeds_markdown(rows: list[dict]) -> str:
    """The seeds section of leaderboard.md: question 2, per dataset."""
    out = ["", "# Seeds: is this adapter better? (question 2)", "",
           "Each seed retrains the run (initialisation, batch order, dropout and the `max_train_examples` sample) and "
           "scores it on the same test rows; params.yaml `seeds` adds seeds (docs/seeds.md). `mean ± sd` over the "
           "seeds; `vs best variant`: against the dataset's run with the best seed mean, Welch's t-test over seeds "
           "(two-sided, 5%): the difference of the means, its 95% interval and p. \"within noise\": the seeds "
           "cannot tell the two methods apart. With one seed no method-level verdict is possible; the measured "
           "seed spread of that kind of run says how far a second seed could move it.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset and r["kind"] == "run" and "seeds" in r]
        if not mine:
            continue
        out += [f"## {dataset} ({mine[0]['official_metric']})", "",
                "| model | adapter | mean ± sd | each seed | vs best variant (Q2) |", "|---|---|---|---|---|"]
        for r in sorted(mine, key=lambda r: -r["seed_mean"]):
            each = ", ".join(f"{s}: {v:.3f}" for s, v in r["seeds"].items())
            out.append(f"| {r['model']} | {r['adapter']} | {seed_text(r)} | {each} | {method_text(r)} |")
        out.append("")
    return "\n".join(out)


def summary(rows: list[dict]) -> dict:
    """metrics/summary.json: per dataset, per `<model>/<adapter>` row, the official metric under its own name
    (accuracy, macro_f1, ...), its 95% interval over test rows (`low`, `high`) and, with several seeds, the
    seed mean and sd: the few columns `dvc exp show` and `dvc metrics diff` lead with (docs/seeds.md)."""
    out: dict = {}
    for r in rows:
        entry = {r["official_metric"]: r["official"]}
        interval = stats.ends(r.get("official_ci95"))
        if interval is not None:
            entry.update(low=interval[0], high=interval[1])
        if r.get("seed_sd") is not None:
            entry.update(seed_mean=r["seed_mean"], seed_sd=r["seed_sd"], seeds=len(r["seeds"]))
        out.setdefault(r["dataset"], {})[f"{r['model']}/{r['adapter']}"] = entry
    return out
