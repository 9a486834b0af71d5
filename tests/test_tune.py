"""The tune capability (emotune/tune.py): the expected-best estimator of Dodge et al. 2019 on a case worked
by hand and by enumeration; a tiny study end to end (tiny BERT, a few trials, pruning, no test rows, the
retrain reproducing the best trial, a continued study); and in a real DVC project, `-S tune.trials=N`
tunes a run and a second `dvc repro` with more trials continues the study."""
from __future__ import annotations

import itertools
import json
import math

import pandas as pd
import pytest
import yaml
from toy_project import DVC, ran, sh, write_toy_project
from toy_runs import prepare_run

from emotune import testing
from emotune.adapter_table import ADAPTERS
from emotune.config import TuneGroup, parse_params
from emotune.errors import EmotuneError
from emotune.paths import tune_paths
from emotune.plan import RunPlan
from emotune.train import train
from emotune.tune import expected_best, run_study, search_space, write_study


# ---------------------------------------------------------------------------------------------
# Show your work: expected best of n trials
# ---------------------------------------------------------------------------------------------
def test_expected_best_is_the_order_statistics_estimator():
    scores = [0.4, 0.1, 0.3, 0.2, 0.3]
    curve = expected_best(scores, max_trials=4)
    # n = 1: the mean; n = 2 by hand: sorted 0.1 0.2 0.3 0.3 0.4, weights (i/5)^2 - ((i-1)/5)^2 = (2i-1)/25
    assert curve[0].mean == pytest.approx(sum(scores) / 5)
    assert curve[1].mean == pytest.approx((0.1 * 1 + 0.2 * 3 + 0.3 * 5 + 0.3 * 7 + 0.4 * 9) / 25)
    for e in curve:  # every n-tuple drawn with replacement, equally likely: its max's mean and std
        maxima = [max(draw) for draw in itertools.product(scores, repeat=e.trials)]
        mean = sum(maxima) / len(maxima)
        assert e.mean == pytest.approx(mean)
        assert e.std == pytest.approx(math.sqrt(sum((m - mean) ** 2 for m in maxima) / len(maxima)))
    assert [e.trials for e in curve] == [1, 2, 3, 4]
    assert all(a.mean < b.mean for a, b in zip(curve, curve[1:]))
    assert expected_best(scores, 200)[-1].mean == pytest.approx(0.4, abs=1e-6)


def test_pruning_replayed_on_recorded_trials_stops_the_one_below_the_median():
    from bench.tune_adapters import replay_pruning

    trials = [{"minutes": 3.0, "epochs": 3, "value": v[-1], "curve": v}
              for v in ([0.5, 0.55, 0.6], [0.52, 0.6, 0.62], [0.2, 0.25, 0.3], [0.55, 0.6, 0.65])]
    out = replay_pruning(trials, startup_trials=2, tolerance=0.01)
    # the third trial is below the median of the first two at epoch 1; the fourth is above it throughout
    assert out["pruned_trials"] == 1 and out["epochs_pruned"] == 10 and out["epochs_unpruned"] == 12
    assert out["trial_minutes_pruned"] == pytest.approx(10.0) and out["best_val_pruned"] == 0.65
    assert out["minutes_to_target_pruned"] == pytest.approx(10.0) and out["minutes_to_target_unpruned"] == 12.0


def test_the_bench_writes_each_adapter_s_expected_best_curve_side_by_side(tmp_path):
    from bench.tune_adapters import write_curves

    result = {"adapters": {name: {"study": {"expected_best": [
        {"trials": e.trials, "mean": e.mean, "std": e.std} for e in expected_best(scores)]}}
        for name, scores in (("ia3", [0.5, 0.6, 0.7]), ("head", [0.4, 0.45, 0.5]))}}
    frame = pd.read_csv(write_curves(result, tmp_path / "curves.csv"))
    assert list(frame.columns) == ["trials", "ia3", "head"] and list(frame["trials"]) == [1, 2, 3]
    assert frame["ia3"].iloc[0] == pytest.approx(0.6) and frame["head"].iloc[-1] == pytest.approx(
        expected_best([0.4, 0.45, 0.5])[-1].mean, abs=1e-4)


