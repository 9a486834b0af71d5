"""The best run of each dataset (metrics/leaderboard.json), exported to ONNX float32 and int8 by
`emotune export --format onnx [--quantize int8]` (emotune/onnx_export.py): the export's official metric on
the whole test split against the run's PyTorch model, the share of rows with the same decision, the file
size and how long the export took.

    python -m bench.export_best                      # every dataset of the leaderboard
    python -m bench.export_best --datasets emotion   # one
    python -m bench.export_best --tiny               # CI: the toy project's runs (tests/test_bench.py)

The exports go to a temporary folder (not exports/): the figures are the point, not the files. The export's
own check scores both models, so the PyTorch figure here is recomputed, not read from the leaderboard; both
are recorded, with the leaderboard's 95% interval, and they must agree (the same model, rows and thresholds).
Writes metrics/bench/export_best.json (docs/serving.md "The best runs, exported").
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import common

NEVER_REFUSE = 100.0  # --max-metric-loss in points: the bench records a loss instead of refusing the export


def export_figures(run, quantize: str | None, out: Path) -> dict:
    from emotune.onnx_export import ONNX_FILE, export_onnx

    start = time.perf_counter()
    folder = export_onnx(run, out=out, quantize=quantize, max_metric_loss=NEVER_REFUSE)
    seconds = time.perf_counter() - start
    check = common.load_json(folder / "export.json")["check"]
    return {"quantize": quantize, "export_seconds": round(seconds, 1),
            "onnx_bytes": (folder / ONNX_FILE).stat().st_size,
            "metric": check["metric"], "pytorch": round(check["run_metric"], 4),
            "onnx": round(check["export_metric"], 4), "loss_points": round(check["metric_loss_points"], 2),
            "label_agreement": round(check["label_agreement"], 4),
            "max_abs_prob_diff": check["max_abs_prob_diff"], "rows": check["rows"]}


def best_rows(leaderboard: dict, datasets: list[str] | None) -> list[dict]:
    rows = [r for r in leaderboard["rows"] if r.get("kind") == "run" and r.get("best")]
    if datasets:
        missing = sorted(set(datasets) - {r["dataset"] for r in rows})
        if missing:
            raise SystemExit(f"metrics/leaderboard.json has no best run for {', '.join(missing)}")
        rows = [r for r in rows if r["dataset"] in datasets]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=str(common.ROOT), help="the checkout whose runs are exported")
    parser.add_argument("--datasets", help="comma-separated; default: every dataset of the leaderboard")
    parser.add_argument("--tiny", action="store_true", help="CI: a toy project's runs, result out of metrics/")
    parser.add_argument("--out", help="the result file (default metrics/bench/export_best.json)")
    args = parser.parse_args(argv)
    from emotune.runs import quiet_transformers, resolve_run

    quiet_transformers()
    project = Path(args.project).resolve()
    leaderboard = common.load_json(project / "metrics" / "leaderboard.json", "run `dvc repro` (or `dvc pull`) first")
    rows = best_rows(leaderboard, args.datasets.split(",") if args.datasets else None)
    result = common.header("export_best", args.tiny)
    result["project"] = str(project)
    result["runs"] = []
    with tempfile.TemporaryDirectory(prefix="emotune-export-best-") as tmp:
        for row in rows:
            run = resolve_run(f"{row['dataset']}/{row['model']}/{row['adapter']}", project)
            entry = {"run": run.name, "train_examples": row.get("train_examples"),
                     "leaderboard": {"official_metric": row.get("official_metric"), "official": row.get("official"),
                                     "official_ci95": row.get("official_ci95")},
                     "exports": []}
            for quantize in (None, "int8"):
                figures = export_figures(run, quantize, Path(tmp) / run.name.replace("/", "-") / str(quantize))
                entry["exports"].append(figures)
                print(f"{run.name} {quantize or 'float32'}: {figures['metric']} onnx {figures['onnx']:.4f} vs "
                      f"pytorch {figures['pytorch']:.4f} ({figures['loss_points']:+.2f} points lost), decisions "
                      f"agree on {figures['label_agreement']:.2%} of {figures['rows']} rows, "
                      f"{figures['onnx_bytes'] / 2**20:.1f} MB, {figures['export_seconds']} s")
            result["runs"].append(entry)
    common.write_result(common.result_path("export_best", args.tiny, args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
