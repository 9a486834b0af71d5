"""Calibrate the verdicts of issue 29: how often do they call two seeds of ONE configuration different (A/A),
and do they catch a planted difference?

    nice -n 10 python -m bench.seed_calibration                 # writes metrics/bench/seed_calibration.json
        [--datasets tweet_eval_emotion,emotion] [--adapters head,lora] [--seeds 42,43,44,45,46]
        [--rows 1000] [--jobs 2] [--corrupt 0.05] [--cache /tmp/emotune-seed-calibration]
    python -m bench.seed_calibration --tiny                     # tiny models and texts (CI); writes nothing

For each dataset x adapter x seed: one run of the main matrix's settings (MiniLM, `train:` of params.yaml,
`--rows` training rows drawn by the seed, as the pipeline draws them), trained by emotune/train.py and
scored on the whole test split by emotune/evaluate.py; the per-row test predictions are kept (in --cache,
so a rerun of the analysis retrains nothing). Then, on those predictions:

(a) A/A. Model level: every pair of seeds of one configuration, a paired bootstrap over test rows of the
    difference in the official metric; "different" when its 95% interval excludes 0. Those two models do
    differ (each seed is another model), so this rate says how often a one-seed comparison of two runs
    would be read as a method difference by someone who forgets question 2. Method level: every split of
    the seeds into two disjoint arms of k seeds, emotune/seeds.py method_verdict (Welch t over seeds) and,
    for comparison, a hierarchical bootstrap (seeds with replacement inside each arm, then test rows, shared
    by both arms); the false "better" rate (arm A called better) must stay at most 5%.
(b) Planted differences. head against LoRA (method level, every pair of k-seed arms), and every run against
    itself with `--corrupt` of its test predictions replaced by a wrong label (model level: each run; method
    level: the A/A splits with arm B corrupted): the share detected.

Also the seed spread per dataset x adapter (sd and range of the official metric over seeds): the figure the
one-seed leaderboard quotes (emotune/seeds.py known_spread).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import common

BOOTSTRAP_RESAMPLES = 1000
LEVEL = 0.95


# ---------------------------------------------------------------------------------------------
# Per-row scoring (single-label: class ids), vectorised over bootstrap resamples
# ---------------------------------------------------------------------------------------------
def weighted_scores(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, metric: str, n_classes: int) -> np.ndarray:
    """The official metric of (y_true, y_pred) under each row of `weights` (resamples x rows: how often each
    test row is drawn; a row of ones is the plain score). accuracy and macro F1 (sklearn's zero_division=0)."""
    weights = np.atleast_2d(weights).astype(np.float64)
    if metric == "accuracy":
        return weights @ (y_true == y_pred) / weights.sum(1)
    if metric != "macro_f1":
        raise ValueError(f"seed_calibration scores accuracy and macro_f1, not {metric}")
    f1 = np.zeros((len(weights), n_classes))
    for c in range(n_classes):
        tp = weights @ ((y_true == c) & (y_pred == c))
        denominator = weights @ (y_pred == c) + weights @ (y_true == c)
        f1[:, c] = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(1)


def row_weights(n_rows: int, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of n test rows as counts per row (resamples x rows)."""
    return np.random.default_rng(seed).multinomial(n_rows, np.full(n_rows, 1 / n_rows), size=resamples)


@dataclass(frozen=True)
class Interval:
    difference: float  # metric(A) - metric(B) on all test rows
    low: float
    high: float

    @property
    def verdict(self) -> str:
        return "better" if self.low > 0 else "worse" if self.high < 0 else "within noise"


# LOCAL minimal paired bootstrap, for the lead to switch to the `noise` branch's emotune/stats.py (its paired
# bootstrap over test rows) once both branches are merged: same question, one implementation.
def paired_bootstrap(y_true, pred_a, pred_b, metric: str, n_classes: int, weights: np.ndarray) -> Interval:
    """Paired percentile bootstrap over test rows of metric(A) - metric(B): both runs scored on the same
    resampled rows (`weights`, from row_weights)."""
    ones = np.ones((1, len(y_true)))
    difference = float(weighted_scores(y_true, pred_a, ones, metric, n_classes)[0]
                       - weighted_scores(y_true, pred_b, ones, metric, n_classes)[0])
    diffs = (weighted_scores(y_true, pred_a, weights, metric, n_classes)
             - weighted_scores(y_true, pred_b, weights, metric, n_classes))
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(difference, float(low), float(high))


def hierarchical_bootstrap(resampled_a: np.ndarray, resampled_b: np.ndarray, seed: int) -> Interval:
    """The alternative to Welch's t that emotune/seeds.py explains away, measured here: each arm's runs x
    resamples matrix of scores on the same resampled test rows; each resample also draws the arm's seeds with
    replacement. Percentile interval of mean(A) - mean(B)."""
    rng = np.random.default_rng(seed)
    resamples = resampled_a.shape[1]
    pick_a = rng.integers(0, len(resampled_a), size=(resamples, len(resampled_a)))
    pick_b = rng.integers(0, len(resampled_b), size=(resamples, len(resampled_b)))
    columns = np.arange(resamples)[:, None]
    diffs = resampled_a[pick_a, columns].mean(1) - resampled_b[pick_b, columns].mean(1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(float(resampled_a.mean() - resampled_b.mean()), float(low), float(high))


def corrupted(y_true: np.ndarray, y_pred: np.ndarray, share: float, n_classes: int, seed: int) -> np.ndarray:
    """`y_pred` with `share` of its rows (seeded) replaced by a wrong label: a planted loss of about share x
    accuracy points."""
    rng = np.random.default_rng(seed)
    out = y_pred.copy()
    rows = rng.choice(len(out), size=round(share * len(out)), replace=False)
    out[rows] = (y_true[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
    return out


# ---------------------------------------------------------------------------------------------
# Analysis of one dataset's runs (pure: tests/test_bench.py runs it on constructed predictions)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedRun:
    dataset: str
    adapter: str
    seed: int
    official: float
    y_true: np.ndarray
    y_pred: np.ndarray


def arm_splits(seeds: list[int], k: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every ordered pair of disjoint k-seed arms (A, B): both orders, so "A better" counts one direction."""
    return [(a, b) for a in itertools.combinations(seeds, k) for b in itertools.combinations(seeds, k)
            if not set(a) & set(b)]


def rate(calls: list[str], word: str) -> dict:
    hits = sum(c == word for c in calls)
    return {"rate": round(hits / len(calls), 4) if calls else None, "count": hits, "trials": len(calls)}


def analyse_dataset(runs: list[SeedRun], metric: str, n_classes: int, corrupt: float, resamples: int, seed: int) -> dict:
    """A/A and planted-difference verdict rates, and the seed spread, for one dataset's runs."""
    from emotune.seeds import method_verdict, summarize_seeds

    y_true = runs[0].y_true
    weights = row_weights(len(y_true), resamples, seed)
    by_adapter: dict[str, dict[int, SeedRun]] = {}
    for run in runs:
        by_adapter.setdefault(run.adapter, {})[run.seed] = run
    out = {"metric": metric, "test_rows": len(y_true), "adapters": {}}
    resampled = {adapter: {s: weighted_scores(y_true, r.y_pred, weights, metric, n_classes) for s, r in group.items()}
                 for adapter, group in by_adapter.items()}
    broken = {adapter: {s: corrupted(y_true, r.y_pred, corrupt, n_classes, seed + s) for s, r in group.items()}
              for adapter, group in by_adapter.items()}
    broken_resampled = {adapter: {s: weighted_scores(y_true, p, weights, metric, n_classes) for s, p in group.items()}
                        for adapter, group in broken.items()}
    ones = np.ones((1, len(y_true)))
    for adapter, group in by_adapter.items():
        seeds = sorted(group)
        summary = summarize_seeds({s: group[s].official for s in seeds})
        values = {s: group[s].official for s in seeds}
        broken_values = {s: float(weighted_scores(y_true, broken[adapter][s], ones, metric, n_classes)[0]) for s in seeds}
        model_aa = [paired_bootstrap(y_true, group[a].y_pred, group[b].y_pred, metric, n_classes, weights)
                    for a, b in itertools.combinations(seeds, 2)]
        model_planted = [paired_bootstrap(y_true, group[s].y_pred, broken[adapter][s], metric, n_classes, weights)
                         for s in seeds]
        entry = {
            "seeds": seeds, "values": {str(s): round(values[s], 4) for s in seeds},
            "mean": round(summary.mean, 4), "sd": None if summary.sd is None else round(summary.sd, 4),
            "range": round(max(summary.values) - min(summary.values), 4),
            "model_level_aa": {"pairs": len(model_aa), **{w: rate([i.verdict for i in model_aa], w)
                                                          for w in ("better", "worse")},
                               "different": rate(["different" if i.verdict != "within noise" else "same"
                                                  for i in model_aa], "different")},
            "model_level_planted_corruption": {"share": corrupt, "mean_planted_loss": round(float(np.mean(
                [values[s] - broken_values[s] for s in seeds])), 4),
                "detected": rate([i.verdict for i in model_planted], "better")},
            "method_level": {},
        }
        for k in range(2, len(seeds) // 2 + 1):
            splits = arm_splits(seeds, k)
            welch = [method_verdict([values[s] for s in a], [values[s] for s in b]).verdict for a, b in splits]
            hier = [hierarchical_bootstrap(np.array([resampled[adapter][s] for s in a]),
                                           np.array([resampled[adapter][s] for s in b]), seed + i).verdict
                    for i, (a, b) in enumerate(splits)]
            # planted: arm B's runs with `corrupt` of their test predictions broken (disjoint seeds, as in A/A)
            welch_planted = [method_verdict([values[s] for s in a], [broken_values[s] for s in b]).verdict
                             for a, b in splits]
            hier_planted = [hierarchical_bootstrap(np.array([resampled[adapter][s] for s in a]),
                                                   np.array([broken_resampled[adapter][s] for s in b]), seed + i).verdict
                            for i, (a, b) in enumerate(splits)]
            entry["method_level"][f"{k}_vs_{k}"] = {
                "splits": len(splits),
                "aa_false_better": {"welch_t": rate(welch, "better"), "hierarchical_bootstrap": rate(hier, "better")},
                "planted_corruption_detected": {"welch_t": rate(welch_planted, "better"),
                                                "hierarchical_bootstrap": rate(hier_planted, "better")},
            }
        out["adapters"][adapter] = entry
    # head against LoRA (or the first two adapters): the planted difference between methods
    names = sorted(by_adapter, key=lambda a: summarize_seeds({s: r.official for s, r in by_adapter[a].items()}).mean,
                   reverse=True)
    if len(names) >= 2:
        better, worse = names[0], names[-1]
        seeds = sorted(set(by_adapter[better]) & set(by_adapter[worse]))
        planted = {}
        for k in range(2, len(seeds) + 1):
            arms = [(a, b) for a in itertools.combinations(seeds, k) for b in itertools.combinations(seeds, k)]
            calls = [method_verdict([by_adapter[better][s].official for s in a],
                                    [by_adapter[worse][s].official for s in b]).verdict for a, b in arms]
            planted[f"{k}_vs_{k}"] = {"welch_t": rate(calls, "better")}
        one_seed = [paired_bootstrap(y_true, by_adapter[better][s].y_pred, by_adapter[worse][s].y_pred, metric,
                                     n_classes, weights).verdict for s in seeds]
        out["planted_adapter_difference"] = {
            "better": better, "worse": worse, "seeds": seeds,
            "difference_of_means": round(float(np.mean([by_adapter[better][s].official for s in seeds])
                                               - np.mean([by_adapter[worse][s].official for s in seeds])), 4),
            "method_level_detected": planted,
            "model_level_same_seed_detected": rate(one_seed, "better"),
        }
    return out


def pooled(datasets: dict) -> dict:
    """The method-level A/A and planted rates summed over every dataset x adapter, per arm size."""
    out = {}
    for figures in datasets.values():
        for entry in figures["adapters"].values():
            for size, cell in entry["method_level"].items():
                for key in ("aa_false_better", "planted_corruption_detected"):
                    for test, counts in cell[key].items():
                        slot = out.setdefault(size, {}).setdefault(key, {}).setdefault(test, {"count": 0, "trials": 0})
                        slot["count"] += counts["count"]
                        slot["trials"] += counts["trials"]
    for cell in out.values():
        for tests in cell.values():
            for slot in tests.values():
                slot["rate"] = round(slot["count"] / slot["trials"], 4) if slot["trials"] else None
    return out


def pct(cell: dict | None) -> str:
    if not cell or cell.get("trials") in (None, 0):
        return "n/a"
    return f"{100 * cell['count'] / cell['trials']:.0f}% ({cell['count']}/{cell['trials']})"


def markdown_tables(result: dict) -> str:
    """The figures docs/seeds.md quotes, as markdown tables, from the result JSON."""
    out = ["| dataset | adapter | seeds | mean | sd | range | each seed |", "|---|---|---|---|---|---|---|"]
    for dataset, figures in result["datasets"].items():
        for adapter, e in figures["adapters"].items():
            sd = "" if e["sd"] is None else f"{e['sd']:.3f}"
            out.append(f"| {dataset} ({figures['metric']}) | {adapter} | {len(e['seeds'])} | {e['mean']:.3f} | {sd} | "
                       f"{e['range']:.3f} | {', '.join(f'{v:.3f}' for v in e['values'].values())} |")
    out += ["", "| dataset | adapter | model level A/A: seed pairs called different | model level: 5% corrupted "
            "detected | method level A/A 2 vs 2: false better, Welch t | same, hierarchical bootstrap | method "
            "level 2 vs 2: corrupted arm detected, Welch t |", "|---|---|---|---|---|---|---|"]
    for dataset, figures in result["datasets"].items():
        for adapter, e in figures["adapters"].items():
            cell = e["method_level"].get("2_vs_2", {})
            out.append(f"| {dataset} | {adapter} | {pct(e['model_level_aa']['different'])} | "
                       f"{pct(e['model_level_planted_corruption']['detected'])} | "
                       f"{pct(cell.get('aa_false_better', {}).get('welch_t'))} | "
                       f"{pct(cell.get('aa_false_better', {}).get('hierarchical_bootstrap'))} | "
                       f"{pct(cell.get('planted_corruption_detected', {}).get('welch_t'))} |")
    out += ["", "| dataset | planted: better vs worse adapter | difference of means | method level detected "
            "(Welch t), per arm size | model level, same seed |", "|---|---|---|---|---|"]
    for dataset, figures in result["datasets"].items():
        planted = figures.get("planted_adapter_difference")
        if planted:
            sizes = ", ".join(f"{k}: {pct(v['welch_t'])}" for k, v in planted["method_level_detected"].items())
            out.append(f"| {dataset} | {planted['better']} vs {planted['worse']} | {planted['difference_of_means']:+.3f} "
                       f"| {sizes} | {pct(planted['model_level_same_seed_detected'])} |")
    pooled_rows = result.get("method_level_pooled", {})
    if pooled_rows:
        out += ["", "| pooled over datasets x adapters | false better, Welch t | false better, hierarchical bootstrap "
                "| corrupted arm detected, Welch t | same, hierarchical bootstrap |", "|---|---|---|---|---|"]
        for size, cell in pooled_rows.items():
            out.append(f"| {size.replace('_', ' ')} | {pct(cell['aa_false_better'].get('welch_t'))} | "
                       f"{pct(cell['aa_false_better'].get('hierarchical_bootstrap'))} | "
                       f"{pct(cell['planted_corruption_detected'].get('welch_t'))} | "
                       f"{pct(cell['planted_corruption_detected'].get('hierarchical_bootstrap'))} |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Training (one process per run, one thread each)
# ---------------------------------------------------------------------------------------------
def prepare(root: Path, dataset: str, model_name: str, tiny: bool):
    """data/audited + data/tokenized of `dataset` under `root` (the mirror's rows through fetch and clean,
    then the model's tokenizer); --tiny: toy texts and a tiny BERT."""
    from bench.reference_lr import prepare as prepare_real

    if not tiny:
        params, model, _, rows = prepare_real(root, dataset, model_name)
        return params, model, rows
    from emotune import plan as plan_stage
    from emotune import tokenize as tokenize_stage
    from emotune.config import load_params
    from emotune.testing import save_tiny_model

    params = load_params()
    labels = list(params.dataset(dataset).labels)
    folder = Path(root) / "data" / "audited" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": 240, "validation": 80, "test": 200}
    for i, (split, n) in enumerate(sizes.items()):
        common.toy_texts(n, i, labels).to_parquet(folder / f"{split}.parquet", index=False)
    (folder / "meta.json").write_text(json.dumps({"name": dataset, "task": "single_label", "labels": labels,
                                                 "rows": sizes}))
    model_dir = save_tiny_model("bert", Path(root) / "tiny-bert")
    params = dataclasses.replace(params, models=[str(model_dir)])
    model = {"name": "tiny", "kind": "local", "folder": str(model_dir), "files": {}}
    data = Path(root) / "data" / "tokenized" / dataset / "tiny"
    data.mkdir(parents=True, exist_ok=True)
    tokenize_stage.tokenize_dataset(plan_stage.tokenize_plan(params, dataset, model), folder, data)
    return params, model, sizes


@dataclass(frozen=True)
class Job:
    root: str
    dataset: str
    model: dict
    adapter: str
    seed: int
    rows: int | None
    epochs: int | None
    threads: int
    cache: str


def cache_file(cache: str, dataset: str, adapter: str, seed: int, rows: int | None) -> Path:
    return Path(cache) / f"{dataset}-{adapter}-{rows}-{seed}.npz"


def train_one(job: Job) -> None:
    """Train and score one seed's run in this (worker) process; its predictions go to the cache."""
    import torch

    torch.set_num_threads(job.threads)
    from emotune import evaluate as evaluate_stage
    from emotune import plan as plan_stage
    from emotune import train as train_stage
    from emotune.config import load_params
    from emotune.paths import run_paths

    params = dataclasses.replace(load_params(), seed=job.seed)
    matrix = params.matrices()[0]
    changes = {"threads": job.threads, "max_train_examples": job.rows}
    if job.epochs:
        changes["epochs"] = job.epochs
    plan = plan_stage.run_plan(params, dataclasses.replace(matrix, train=dataclasses.replace(matrix.train, **changes)),
                               job.dataset, job.model, job.adapter)
    root = Path(job.root)
    base = run_paths(job.dataset, job.model["name"], job.adapter, root)
    where = root / "seeds" / str(job.seed)
    paths = dataclasses.replace(base, model=where / "model", checkpoints=where / "checkpoints", live=where / "live",
                                metrics=where / "train.json")
    tick = time.perf_counter()
    summary = train_stage.train(plan, paths, device="cpu", log=lambda m: None)["summary"]
    y_true, y_pred, *_ = evaluate_stage.evaluate_classifier(plan, paths.model, paths.data, "tuned", 0, "cpu")
    from emotune.metrics import scores

    official = scores(y_true, y_pred, False, len(plan.dataset.labels))[plan.dataset.official_metric]
    seconds = round(time.perf_counter() - tick, 1)
    target = cache_file(job.cache, job.dataset, job.adapter, job.seed, job.rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target.with_suffix(".tmp.npz"), y_true=y_true, y_pred=y_pred, official=official, seconds=seconds,
             train_examples=summary["train_examples"])
    os.replace(target.with_suffix(".tmp.npz"), target)
    print(f"{job.dataset} {job.adapter} seed {job.seed}: {plan.dataset.official_metric} {official:.4f} "
          f"({seconds} s, {summary['train_examples']} rows)", flush=True)


def load_run(path: Path, dataset: str, adapter: str, seed: int) -> SeedRun:
    data = np.load(path)
    return SeedRun(dataset, adapter, seed, float(data["official"]), data["y_true"], data["y_pred"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="tweet_eval_emotion,emotion")
    parser.add_argument("--adapters", default="head,lora")
    parser.add_argument("--seeds", default="42,43,44,45,46")
    parser.add_argument("--rows", type=int, default=1000, help="training rows (the main matrix's max_train_examples)")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--epochs", type=int, help="default: the main matrix's train.epochs")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each")
    parser.add_argument("--corrupt", type=float, default=0.05, help="share of test predictions broken for (b)")
    parser.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "emotune-seed-calibration"))
    parser.add_argument("--no-train", action="store_true",
                        help="analyse the runs already in --cache only (e.g. after an interrupted run)")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.tiny:
        args.datasets, args.seeds, args.rows, args.epochs, args.jobs = "emotion", "1,2,3,4", None, 2, 1
        args.cache = tempfile.mkdtemp(prefix="seed-calibration-tiny-")
    out_path = common.result_path("seed_calibration", args.tiny, args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    adapters = args.adapters.split(",")
    result = common.header("seed_calibration", args.tiny)
    result.update(model=args.model, adapters=adapters, seeds=seeds, train_rows=args.rows, corrupt_share=args.corrupt,
                  bootstrap_resamples=args.resamples, level=LEVEL, jobs=args.jobs, datasets={}, seed_spread={},
                  run_seconds={})
    from emotune.config import load_params

    registry = load_params()
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            root = Path(tmp) / dataset
            # seed by seed (every adapter of a seed, then the next seed): an interrupted run leaves whole seeds
            jobs = [(adapter, s) for s in seeds for adapter in adapters
                    if not cache_file(args.cache, dataset, adapter, s, args.rows).exists()]
            if jobs and not args.no_train:
                _, model, rows = prepare(root, dataset, args.model, args.tiny)
                result.setdefault("rows", {})[dataset] = rows
                jobs = [Job(str(root / adapter), dataset, model, adapter, s, args.rows, args.epochs, 1, args.cache)
                        for adapter, s in jobs]
            else:
                jobs = []
            for job in {j.root for j in jobs}:  # each adapter trains in its own copy of the tokenized data's root
                (Path(job) / "data").mkdir(parents=True, exist_ok=True)
                link = Path(job) / "data" / "tokenized"
                if not link.exists():
                    link.symlink_to(root / "data" / "tokenized")
            if jobs:
                with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                    list(pool.map(train_one, jobs))
            runs = [load_run(cache_file(args.cache, dataset, a, s, args.rows), dataset, a, s)
                    for a in adapters for s in seeds if cache_file(args.cache, dataset, a, s, args.rows).exists()]
            for run in runs:  # wall seconds of each run's training + scoring, as measured when it ran (cached)
                seconds = float(np.load(cache_file(args.cache, dataset, run.adapter, run.seed, args.rows))["seconds"])
                result["run_seconds"][f"{dataset}/{run.adapter}/{run.seed}"] = seconds
            spec = registry.dataset(dataset)
            figures = analyse_dataset(runs, spec.official_metric, len(spec.labels), args.corrupt, args.resamples,
                                      seeds[0])
            result["datasets"][dataset] = figures
            result["seed_spread"][dataset] = {a: {"sd": e["sd"], "range": e["range"], "mean": e["mean"],
                                                  "seeds": len(e["seeds"]), "model": args.model,
                                                  "train_rows": args.rows} for a, e in figures["adapters"].items()}
            print(json.dumps({dataset: result["seed_spread"][dataset]}), flush=True)
    result["method_level_pooled"] = pooled(result["datasets"])
    result["wall_s"] = round(time.perf_counter() - tick, 1)
    common.write_result(out_path, result)
    print(markdown_tables(result))


if __name__ == "__main__":
    main()