def test_the_bench_report_has_a_row_per_adapter_and_an_expected_best_row_per_trial_count():
    from bench.tune_adapters import replay_pruning, report

    trials = [{"minutes": 2.0, "epochs": 2, "value": v[-1], "curve": v} for v in ([0.5, 0.6], [0.3, 0.4], [0.6, 0.7])]
    study = {"trials": trials, "trial_minutes": 6.0,
             "expected_best": [{"trials": e.trials, "mean": e.mean, "std": e.std}
                               for e in expected_best([t["value"] for t in trials])]}
    run = {"lr": 0.01, "head_lr": 0.01, "epochs": 2, "val": 0.55, "test": 0.52, "test_ci95": {"low": 0.5, "high": 0.54}}
    change = {"difference": 0.0, "ci95": {"low": -0.012, "high": 0.011}, "verdict": "within noise"}
    result = {"command": "python -m bench.tune_adapters", "dataset": "d", "rows": 1000, "trials": 3, "max_epochs": 2,
              "machine": {"cpu_model": "cpu", "cores": 2}, "load_average_at_start": [1.0], "date": "today",
              "adapters": {"ia3": {"default": run, "tuned": {**run, "val": 0.7, "values": {"lr": 0.03, "epochs": 2}},
                                   "tuned_vs_default": change, "study": study,
                                   "pruning": replay_pruning(trials, 1, 0.01)}},
              "ranking": {"default": [{"adapter": "ia3", "test": 0.52, "vs_first": None},
                                      {"adapter": "head", "test": 0.5, "vs_first": {**change, "difference": -0.02}}],
                          "tuned": [{"adapter": "head", "test": 0.53, "vs_first": None},
                                    {"adapter": "ia3", "test": 0.52, "vs_first": change}]}}
    text = report(result)
    assert ("| ia3 | 0.550 / 0.520 [0.500, 0.540] | lr 0.01, head_lr 0.01, 2 epochs | 0.700 / 0.520 [0.500, 0.540] | "
            "lr 0.03, epochs 2 | +0.000 [-0.012, +0.011] within noise | 6.0 |") in text
    assert "| 2 | head 0.500 (-0.020 [-0.012, +0.011], within noise) | ia3 0.520 (+0.000 [-0.012, +0.011], within noise) |" \
        in text
    assert "| ia3 | 1 of 3 | 6 -> 5 |" in text  # the second trial is below the first's epoch-1 score
    assert [line.split(" |")[0] for line in text.splitlines() if line.startswith("| ") and "+-" in line] == \
        ["| 1", "| 2", "| 3"]


def test_trials_report_their_progress_through_the_lr_schedule():
    from emotune.tune import schedule_step

    # a finished 1-epoch trial is compared with the last epoch of 3-epoch ones, not with their first
    assert [schedule_step(e, 1, 3) for e in (1,)] == [3]
    assert [schedule_step(e, 3, 3) for e in (1, 2, 3)] == [1, 2, 3]
    assert [schedule_step(e, 2, 4) for e in (1, 2)] == [2, 4]


def test_every_adapter_declares_a_search_space():
    for name, entry in ADAPTERS.items():
        keys = [dim.key for dim in search_space(name, 3)]
        assert "epochs" in keys and ("lr" in keys or keys[0] == "head_lr"), name
        for dim in entry.search:  # every key is a train: key or one the adapter reads
            assert dim.section == "train" or dim.key in entry.hparams, (name, dim)
    assert {"lr", "r", "alpha", "dropout", "head_lr"} <= {d.key for d in ADAPTERS["lora"].search}


def test_tune_params_are_checked():
    with pytest.raises(EmotuneError, match="tune.trials"):
        toy_params_with_tune(trials=0)
    with pytest.raises(EmotuneError, match="pruner"):
        toy_params_with_tune(pruner="hyperband")


def toy_params_with_tune(**tune):
    raw = {"seed": 7, "datasets": [], "fetch": {}, "clean": {}, "audit": {}, "tune": tune,
           "dataset_registry": {"toy": {"task": "single_label", "labels": ["a", "b"], "official_metric": "accuracy",
                                        "label_column": "label", "files": {"train": "t.csv", "test": "t.csv"}}}}
    return parse_params(raw)


# ---------------------------------------------------------------------------------------------
# A tiny study end to end
# ---------------------------------------------------------------------------------------------
def test_a_tiny_study_prunes_never_sees_test_rows_and_continues(tmp_path):
    model = testing.save_tiny_model("bert", tmp_path / "tiny-bert")
    # lr 1e-2: at IA3's default (4e-2) and above, the random tiny BERT predicts one class in every trial,
    # so every trial scores the same and the pruner has nothing to stop.
    plan, paths = prepare_run(tmp_path, model, "ia3", sizes=(160, 60, 40), epochs=3, lr=1e-2)
    # No test split at all: a study that read one would fail on the missing file.
    (paths.data / "test.parquet").unlink()
    where = tune_paths("toy", "tiny-bert", "ia3", tmp_path)
    cfg = TuneGroup(trials=6, max_epochs=3, pruner="median", startup_trials=2)
    result = run_study(plan, cfg, paths.data, where, device="cpu", log=print)

    # the first trial is the run's own settings (its LR, the head LR, train.epochs)
    assert result.trials[0].values == {"lr": plan.train.lr, "head_lr": plan.train.head_lr, "epochs": plan.train.epochs}
    states = [t.state for t in result.trials]
    assert len(result.trials) == 6 and "PRUNED" in states and "COMPLETE" in states, result.trials
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    assert all(t.epochs <= t.values["epochs"] for t in pruned)
    assert (where.study / "study.db").exists()
    best = max((t for t in result.trials if t.state == "COMPLETE"), key=lambda t: t.value)
    assert result.best.best_trial == best.number and result.best.values == best.values
    assert result.best.trials == 6 and result.best.pruned == len(pruned)

    # The tuned plan holds the best trial's settings; retrained, it is the best trial again (same seed).
    tuned = result.plan
    assert tuned.lr_source == "tune" and tuned.tuned == result.best
    assert tuned.train.lr == best.values["lr"] and tuned.train.epochs == best.values["epochs"]
    assert tuned.train.head_lr == best.values["head_lr"]
    assert RunPlan.from_json(json.loads(json.dumps(tuned.to_json()))) == tuned
    assert "tuned" not in plan.to_json()  # untuned plans keep their bytes
    retrained = train(tuned, paths, device="cpu", log=print)
    assert retrained["summary"]["best_val"] == pytest.approx(best.value, abs=1e-9)
    assert retrained["summary"]["tuned"]["trials"] == 6

    summary = write_study(result, where, tmp_path / "plan.json", None)
    assert summary["best_val"] == best.value and summary["trials"] == 6
    trials = pd.read_csv(where.plots / "trials.csv")
    assert list(trials["trial"]) == list(range(6))
    curve = pd.read_csv(where.plots / "expected_best.csv")
    assert curve["expected_best"].iloc[0] == pytest.approx(trials["value"].mean())
    assert curve["expected_best"].iloc[-1] <= best.value

    # More trials continue the same study: the first six are kept as they were.
    more = run_study(plan, TuneGroup(trials=8, max_epochs=3, pruner="median", startup_trials=2), paths.data,
                     where, device="cpu", log=print)
    assert more.name == result.name and len(more.trials) == 8
    assert more.trials[:6] == result.trials
    assert len({json.dumps(t.values, sort_keys=True) for t in more.trials}) == 8  # no replayed start-up points


