"""Every benchmark runs once in its tiny configuration, so the scripts cannot rot; the performance ones write
their JSON to a temporary path and the tests check what it says (both arms ran, ratios come from the
measured numbers), never how fast this machine is."""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parent.parent  # the checkout


def run_bench(module: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_audit_model_choice_tiny(mirror):
    out = run_bench("bench.audit_model_choice", "--tiny")
    for model in ("tfidf", "embeddings", "both"):
        assert f" {model} " in out
    assert "mean AUROC:" in out


def test_data_scale_tiny(mirror):
    """fetch + clean + audit as stage processes on a derived user dataset; the audit must find the
    planted flips far better than chance (AUROC 0.5, precision 0.08): measured 0.89 and 0.30."""
    out = run_bench("bench.data_scale", "--tiny")
    assert "fetch: " in out and "clean: " in out and "audit: " in out
    recovery = ast.literal_eval(out.strip().splitlines()[-1].split("recovery ", 1)[1])  # the printed dict
    assert recovery["auroc"] > 0.75 and recovery["precision"] > 0.15, recovery


# ---------------------------------------------------------------------------------------------
# Performance benchmarks (docs/performance.md): each runs its --tiny configuration, writing its JSON to a
# temporary path; the tests check what the JSON says, not how fast this machine is.
# ---------------------------------------------------------------------------------------------
MACHINE_KEYS = {"cpu_model", "cores", "torch_threads", "platform", "gpu", "versions"}


def bench_json(module: str, tmp_path, *args: str) -> dict:
    out = tmp_path / f"{module.rsplit('.', 1)[1]}.json"
    printed = run_bench(module, "--tiny", "--out", str(out), *args)
    assert f"wrote {out}" in printed
    result = json.loads(out.read_text())
    assert result["tiny"] is True and "--tiny" in result["command"]
    assert result["command"].startswith(f"python -m {module}")
    assert MACHINE_KEYS <= set(result["machine"]) and result["machine"]["versions"]["torch"]
    assert result["date"] and result["datetime_utc"].startswith(result["date"])
    return result


def test_train_vs_notebook_tiny(tmp_path):
    # a seed other than params.yaml's: the rows of a pair must follow the pair's seed in every arm
    result = bench_json("bench.train_vs_notebook", tmp_path, "--seeds", "7")
    runs = result["runs"]
    assert [r["arm"] for r in runs] == ["emotune", "peer", "notebook"], "all three arms ran, alternating"
    assert [r["seed"] for r in runs] == [7, 7, 7]
    emotune, peer, notebook = runs
    # the same rows, the same model and adapter (same number of trainable weights), the same test split
    assert emotune["train_rows"] == peer["train_rows"] == notebook["train_rows"] == result["setup"]["train_rows"] == 64
    assert emotune["train_ids_sha256"] == peer["train_ids_sha256"] == notebook["train_ids_sha256"]
    assert emotune["real_tokens_per_epoch"] == peer["real_tokens_per_epoch"] == notebook["real_tokens_per_epoch"] > 0
    assert emotune["trainable_params"] == peer["trainable_params"] == notebook["trainable_params"]
    assert emotune["test_rows"] == peer["test_rows"] == notebook["test_rows"] > 0
    # the notebook pads every row to 128; emotune and the peer pad each length-grouped batch to its longest row
    assert notebook["padded_tokens_per_epoch"] == notebook["train_rows"] * 128
    assert notebook["pad_fraction"] > 0.5 > peer["pad_fraction"] >= 0 and 0.5 > emotune["pad_fraction"] >= 0
    # the peer's optimizer: fused AdamW over emotune's groups (the head at the plan's head_lr)
    assert peer["optim"] == f"AdamW(fused=True), head lr {result['setup']['head_lr']}"
    for run in runs:
        assert run["examples_per_s"] > 0 and run["tokens_per_s"] > 0 and run["peak_rss_mb"] > 100
        assert 0 <= run["test_accuracy"] <= 1
        assert math.isclose(run["tokens_per_s"] / run["examples_per_s"],
                            run["real_tokens_per_epoch"] / run["train_rows"], rel_tol=0.02)
    # ratios come from the measured numbers
    arms = result["arms"]
    for key, other in (("ratios", "notebook"), ("ratios_vs_peer", "peer")):
        ratios = result[key]
        assert ratios["examples_per_s"] == round(arms["emotune"]["examples_per_s"] / arms[other]["examples_per_s"], 2)
        assert ratios["peak_rss"] == round(arms["emotune"]["peak_rss_mb"] / arms[other]["peak_rss_mb"], 2)
        assert ratios["test_accuracy_difference_points"] == pytest.approx(
            100 * (arms["emotune"]["test_accuracy"] - arms[other]["test_accuracy"]), abs=0.01)
    assert arms["emotune"]["examples_per_s"] == pytest.approx(emotune["examples_per_s"], abs=0.1)
    assert result["target"]["peer_speed_met"] == (result["ratios_vs_peer"]["examples_per_s"] >= 1.0)
    # the profile measured both batch shapes, and the step's FLOP/s against the machine's matmul peak
    profile = result["profile"]
    assert profile["notebook"]["pad_fraction"] > profile["emotune"]["pad_fraction"]
    assert profile["notebook"]["gflops_per_real_token"] > profile["emotune"]["gflops_per_real_token"] > 0
    for dtype in ("float32", "bfloat16"):
        peak = profile["matmul_peak"][dtype]
        assert peak["gflops_per_s"] == max(peak["each_shape"].values()) > 0
        assert profile["emotune"]["achieved_gflops_per_s"] > 0
        assert profile["emotune"][f"fraction_of_{dtype}_matmul_peak"] == round(
            profile["emotune"]["achieved_gflops_per_s"] / peak["gflops_per_s"], 4)
    from bench import report

    table = "\n".join(report.train_vs_notebook(result))
    assert f"**{result['ratios_vs_peer']['examples_per_s']}x**" in table and "peer" in table  # the docs/performance.md table


@pytest.mark.parametrize("adapter", ["head", "ia3", "qlora"])
def test_train_vs_notebook_other_adapters_train_the_same_model(adapter, tmp_path):
    # every arm builds the adapter emotune's run trains: the head alone, IA3's vectors, or LoRA on a 4-bit
    # body; a peer that trained more or fewer weights than emotune would not be a fair peer
    result = bench_json("bench.train_vs_notebook", tmp_path, "--adapter", adapter, "--arms", "emotune,peer",
                        "--profile-steps", "0")
    emotune, peer = result["runs"]
    assert result["setup"]["adapter"] == adapter and "--adapter" in result["command"]
    assert emotune["trainable_params"] == peer["trainable_params"] > 0
    assert emotune["train_ids_sha256"] == peer["train_ids_sha256"]
    assert result["ratios_vs_peer"]["examples_per_s"] > 0
    for run in (emotune, peer):  # head-only trains the tiny model in < 0.05 s: no division by a rounded 0.0
        assert run["padded_tokens_per_s"] >= run["tokens_per_s"] > 0, run
    from bench import report

    row = report.train_vs_peer([result])[2]  # docs/performance.md's per-adapter table
    assert row.startswith(f"| {adapter} |") and f"**{result['ratios_vs_peer']['examples_per_s']}x**" in row


def test_train_vs_notebook_names_and_head_parameters():
    from bench import train_vs_notebook as tvn

    # the per-adapter fair-peer JSON is the one bench/report.py tabulates
    assert tvn.default_result_name("ia3", ["emotune", "peer"]) == "train_vs_peer_ia3"
    assert tvn.default_result_name("lora", list(tvn.ARMS)) == "train_vs_notebook"
    assert tvn.default_result_name("ia3", list(tvn.ARMS)) == "train_vs_notebook_ia3"
    heads = ("pooler", "classifier")
    assert tvn.in_head("bert.pooler.dense.weight", heads) and tvn.in_head("classifier.bias", heads)
    assert not tvn.in_head("bert.encoder.layer.0.attention.self.query.weight", heads)
    assert not tvn.in_head("bert.poolerx.dense.weight", heads)  # a name that merely starts like a head


def test_inference_tiny(tmp_path):
    result = bench_json("bench.inference", tmp_path)
    variants = result["variants"]
    assert set(variants) == {"full", "head", "lora", "lora_merged", "ia3", "qlora"}
    for name, v in variants.items():
        assert v["batched_examples_per_s"] > 0, name
        assert 0 < v["single_p50_ms"] <= v["single_p95_ms"], name
        assert len(v["batched_examples_per_s_each_pass"]) == result["setup"]["passes"]
    merged, lora = variants["lora_merged"], variants["lora"]
    assert merged["merged"] and merged["same_predictions_as_unmerged"]
    assert 0 < merged["max_abs_logit_diff_vs_unmerged"] < 1e-4  # B was randomised: the merge did something
    assert result["ratios"]["merged_over_lora_batched"] == round(
        merged["batched_examples_per_s"] / lora["batched_examples_per_s"], 2)
    assert variants["qlora"]["weights_mb"] < variants["full"]["weights_mb"]
    assert lora["params"]["trainable"] < lora["params"]["total"]
    assert "| lora merged |" in "\n".join(report.inference(result))


def test_inference_onnx_arms_tiny(tmp_path):
    result = bench_json("bench.inference", tmp_path, "--onnx")
    arms, metric = result["arms"], result["setup"]["official_metric"]
    assert list(arms) == ["pytorch_fp32", "onnx_fp32", "onnx_int8"]
    for name, arm in arms.items():
        assert len(arm["batched_examples_per_s_each_pass"]) == result["setup"]["passes"] == 2, name
        assert 0 < arm["single_p50_ms"] <= arm["single_p95_ms"] and 0 <= arm[metric] <= 1, name
    # each arm's metric is its own predictions' on the whole test split: the export's check saw the same
    for name in ("onnx_fp32", "onnx_int8"):
        check = arms[name]["export_check"]
        assert check["rows"] == result["setup"]["test_texts"]
        assert check["export_metric"] == pytest.approx(arms[name][metric], abs=1e-4)  # (rounded to 4 places)
        assert check["run_metric"] == pytest.approx(arms["pytorch_fp32"][metric], abs=1e-4)
    assert arms["onnx_fp32"]["agreement_with_pytorch"] == 1.0
    assert arms["onnx_int8"]["model_mb"] < arms["onnx_fp32"]["model_mb"]
    assert result["ratios"]["onnx_int8_over_pytorch_batched"] == round(
        arms["onnx_int8"]["batched_examples_per_s"] / arms["pytorch_fp32"]["batched_examples_per_s"], 2)
    assert set(result["targets_met"]) == {"int8_batched_at_least_2.5x", "int8_single_p50_at_most_10_ms",
                                          "int8_metric_within_0.5_point"}


def test_zero_shot_prefix_tiny(tmp_path):
    result = bench_json("bench.zero_shot_prefix", tmp_path)
    assert result["identical_predictions"] is True and result["max_abs_score_diff"] < 1e-5
    arms = result["arms"]
    assert result["speedup"] == round(arms["shared_prompt"]["texts_per_s"] / arms["per_label"]["texts_per_s"], 2)


def test_serve_load_tiny(tmp_path):
    result = bench_json("bench.serve_load", tmp_path)
    assert result["failed_requests"] == 0 and result["server_alive_after"] is True
    assert result["setup"]["requests"] == 300 and result["setup"]["host"] == "127.0.0.1"
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]


