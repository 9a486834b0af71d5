"""Build the pull-request report: metric diff against a base revision, the leaderboard, and the plots as
images. Offline; CML only posts the result (.github/workflows/cml.yaml):

    python scripts/cml_report.py --rev main --out report
    cml comment create report/report.md

report/report.md links images in the same folder (CML uploads them with the comment):
  pareto_<dataset>.png                         from the aggregate stage
  confusion_<dataset>.png, curves_<dataset>.png   the best run of each dataset (matplotlib, from the CSV/TSV
                                                  files `dvc plots show` reads)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def dvc(*args: str, root: Path) -> str:
    exe = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(exe) if exe.exists() else "dvc", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def confusion_png(csv: Path, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = pd.read_csv(csv)
    table = pd.crosstab(rows["actual"], rows["predicted"])
    labels = sorted(set(table.index) | set(table.columns), key=lambda s: (s.startswith("("), s))
    table = table.reindex(index=labels, columns=labels, fill_value=0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)))
    ax.imshow(table.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), n in pd.DataFrame(table.to_numpy()).stack().items():
        ax.text(j, i, int(n), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def curves_png(live: Path, metric: str, out: Path, title: str) -> bool:
    """Train loss and the validation official metric per epoch, from DVCLive's TSV files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {"train loss": live / "plots/metrics/train/loss.tsv", "val loss": live / "plots/metrics/val/loss.tsv",
             f"val {metric}": live / f"plots/metrics/val/{metric}.tsv"}
    if not all(p.exists() for p in files.values()):
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, path in files.items():
        frame = pd.read_csv(path, sep="\t")
        value = [c for c in frame.columns if c not in ("step", "timestamp")][0]
        (right if name.startswith("val ") and "loss" not in name else left).plot(
            frame["step"], frame[value], marker="o", label=name)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return True


def build(root: Path, rev: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    board = json.loads((root / "metrics/leaderboard.json").read_text())["rows"]
    diff = dvc("metrics", "diff", rev, "--md", root=root).strip() or f"No metric changed against `{rev}`."
    lines = ["# emotune report", "", f"## Metrics against `{rev}`", "", diff, "",
             (root / "metrics/leaderboard.md").read_text().replace("# Leaderboard", "## Leaderboard", 1), ""]
    for row in (r for r in board if r["best"]):
        dataset, model, adapter = row["dataset"], row["model"], row["adapter"]
        lines += [f"### {dataset}: best run {model}/{adapter} ({row['official_metric']} {row['official']:.3f})", ""]
        pareto = root / f"metrics/pareto/{dataset}.png"
        if pareto.exists():
            shutil.copy(pareto, out / f"pareto_{dataset}.png")
            lines.append(f"![Pareto {dataset}](./pareto_{dataset}.png)")
        confusion = root / f"metrics/eval/{dataset}/{model}/{adapter}/confusion.csv"
        if confusion.exists():
            confusion_png(confusion, out / f"confusion_{dataset}.png", f"{dataset} {model}/{adapter}: test")
            lines.append(f"![Confusion {dataset}](./confusion_{dataset}.png)")
        if curves_png(root / f"metrics/train/{dataset}/{model}/{adapter}", row["official_metric"],
                      out / f"curves_{dataset}.png", f"{dataset} {model}/{adapter}: training"):
            lines.append(f"![Training curves {dataset}](./curves_{dataset}.png)")
        lines.append("")
    report = out / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    tmp.replace(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the CML pull-request report (offline)")
    parser.add_argument("--rev", default="main", help="base revision for `dvc metrics diff` (default: main)")
    parser.add_argument("--out", default="report", help="output folder (default: report)")
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    report = build(Path(args.root), args.rev, Path(args.out))
    print(f"report: {report}")


if __name__ == "__main__":
    main()