# ---------------------------------------------------------------------------------------------
# In a real DVC project
# ---------------------------------------------------------------------------------------------
def test_dvc_tunes_a_run_and_a_second_repro_continues_the_study(tmp_path):
    root = write_toy_project(tmp_path / "project", adapters=("lora",), epochs=1)
    out = sh(root, DVC, "exp", "run", "-S", "tune.datasets=[toy]", "-S", "tune.models=[tiny-bert]",
             "-S", "tune.adapters=[ia3]", "-S", "tune.trials=3", "-S", "tune.max_epochs=2", timeout=1200)
    assert {"tune@toy-tiny-bert-ia3", "train_tuned@toy-tiny-bert-ia3", "evaluate_tuned@toy-tiny-bert-ia3",
            "train@toy-tiny-bert-lora"} <= ran(out), out
    first = json.loads((root / "metrics/tune/toy/tiny-bert/ia3.json").read_text())
    assert first["trials"] == 3
    plan = json.loads((root / "data/plans_tuned/toy/tiny-bert/ia3.json").read_text())
    assert plan["lr_source"] == "tune" and plan["train"]["lr"] == first["values"]["lr"]
    card = json.loads((root / "models/toy/tiny-bert/ia3/run.json").read_text())
    assert card["plan"]["tuned"]["trials"] == 3
    board = json.loads((root / "metrics/leaderboard.json").read_text())["rows"]
    assert next(r for r in board if r["adapter"] == "ia3")["tuned"]["trials"] == 3
    assert "(tuned: 3 trials, " in (root / "metrics/leaderboard.md").read_text()  # after ia3 (and a collapse mark)
    before = pd.read_csv(root / "metrics/tune/toy/tiny-bert/ia3/trials.csv")

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tune"]["trials"] = 5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(root, DVC, "repro", timeout=1200)
    assert "tune@toy-tiny-bert-ia3" in ran(out) and "train@toy-tiny-bert-lora" not in ran(out), out
    after = pd.read_csv(root / "metrics/tune/toy/tiny-bert/ia3/trials.csv")
    assert len(after) == 5 and after.iloc[:3].equals(before)
    assert json.loads((root / "metrics/tune/toy/tiny-bert/ia3.json").read_text())["study"] == first["study"]


def test_the_bench_ranks_adapters_by_test_and_pairs_each_with_the_first():
    """bench/tune_adapters.py `ranking`: the order by test score, each adapter against the first on the same
    rows (paired bootstrap): a run that is wrong on 100 more of 1,000 rows is `worse`, one row apart is noise."""
    import numpy as np
    from bench.tune_adapters import TestedRun, ranking
    from emotune import stats

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 1000)

    def run(wrong: int) -> TestedRun:
        pred = gold.copy()
        pred[:wrong] = (pred[:wrong] + 1) % 3
        predictions = stats.predictions(np.arange(1000), gold, pred, 3, False)
        return TestedRun({"test": stats.point_estimates(predictions)["accuracy"]}, predictions)

    tested = {"head": {"default": run(300)}, "lora": {"default": run(200)}, "ia3": {"default": run(201)}}
    order = ranking(tested, "default", "accuracy")
    assert [r["adapter"] for r in order] == ["lora", "ia3", "head"] and order[0]["vs_first"] is None
    assert order[1]["vs_first"]["verdict"] == "within noise" and order[1]["vs_first"]["difference"] == -0.001
    assert order[2]["vs_first"]["verdict"] == "worse" and order[2]["vs_first"]["ci95"]["high"] < 0