def test_gpu_train_tiny_runs_the_gpu_code_path_on_the_cpu(tmp_path):
    result = bench_json("bench.gpu_train", tmp_path)
    assert result["skipped"] is False
    runs = {(r["adapter"], r["recipe"]): r for r in result["runs"]}
    assert set(runs) == {("full", "emotune"), ("lora", "emotune"), ("qlora", "emotune"), ("lora", "notebook"),
                         ("qlora", "notebook")}
    peak = result["setup"]["peak_tflops"] * 1e12
    for (adapter, recipe), run in runs.items():
        assert run["tokens_per_s"] > 0 and run["peak_memory_mb"] > 0 and math.isfinite(run["final_loss"])
        assert run["flops_per_token"] == (6 if adapter == "full" else 4) * run["params_non_embedding"]
        assert run["mfu"] == pytest.approx(run["tokens_per_s"] * run["flops_per_token"] / peak, rel=1e-3)
    assert runs[("qlora", "emotune")]["quantized_linears"] == runs[("qlora", "emotune")]["lora_layers_on_4bit"] > 0
    assert runs[("full", "emotune")]["trainable"] > runs[("lora", "emotune")]["trainable"]
    assert runs[("lora", "notebook")]["pad_fraction"] > runs[("lora", "emotune")]["pad_fraction"]
    key = "emotune_over_notebook_tokens_per_s/tiny-llama/lora"
    assert result["targets"][key] == round(runs[("lora", "emotune")]["tokens_per_s"]
                                           / runs[("lora", "notebook")]["tokens_per_s"], 2)
    assert {"qlora_over_lora_peak_memory_large", "lora_mfu_small"} <= set(result["targets"])
    assert "| tiny-llama | qlora | emotune |" in "\n".join(report.gpu_train(result))


