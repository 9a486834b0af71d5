"""Seeds as an axis (params `seeds`, docs/seeds.md): validation, the extra seeds' plans and paths, the
method-level verdict over seeds on constructed cases, and in a real DVC project: adding a seed reruns only
that seed's train/evaluate (and the aggregate), the leaderboard shows every seed, and the default
`dvc exp show` leads with metrics/summary.json."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from toy_project import DVC, dvc_env, ran, sh, skipped

from emotune import plan as plan_stage
from emotune.config import parse_params
from emotune.errors import EmotuneError
from emotune.paths import eval_paths, run_paths
from emotune.seeds import ONE_SEED, known_spread, method_verdict, summarize_seeds

ROOT = Path(__file__).resolve().parent.parent  # the checkout


def shipped(**changes) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw.update(changes)
    return raw


# ---------------------------------------------------------------------------------------------
# params and plans
# ---------------------------------------------------------------------------------------------
def test_the_default_is_one_seed():
    params = parse_params(shipped())
    assert params.seeds == [] and params.seed_runs() == []


@pytest.mark.parametrize("seeds, message", [
    ([7, 42], r"seeds\[1\] = 42 is `seed`, the primary seed.*set seeds to \[7\]"),
    ([7, 7], r"seeds: lists \[7, 7\] with a repeat"),
    ([-1], r"seeds\[0\]: -1 is not a seed"),
    (["a"], r"seeds\[0\]: expected int, got 'a'"),
])
def test_seed_mistakes_are_named(seeds, message):
    with pytest.raises(EmotuneError, match=message):
        parse_params(shipped(seeds=seeds))


def test_an_extra_seed_adds_plans_and_leaves_the_others_byte_for_byte():
    one = {p: plan.to_json() for p, plan in plan_stage.make_plans(parse_params(shipped(reference={}))).items()}
    two = {p: plan.to_json() for p, plan in plan_stage.make_plans(parse_params(shipped(reference={}, seeds=[7]))).items()}
    assert {p: v for p, v in two.items() if p in one} == one, "the primary seed's plans do not change"
    added = sorted(set(two) - set(one))
    runs = parse_params(shipped()).matrices()[0].runs()
    assert added == sorted(Path("seeds/7", d, m, f"{a}.json") for d, m, a in runs), "one plan per main-matrix run"
    lora, lora7 = one[Path("emotion/minilm/lora.json")], two[Path("seeds/7/emotion/minilm/lora.json")]
    assert lora7["seed"] == 7 and {**lora7, "seed": lora["seed"]} == lora, "only the seed differs"
    assert not any("tokenize" in p.name for p in added), "tokenization does not depend on the seed"


def test_extra_seed_paths_keep_the_primary_layout():
    root = Path("/project")
    assert run_paths("emotion", "minilm", "lora", root).model == root / "models/emotion/minilm/lora"
    seeded = run_paths("emotion", "minilm", "lora", root, seed=7)
    assert seeded.model == root / "models/seeds/7/emotion/minilm/lora"
    assert seeded.plan == root / "data/plans/seeds/7/emotion/minilm/lora.json"
    assert seeded.metrics == root / "metrics/train/seeds/7/emotion/minilm/lora.json"
    assert seeded.data == run_paths("emotion", "minilm", "lora", root).data, "one tokenization for every seed"
    assert eval_paths("emotion", "minilm", "lora", root, 7)[0] == root / "metrics/eval/seeds/7/emotion/minilm/lora.json"


# ---------------------------------------------------------------------------------------------
# The method-level verdict on constructed cases
# ---------------------------------------------------------------------------------------------
def test_method_verdict_known_answers():
    assert method_verdict([0.7], [0.6]).verdict == ONE_SEED
    assert method_verdict([0.70, 0.71, 0.72], [0.70, 0.71, 0.72]).verdict == "within noise"
    far = method_verdict([0.70, 0.71, 0.72], [0.60, 0.61, 0.62])
    assert far.verdict == "better" and far.low < 0.1 < far.high and far.p_value < 0.01
    assert method_verdict([0.60, 0.61, 0.62], [0.70, 0.71, 0.72]).verdict == "worse"
    # 2 points apart with seeds that move runs by 3 points: the seeds cannot tell
    assert method_verdict([0.70, 0.74, 0.67], [0.69, 0.72, 0.65]).verdict == "within noise"
    summary = summarize_seeds({42: 0.7, 7: 0.8})
    assert summary.seeds == [42, 7] and summary.mean == pytest.approx(0.75) and summary.sd == pytest.approx(0.0707, abs=1e-4)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_method_verdict_false_better_rate_is_at_most_5_percent(k):
    """A/A on simulated seeds (one method, normal seed noise of sd 0.03): arm A called better in at most 2.5% of
    4,000 trials (two-sided 5% test), within binomial noise; and a 3-sd difference is found at 5 seeds."""
    rng = np.random.default_rng(k)
    calls = [method_verdict(rng.normal(0.7, 0.03, k), rng.normal(0.7, 0.03, k)).verdict for _ in range(4000)]
    assert calls.count("better") / len(calls) < 0.025 + 3 * np.sqrt(0.025 * 0.975 / 4000)
    if k == 5:
        found = [method_verdict(rng.normal(0.79, 0.03, k), rng.normal(0.7, 0.03, k)).verdict for _ in range(500)]
        assert found.count("better") / len(found) > 0.9


def test_known_spread_prefers_the_dataset_then_the_largest_of_the_adapter():
    spread = {"emotion": {"lora": {"sd": 0.02, "seeds": 5}}, "tweet": {"lora": {"sd": 0.04, "seeds": 5},
                                                                   "head": {"sd": 0.01, "seeds": 5}}}
    assert known_spread(spread, "emotion", "lora").sd == 0.02
    fallback = known_spread(spread, "semeval", "lora")
    assert fallback.sd == 0.04 and "tweet" in fallback.measured_on
    assert known_spread(spread, "emotion", "ia3") is None


# ---------------------------------------------------------------------------------------------
# In a real DVC project
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def seeded_project(toy_project, tmp_path) -> Path:
    """A copy of the reproduced toy project (lora, ia3; one seed), so the experiments here leave the shared one
    as it was."""
    root = tmp_path / "project"
    shutil.copytree(toy_project, root, symlinks=True)
    return root


def stdout(root: Path, *command: str) -> str:
    """A command's standard output alone (DVC prints notes on stderr), failing on a non-zero exit."""
    result = subprocess.run(command, cwd=root, env=dvc_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def exp_show_columns(root: Path) -> tuple[list[str], set[str]]:
    """The default `dvc exp show`: its CSV header, and the metrics files of the workspace row (--json)."""
    header = next(csv.reader(io.StringIO(sh(root, DVC, "exp", "show", "--csv", "--no-pager"))))
    shown = json.loads(stdout(root, DVC, "exp", "show", "--json", "--no-pager"))
    return header, set(shown[0]["data"]["metrics"])


def test_adding_a_seed_reruns_only_that_seed(seeded_project):
    root = seeded_project
    out = sh(root, DVC, "exp", "run", "-S", "seeds=[7]")
    seed7 = {f"{stage}@toy-tiny-bert-{a}-7" for stage in ("train_seeds", "evaluate_seeds") for a in ("lora", "ia3")}
    assert ran(out) == {"plan", "aggregate"} | seed7, out
    assert {"tokenize@toy-tiny-bert", "train@toy-tiny-bert-lora", "evaluate@toy-tiny-bert-ia3"} <= skipped(out)
    assert (root / "models/seeds/7/toy/tiny-bert/lora/run.json").exists()
    assert json.loads((root / "data/plans/seeds/7/toy/tiny-bert/lora.json").read_text())["seed"] == 7

    out = sh(root, DVC, "exp", "run", "-S", "seeds=[7,8]")
    seed8 = {s.replace("-7", "-8") for s in seed7}
    assert ran(out) == {"plan", "aggregate"} | seed8, out
    assert seed7 <= skipped(out), "seed 7's runs stay as they were"

    board = json.loads((root / "metrics/leaderboard.json").read_text())["rows"]
    runs = {r["adapter"]: r for r in board if r["kind"] == "run"}
    for adapter, row in runs.items():
        card = json.loads((root / f"models/seeds/8/toy/tiny-bert/{adapter}/run.json").read_text())
        assert card["plan"]["seed"] == 8
        evaluated = json.loads((root / f"metrics/eval/seeds/8/toy/tiny-bert/{adapter}.json").read_text())
        assert list(row["seeds"]) == ["42", "7", "8"] and row["seeds"]["8"] == evaluated["official"]
        assert row["seed_mean"] == pytest.approx(np.mean(list(row["seeds"].values())), abs=1e-4)
        assert row["method_vs_best"] in ("best", "better", "worse", "within noise")
    assert sum(r["method_vs_best"] == "best" for r in runs.values()) == 1
    summary = json.loads((root / "metrics/summary.json").read_text())
    assert summary["toy"]["tiny-bert/lora"]["seeds"] == 3
    assert "# Seeds" in (root / "metrics/leaderboard.md").read_text()

    # `dvc exp show` leads with the summary: its only metrics file, the official metric of every row first
    header, metric_files = exp_show_columns(root)
    assert metric_files == {"metrics/summary.json"}, metric_files
    columns = {f"toy.{name}.{key}" for name, entry in summary["toy"].items() for key in entry}
    assert set(header[5:5 + len(columns)]) == columns, header[:20]  # right after Experiment, rev, typ, Created, parent
    assert {f"toy.{r['model']}/{r['adapter']}.{r['official_metric']}" for r in board} <= columns
    # every detailed report stays reachable, as a file DVC shows when asked, not as columns
    detail = stdout(root, DVC, "metrics", "show", "--json", "metrics/eval/toy/tiny-bert/lora.json")
    detail_columns = len(json.loads(detail)[""]["data"]["metrics/eval/toy/tiny-bert/lora.json"]["data"])
    assert detail_columns > 10 and not any(c.startswith("metrics/eval/") or ".per_class." in c or ":test." in c for c in header)


# ---------------------------------------------------------------------------------------------
# The calibration bench's statistics on constructed predictions (bench/seed_calibration.py)
# ---------------------------------------------------------------------------------------------
def constructed_runs(rng, accuracy: float, adapter: str, seeds, y_true, n_classes: int):
    """Runs that are right on each row with probability `accuracy`, wrong (another label) otherwise, each seed
    with its own errors: one configuration, independent seeds."""
    from bench.seed_calibration import SeedRun

    runs = []
    for seed in seeds:
        right = rng.random(len(y_true)) < accuracy
        y_pred = np.where(right, y_true, (y_true + rng.integers(1, n_classes, len(y_true))) % n_classes)
        runs.append(SeedRun("toy", adapter, seed, float((y_pred == y_true).mean()), y_true, y_pred))
    return runs


def test_bench_statistics_on_known_cases():
    from bench.seed_calibration import analyse_dataset, paired_bootstrap, row_weights, weighted_scores

    rng = np.random.default_rng(0)
    n_classes, seeds = 4, [1, 2, 3, 4, 5]
    y_true = rng.integers(0, n_classes, 2000)
    good = constructed_runs(rng, 0.8, "lora", seeds, y_true, n_classes)
    bad = constructed_runs(rng, 0.6, "head", seeds, y_true, n_classes)
    weights = row_weights(len(y_true), 1000, 0)
    # identical predictions: difference 0, within noise; 10 points better on 2,000 rows: better
    same = paired_bootstrap(y_true, good[0].y_pred, good[0].y_pred, "accuracy", n_classes, weights)
    assert (same.difference, same.low, same.high, same.verdict) == (0, 0, 0, "within noise")
    assert paired_bootstrap(y_true, good[0].y_pred, bad[0].y_pred, "accuracy", n_classes, weights).verdict == "better"
    # the weighted scores agree with scikit-learn on the plain (all ones) weights
    from sklearn.metrics import f1_score

    ones = np.ones((1, len(y_true)))
    assert weighted_scores(y_true, bad[0].y_pred, ones, "macro_f1", n_classes)[0] == \
        pytest.approx(f1_score(y_true, bad[0].y_pred, average="macro"))

    figures = analyse_dataset(good + bad, "accuracy", n_classes, corrupt=0.1, resamples=500, seed=0)
    lora = figures["adapters"]["lora"]
    assert lora["seeds"] == seeds and lora["sd"] < 0.02  # binomial noise only: sqrt(.8 * .2 / 2000) = 0.009
    assert lora["model_level_aa"]["different"]["trials"] == 10 and lora["model_level_aa"]["different"]["rate"] <= 0.3
    assert lora["model_level_planted_corruption"]["detected"]["rate"] == 1.0  # about 8 points on 2,000 rows
    aa = lora["method_level"]["2_vs_2"]
    assert aa["splits"] == 30 and aa["aa_false_better"]["welch_t"]["rate"] <= 0.1
    # 8 points against a seed sd of 0.009, two seeds a side (Welch's t has about 2 degrees of freedom): mostly found
    assert aa["planted_corruption_detected"]["welch_t"]["rate"] >= 0.5
    assert aa["planted_corruption_detected"]["hierarchical_bootstrap"]["rate"] >= 0.5
    planted = figures["planted_adapter_difference"]
    assert (planted["better"], planted["worse"]) == ("lora", "head")
    assert planted["method_level_detected"]["2_vs_2"]["welch_t"]["rate"] == 1.0
    assert planted["difference_of_means"] == pytest.approx(0.2, abs=0.02)


def test_the_best_variant_is_one_the_seeds_multiply(monkeypatch, tmp_path):
    """The all-rows reference run (one seed) is best on every dataset; against it every variant would be
    "cannot tell (one seed)" however many seeds the main matrix has. The verdicts compare the seeded runs."""
    from emotune import aggregate

    seeds = {"full": [0.932], "lora": [0.79, 0.80, 0.78], "head": [0.54, 0.55, 0.53]}
    monkeypatch.setattr(aggregate, "seed_values",
                        lambda row, params, root: dict(enumerate(seeds[row["adapter"]])))
    rows = [{"dataset": "emotion", "model": "minilm", "adapter": a, "kind": "run"} for a in seeds]
    aggregate.add_seed_verdicts(rows, parse_params(yaml.safe_load((ROOT / "params.yaml").read_text())), tmp_path)
    verdicts = {r["adapter"]: r["method_vs_best"] for r in rows}
    assert verdicts == {"full": ONE_SEED, "lora": "best", "head": "worse"}, verdicts
