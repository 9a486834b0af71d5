"""The measurement tables of docs/ (performance.md, seeds.md, serving.md, tuning.md), printed as Markdown from the
committed metrics/bench/*.json.

    python -m bench.report
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout


BENCH = ROOT / "metrics" / "bench"


def load(name: str) -> dict | None:
    path = BENCH / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def where(result: dict) -> str:
    m = result["machine"]
    gpu = f", {m['gpu']}" if m.get("gpu") else ", no GPU"
    return (f"Measured {result['date']} on {m['cpu_model']} ({m['cores']} cores, {m['torch_threads']} torch threads"
            f"{gpu}; torch {m['versions']['torch']}, transformers {m['versions']['transformers']}, peft "
            f"{m['versions']['peft']}): `{result['command']}`")


def train_vs_notebook(r: dict) -> list[str]:
    a, s = r["arms"], r["setup"]
    hp = s.get("adapter_hparams", s.get("lora", {}))  # ("lora": the JSONs from before --adapter)
    adapter = s.get("adapter", "lora") + (f" r={hp['r']}" if "r" in hp else "")
    lines = [f"**Training, CPU** ({s['dataset']}, {s['model']} + {adapter}, {s['train_rows']} "
             f"train rows, {s['epochs']} epoch, batch {s['batch_size']}, lr {s['lr']}, seeds {s['seeds']}, "
             f"test {s['test_rows']} rows)", "",
             "| recipe | examples/s | real tokens/s | pad share | peak RSS MB | test accuracy | whole run s |",
             "|---|---|---|---|---|---|---|"]
    names = {"emotune": "emotune train stage (Trainer, emotune's arguments)",
             "peer": "peer (Trainer, dynamic padding, group_by_length, fused AdamW over emotune's groups)",
             "notebook": "notebook (Trainer, pad to 128, random batches)"}
    for key, arm in a.items():
        lines.append(f"| {names[key]} | {arm['examples_per_s']} | {arm['tokens_per_s']} | {arm['pad_fraction']:.0%} | "
                     f"{arm['peak_rss_mb']} | {arm['test_accuracy']:.4f} | {arm['train_call_s']} |")
    for key, other in (("ratios_vs_peer", "peer"), ("ratios", "notebook")):
        ra = r.get(key)
        if ra:
            lines.append(f"| **emotune / {other}** | **{ra['examples_per_s']}x** | **{ra['tokens_per_s']}x** | | "
                         f"{ra['peak_rss']}x | {ra['test_accuracy_difference_points']:+.2f} points | |")
    profile = r.get("profile") or {}
    if "matmul_peak" in profile:
        peak = profile["matmul_peak"]
        lines += ["", f"Training step FLOP/s (torch.profiler): emotune batches "
                      f"{profile['emotune']['achieved_gflops_per_s']} GFLOP/s = "
                      f"{profile['emotune']['fraction_of_float32_matmul_peak']:.1%} of this machine's float32 matmul "
                      f"peak at the model's shapes ({peak['float32']['gflops_per_s']} GFLOP/s), "
                      f"{profile['emotune']['fraction_of_bfloat16_matmul_peak']:.1%} of its bfloat16 peak "
                      f"({peak['bfloat16']['gflops_per_s']} GFLOP/s)."]
    lines += ["", where(r)]
    return lines


def inference(r: dict) -> list[str]:
    s = r["setup"]
    lines = [f"**Inference, CPU** ({s['model']}, {s['batched_texts']} test texts in batches of {s['batch_size']}, "
             f"{s['single_texts']} single texts; text to label, tokenization included; {s['weights']})", "",
             "| adapter | batched examples/s | vs full | single p50 ms | single p95 ms | weights MB |",
             "|---|---|---|---|---|---|"]
    vs_full = r["ratios"].get("batched_vs_full", {})
    for name, v in r["variants"].items():
        lines.append(f"| {name.replace('_', ' ')} | {v['batched_examples_per_s']} | {vs_full.get(name, '')}x | "
                     f"{v['single_p50_ms']} | {v['single_p95_ms']} | {v['weights_mb']} |")
    lines += ["", where(r)]
    return lines


def pipeline_overhead(r: dict) -> list[str]:
    s, e, n = r["setup"], r["exp_run"], r["noop_repro"]
    return [f"**Pipeline overhead** (throw-away copy of the project; {s['model']}, adapters {', '.join(s['adapters'])}; "
            f"{s['rows']['train']}/{s['rows']['validation']}/{s['rows']['test']} rows, 1 epoch)", "",
            "| command | wall s | stages run | training steps s | outside training s |", "|---|---|---|---|---|",
            f"| `dvc repro` (nothing changed) | {n['median_s']} | {'none' if not n['any_stage_ran'] else 'SOME'} | 0 | "
            f"{n['median_s']} |",
            f"| `{e['command']}` | {e['seconds']} | {', '.join(e['ran'])} | {e['train_steps_s']} | "
            f"{e['outside_training_s']} ({e['outside_training_fraction']:.0%}) |",
            "", where(r)]


def gpu_train(r: dict) -> list[str]:
    if r.get("skipped"):
        return [f"**GPU training**: not measured yet: {r['reason']} ({r['date']}, `{r['command']}`)."]
    lines = ["**GPU training** (random weights from the configs, bf16, tweet-length batches)", "",
             "| model | adapter | recipe | tokens/s | MFU | peak memory MB |", "|---|---|---|---|---|---|"]
    for run in r["runs"]:
        if "error" in run:
            lines.append(f"| {run['model']} | {run['adapter']} | {run['recipe']} | {run['error']} | | |")
        else:
            lines.append(f"| {run['model']} | {run['adapter']} | {run['recipe']} | {run['tokens_per_s']} | "
                         f"{run['mfu']:.1%} | {run['peak_memory_mb']} |")
    lines += ["", where(r)]
    return lines


ADAPTERS = ("full", "head", "lora", "dora", "ia3", "qlora")


def train_vs_peer(results: list[dict]) -> list[str]:
    """One row per adapter of `bench.train_vs_notebook --adapter A --arms emotune,peer` runs: examples/s of
    each arm, the ratio (and each seed's pair), test accuracy of each, trainable weights."""
    lines = ["| adapter | lr / head lr | trainable | emotune ex/s | peer ex/s | **emotune / peer** (each pair) | "
             "test accuracy emotune / peer (each seed) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        e, p, ra, s = r["arms"]["emotune"], r["arms"]["peer"], r["ratios_vs_peer"], r["setup"]
        trainable, pairs = r["runs"][0]["trainable_params"], ", ".join(map(str, ra["examples_per_s_each_pair"]))
        lines.append(
            f"| {s['adapter']} | {s['lr']:g} / {s.get('head_lr') or s['lr']:g} | {trainable:,} | "
            f"{e['examples_per_s']} | {p['examples_per_s']} | **{ra['examples_per_s']}x** ({pairs}) | "
            f"{e['test_accuracy']:.4f} / {p['test_accuracy']:.4f} "
            f"({' / '.join(f'{x:.3f}' for x in e['test_accuracy_each_run'])} vs "
            f"{' / '.join(f'{x:.3f}' for x in p['test_accuracy_each_run'])}) |")
    if results:
        lines += ["", where(results[0])]
    return lines


def interval(ci: dict | None, sign: str = "") -> str:
    """A 95% interval as the docs print it, "[low, high]" ("" for none); sign "+": signed ends (differences)."""
    return f"[{ci['low']:{sign}.3f}, {ci['high']:{sign}.3f}]" if ci else ""


def table(r: dict, columns: list[str], rows: list[list[str]], title: list[str] | None = None) -> list[str]:
    """A Markdown table of one bench's rows (cells already formatted), with where it was measured below it."""
    return [*(title or []), "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(cells) + " |" for cells in rows), "", where(r)]


def seeds_main_matrix(r: dict) -> list[str]:
    """docs/seeds.md: every seed of each run, mean ± sd and the method-level verdict against the best variant."""
    def verdict(run: dict) -> str:
        detail = run.get("method_vs_best_detail") or {}
        if "difference" not in detail:
            return run["method_vs_best"]
        return (f"{run['method_vs_best']}: {detail['difference']:+.3f} {interval(detail, '+')}, "
                f"p {detail['p_value']:.2f}")
    title = [f"**{len(r['extra_seeds']) + 1} seeds of the main matrix** (seeds {r['primary_seed']} and "
             f"{', '.join(map(str, r['extra_seeds']))}; {r['train_examples']:,} training rows drawn by each seed, "
             f"{r['epochs']} epochs; project {r['project_commit']})", ""]
    return table(r, ["dataset", "adapter", "each seed", "mean ± sd", "vs the best variant (Welch t over seeds)"],
                 [[f"{run['dataset']} ({run['official_metric']})", run["adapter"],
                   ", ".join(f"{v:.3f}" for v in run["seeds"].values()),
                   f"{run['seed_mean']:.3f} ± {run['seed_sd']:.3f}", verdict(run)] for run in r["runs"]], title)


def export_best(r: dict) -> list[str]:
    """docs/serving.md: each dataset's best run exported, its ONNX float32 and int8 metric against PyTorch."""
    def cells(run: dict) -> list[str]:
        fp32, int8 = run["exports"]
        return [f"{run['run']} ({run['train_examples']:,} rows)", fp32["metric"],
                f"{fp32['pytorch']:.3f} {interval(run['leaderboard'].get('official_ci95'))}".strip(),
                f"{fp32['onnx']:.3f}", f"{int8['onnx']:.3f}", f"{-int8['loss_points']:+.2f}",
                f"{int8['label_agreement']:.1%} of {int8['rows']:,}",
                f"{int8['onnx_bytes'] / 1e6:.1f} / {fp32['onnx_bytes'] / 1e6:.1f} MB"]
    return table(r, ["best run", "metric", "PyTorch [95% CI]", "ONNX float32", "ONNX int8", "int8 - PyTorch (points)",
                     "int8 decisions as PyTorch's", "int8 / float32 file"], [cells(run) for run in r["runs"]])


def reference_model(r: dict) -> list[str]:
    """docs/tuning.md: a second reference model on all rows against the committed MiniLM reference runs."""
    def cells(d: dict) -> list[str]:
        published = f"{d['reference']:.3f} ({d['vs_reference']:+.3f})" if d.get("reference") is not None else "none"
        return [f"{d['dataset']} ({d['official_metric']})", f"{d['model']}/full, {d['lr']:g}, {d['epochs_run']}",
                f"{d['official']:.3f} {interval(d['official_ci95'])}",
                f"{d['base_official']:.3f} {interval(d['base_official_ci95'])}",
                f"{d['verdict']}: {d['difference']:+.3f} {interval(d['difference_ci95'], '+')}", published,
                f"{d['train_minutes']:.1f} ({d['train_examples_per_s']:.1f})"]
    return table(r, ["dataset (metric)", "model, lr, epochs", "[95% CI]", "committed minilm/full [95% CI]",
                     "paired difference [95% CI]", "published", "train minutes (ex/s)"],
                 [cells(d) for d in r["datasets"]])


def main() -> None:
    out = []
    for name, render in (("train_vs_notebook", train_vs_notebook), ("pipeline_overhead", pipeline_overhead),
                         ("inference", inference), ("gpu_train", gpu_train),
                         ("seeds_main_matrix", seeds_main_matrix), ("export_best", export_best)):
        result = load(name)
        if result is not None:
            out += render(result) + [""]
    for path in sorted(BENCH.glob("reference_model_*.json")):  # bench/reference_models.py, one file per run of it
        out += reference_model(json.loads(path.read_text(encoding="utf-8"))) + [""]
    per_adapter = [r for r in (load(f"train_vs_peer_{a}") for a in ADAPTERS) if r is not None]
    if per_adapter:
        out += train_vs_peer(per_adapter) + [""]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