def test_gpu_train_skips_cleanly_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real benchmark would run")
    out = tmp_path / "gpu.json"
    printed = run_bench("bench.gpu_train", "--out", str(out))
    result = json.loads(out.read_text())
    assert "skipped" in printed and result["skipped"] is True and result["runs"] == []
    assert "no CUDA GPU" in result["reason"] and result["machine"]["gpu"] is None
    assert "not measured" in report.gpu_train(result)[0]


def test_pipeline_overhead_tiny(tmp_path):
    result = bench_json("bench.pipeline_overhead", tmp_path)
    assert {"plan", "train@emotion_slice-tiny-bert-lora", "train@emotion_slice-tiny-bert-ia3"} \
        <= set(result["first_repro"]["ran"])
    noop = result["noop_repro"]
    assert not noop["any_stage_ran"] and all(r["ran"] == [] and r["skipped"] >= 7 for r in noop["runs"])
    exp = result["exp_run"]
    assert exp["ran"] == exp["expected_to_run"] == ["aggregate", "evaluate@emotion_slice-tiny-bert-lora", "plan",
                                                    "train@emotion_slice-tiny-bert-lora"]
    assert exp["only_expected_ran"] and "train@emotion_slice-tiny-bert-ia3" in exp["skipped"]
    assert exp["per_run"]["lora"]["trainable_after"] > exp["per_run"]["lora"]["trainable_before"]  # r 4 -> 64
    assert 0 < exp["train_steps_s"] <= exp["train_function_s"] <= exp["seconds"]
    assert exp["outside_training_s"] == pytest.approx(exp["seconds"] - exp["train_steps_s"], abs=0.11)
    assert "| `dvc repro` (nothing changed) |" in "\n".join(report.pipeline_overhead(result))


@pytest.mark.parametrize("name", ["reference_lr", "cpu_bf16", "generative_sft", "multilabel", "tune_adapters",
                                  "seeds_main_matrix", "reference_models", "adapter_default"])
def test_measurement_benches_import_and_parse_their_arguments(name):
    """These benches train real models on the mirror for minutes (their figures are in metrics/bench/);
    here they must at least import and take their command line."""
    import importlib

    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0


def test_pipeline_run_times_each_stage_group_from_a_stamped_log(tmp_path):
    """bench/pipeline_run.py on a made-up stamped `make run` log crossing midnight: a stage lasts until the
    next one starts, groups are dvc.yaml names (the explain pipeline's `explain/dvc.yaml:` prefix dropped)."""
    log = tmp_path / "run.log"
    log.write_text("\n".join([
        "23:58:00 python3 -m venv .venv", "23:59:00 Running stage 'fetch@emotion':",
        "23:59:30 > python -m stages.fetch",
        "23:59:40 Running stage 'train@emotion-minilm-lora':", "00:09:40 Running stage 'train@emotion-minilm-ia3':",
        "00:14:39 Stage 'baseline@emotion' didn't change, skipping",
        "00:14:40 Running stage 'explain/dvc.yaml:explain@emotion-minilm-ia3':",
        "00:15:40 Updating lock file 'dvc.lock'",
        "not stamped"]) + "\n")
    load = tmp_path / "load.log"
    load.write_text("00:00:00 2.00 1.0 1.0 1/80 9\n00:10:00 3.00 1.0 1.0 1/80 9\n")
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, "-m", "bench.pipeline_run", "--log", str(log), "--load-log", str(load),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())["logs"][0]
    assert result["before_first_stage_min"] == 1.0 and result["wall_min"] == 17.7 and result["stages"] == 4
    by_group = {g["group"]: g for g in result["groups"]}
    assert by_group["fetch"]["busy_s"] == 40
    assert by_group["train"]["stages"] == 2 and by_group["train"]["busy_s"] == 900
    assert by_group["train"]["load_1min_mean"] == 2.5 and by_group["explain"]["busy_s"] == 60
    assert result["skipped_unchanged"] == {"baseline": 1} and "baseline" not in by_group
    empty = tmp_path / "empty.log"
    empty.write_text("12:00:00 nothing ran\n")
    done = subprocess.run([sys.executable, "-m", "bench.pipeline_run", "--log", str(empty), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "Running stage" in done.stderr


def test_seed_calibration_tiny(tmp_path):
    """Tiny BERT, toy texts, 4 seeds of head and LoRA: every verdict rate is computed from the runs it trained."""
    result = bench_json("bench.seed_calibration", tmp_path)
    figures = result["datasets"]["emotion"]
    assert set(figures["adapters"]) == {"head", "lora"} and figures["test_rows"] == 200
    for entry in figures["adapters"].values():
        assert len(entry["values"]) == 4 and entry["model_level_aa"]["pairs"] == 6
        assert entry["method_level"]["2_vs_2"]["aa_false_better"]["welch_t"]["trials"] == 6  # A: 2 of 4, B: the other 2
    assert result["seed_spread"]["emotion"]["lora"]["seeds"] == 4
    assert len(result["run_seconds"]) == 8
    assert result["method_level_pooled"]["2_vs_2"]["aa_false_better"]["welch_t"]["trials"] == 12


def test_seeds_main_matrix_reads_the_seeded_rows_and_checks_the_primary_seed_against_the_project():
    from bench import seeds_main_matrix as smm

    def run(adapter, official, seeds=None):
        return {"dataset": "d", "model": "m", "adapter": adapter, "kind": "run", "official": official,
                **({"seeds": seeds} if seeds else {})}
    experiment = {"rows": [run("lora", 0.7, {"42": 0.7, "1": 0.68, "2": 0.71}), run("full", 0.8, {"42": 0.8}),
                           run("head", 0.6, {"42": 0.61, "1": 0.6, "2": 0.58}),
                           {"dataset": "d", "model": "baseline", "adapter": "majority", "kind": "baseline"}]}
    rows = smm.seeded_rows(experiment)
    assert [r["adapter"] for r in rows] == ["lora", "head"]  # one-seed runs and baselines are not seed results
    project = [run("lora", 0.7), run("head", 0.6), run("full", 0.8)]
    assert smm.compare_primary(rows, project, 42) == ["d/m/head"]  # 0.61 in the experiment, 0.6 committed
    for row, verdict in zip(rows, ["best", "worse"]):
        row.update(official_metric="macro_f1", seed_mean=0.7, seed_sd=0.015, method_vs_best=verdict,
                   method_vs_best_detail={} if verdict == "best" else
                   {"difference": -0.1, "low": -0.14, "high": -0.06, "p_value": 0.004})
    result = {"extra_seeds": [1, 2], "primary_seed": 42, "train_examples": 1000, "epochs": 2, "project_commit": "abc",
              "runs": smm.summarise(rows), "date": "2026-12-07", "command": "python -m bench.seeds_main_matrix",
              "machine": {"cpu_model": "cpu", "cores": 2, "torch_threads": 2, "gpu": None,
                          "versions": {"torch": "t", "transformers": "x", "peft": "p"}}}
    table = "\n".join(report.seeds_main_matrix(result))
    assert "| d (macro_f1) | head | 0.610, 0.600, 0.580 | 0.700 ± 0.015 | worse: -0.100 [-0.140, -0.060], p 0.00 |" \
        in table, table
    assert "| d (macro_f1) | lora | 0.700, 0.680, 0.710 | 0.700 ± 0.015 | best |" in table


def test_reference_models_pairs_the_new_model_with_the_committed_run_on_the_same_test_rows(tmp_path):
    """bench/reference_models.py on two made-up project trees: the difference is paired over the rows both
    evaluate stages predicted (their order may differ), and the table shows it with the published figure."""
    import numpy as np

    from bench import experiment, reference_models as rm
    from emotune import paths, stats

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 400)
    ids = [f"r{i}" for i in range(400)]
    right = {"mpnet": rng.random(400) < 0.9, "minilm": rng.random(400) < 0.6}  # clearly better: 0.9 vs 0.6

    def tree(root: Path, model: str, order) -> None:
        pred = np.where(right[model], gold, (gold + 1) % 4)
        report, plots = paths.eval_paths("d", model, "full", root)
        plots.mkdir(parents=True)
        rows = stats.predictions([ids[i] for i in order], gold[order], pred[order], 4, False)
        (plots / paths.PREDICTIONS_FILE).write_bytes(stats.predictions_csv(rows))
        official = stats.point_estimates(rows)["accuracy"]
        report.write_text(json.dumps({"labels": list("abcd"), "task": "single_label", "official_metric": "accuracy",
                                      "official": official, "official_ci95": {"low": official - 0.03,
                                                                              "high": official + 0.03}}))
        train = root / "metrics" / "train" / "d" / model / "full.json"
        train.parent.mkdir(parents=True)
        train.write_text(json.dumps({"train_examples": 3000, "epochs_run": 3, "lr": 5e-5, "train_time_s": 1500,
                                     "train_examples_per_s": 6.0, "best_val": 0.88}))
        (root / "metrics" / "leaderboard.json").write_text(json.dumps({"rows": [
            {"dataset": "d", "model": model, "adapter": "full", "kind": "run", "reference": 0.85,
             "vs_reference": round(official - 0.85, 4)}]}))

    workdir, project = tmp_path / "exp", tmp_path / "project"
    tree(workdir, "mpnet", np.arange(400))
    tree(project, "minilm", rng.permutation(400))
    c = rm.compare(workdir, project, "d", "mpnet")
    assert c.official == round(right["mpnet"].mean(), 4) and c.base_official == round(right["minilm"].mean(), 4)
    assert c.difference == pytest.approx(right["mpnet"].mean() - right["minilm"].mean(), abs=1e-4)
    assert c.verdict == "better" and c.difference_ci95["low"] > 0 and c.train_minutes == 25.0
    assert experiment.overrides(rm.experiment_settings("mpnet", ["d", "e"], 5e-5)) == [
        "-S", "datasets=[d,e]", "-S", "reference.models=[mpnet]", "-S", "reference.train.lr=5e-05",
        "-S", "large.models=[mpnet]", "-S", "large.adapters=[lora]", "-S", "large.datasets=[d,e]"]
    result = {"datasets": [dataclasses.asdict(c)], "date": "2026-12-07", "command": "python -m bench.reference_models",
              "machine": {"cpu_model": "cpu", "cores": 2, "torch_threads": 2, "gpu": None,
                          "versions": {"torch": "t", "transformers": "x", "peft": "p"}}}
    table = "\n".join(report.reference_model(result))
    assert f"| d (accuracy) | mpnet/full, 5e-05, 3 | {c.official:.3f} [" in table
    assert f"| better: {c.difference:+.3f} [" in table and f"| 0.850 ({c.official - 0.85:+.3f}) | 25.0 (6.0) |" in table


def test_a_reread_experiment_keeps_what_its_first_run_recorded(tmp_path):
    """--from-exp re-reads a finished clone: DVC's output is gone, so the minutes and the stages it ran come
    from the bench's previous result for the same clone, and are unknown for any other clone."""
    from bench import experiment

    clone = tmp_path / "project-seeds"
    previous = tmp_path / "seeds_main_matrix.json"
    previous.write_text(json.dumps({"workdir": str(clone.resolve()), "experiment_minutes": 29.5,
                                    "stages_ran": ["aggregate", "train_seeds@d-minilm-lora-1"]}))
    run = experiment.reread(clone, previous)
    assert (run.workdir, run.minutes, run.stages_ran) == (clone.resolve(), 29.5,
                                                          ["aggregate", "train_seeds@d-minilm-lora-1"])
    other = experiment.reread(tmp_path / "another-clone", previous)
    assert (other.minutes, other.stages_ran) == (None, [])
    assert experiment.reread(clone, tmp_path / "missing.json").minutes is None


def test_the_bench_plots_draw_committed_bench_columns():
    """metrics/bench/dvc.yaml's top-level `plots:` draw committed bench files (the tuning bench's expected-best
    curves; paths relative to that dvc.yaml): each file must exist and hold its x and every y column, else
    `dvc plots show` draws an empty plot. The root dvc.yaml has none: the tests' toy projects copy it."""
    import pandas as pd
    import yaml

    here = ROOT / "metrics" / "bench"
    plots = yaml.safe_load((here / "dvc.yaml").read_text())["plots"]
    assert plots and "plots" not in yaml.safe_load((ROOT / "dvc.yaml").read_text())
    for entry in plots:
        (name, spec), = entry.items()
        for path, columns in spec["y"].items():
            frame = pd.read_csv(here / path)
            assert {spec["x"], *columns} <= set(frame.columns), (name, path, list(frame.columns))
            assert len(frame) >= 2 and frame[columns].notna().all().all(), (name, path)


def test_the_adapter_default_bench_renders_each_dataset_against_the_committed_run():
    from bench.adapter_default import report as adapter_default_report

    machine = {"cpu_model": "cpu", "cores": 2, "torch_threads": 2,
               "versions": {"torch": "t", "transformers": "tf", "peft": "p"}}
    row = {"dataset": "emotion", "official_metric": "accuracy", "lr": 0.04, "epochs_run": 3, "official": 0.745,
           "official_ci95": {"low": 0.726, "high": 0.765}, "committed_lr": 0.01, "committed_epochs_run": 2,
           "committed_official": 0.65, "committed_official_ci95": {"low": 0.63, "high": 0.672},
           "difference": 0.095, "difference_ci95": {"low": 0.074, "high": 0.114}, "verdict": "better"}
    lines = adapter_default_report({"adapter": "ia3", "machine": machine, "date": "today",
                                    "command": "python -m bench.adapter_default", "datasets": [row]})
    assert lines[0].startswith("| dataset (metric) | ia3: lr, epochs |")
    assert ("| emotion (accuracy) | 0.04, 3 | 0.745 [0.726, 0.765] | 0.01, 2 | 0.650 [0.630, 0.672] | "
            "better: +0.095 [+0.074, +0.114] |") in lines


def test_the_adapter_default_bench_compares_the_adapter_over_seeds_before_and_after(tmp_path):
    """--seeds-before/--seeds-after: the adapter's seeded runs in two seeds_main_matrix results, Welch's t over
    seeds per dataset both hold; a clear shift is "better", an overlapping one "within noise"."""
    import statistics

    from bench import adapter_default

    def result(commit: str, by_dataset: dict[str, list[float]]) -> dict:
        runs = [{"dataset": d, "adapter": "ia3", "official_metric": "accuracy",
                 "seeds": dict(zip(("42", "1", "2"), values)), "seed_mean": sum(values) / 3,
                 "seed_sd": statistics.stdev(values)} for d, values in by_dataset.items()]
        runs.append({"dataset": "d", "adapter": "lora", "official_metric": "accuracy", "seeds": {"42": 0.9, "1": 0.9},
                     "seed_mean": 0.9, "seed_sd": 0.0})
        return {"project_commit": commit, "runs": runs}

    before = result("aaa", {"d": [0.60, 0.61, 0.62], "e": [0.60, 0.70, 0.65], "only_before": [0.5, 0.5, 0.5]})
    after = result("bbb", {"d": [0.70, 0.71, 0.72], "e": [0.62, 0.72, 0.60]})
    rows = {c.dataset: c for c in adapter_default.seeds_comparison(before, after, "ia3")}
    assert set(rows) == {"d", "e"}
    assert rows["d"].verdict == "better" and rows["d"].difference == pytest.approx(0.1)
    assert rows["d"].difference_ci95["low"] > 0 and rows["e"].verdict == "within noise"
    with pytest.raises(SystemExit, match="no dataset has seeded qlora runs"):
        adapter_default.seeds_comparison(before, after, "qlora")

    paths = []
    for name, data in (("before.json", before), ("after.json", after)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(data))
    out = tmp_path / "seeds.json"
    assert adapter_default.main(["--seeds-before", str(paths[0]), "--seeds-after", str(paths[1]),
                                 "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert (written["before_commit"], written["after_commit"]) == ("aaa", "bbb")
    table = "\n".join(adapter_default.seeds_report(written))
    assert "| d (accuracy) | 0.600, 0.610, 0.620 | 0.610 ± 0.010 | 0.700, 0.710, 0.720 | 0.710 ± 0.010 | better: +0.100" \
        in table, table
