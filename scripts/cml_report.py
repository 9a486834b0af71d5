"""Build the pull-request report: metric diff against a base revision, the leaderboard, and the plots as
images. Offline; CML only posts the result (.github/workflows/cml.yaml):

    python scripts/cml_report.py --rev main --out report
    cml comment create report/report.md

Below the metric diff, every run and baseline whose test predictions changed gets, for each headline metric
(official, macro F1, micro F1), the change, its 95% interval and a verdict in words (better, worse,
within noise; docs/noise.md):
paired on the same test rows when the base revision has the run's per-row predictions
(metrics/eval/<dataset>/<model>/<adapter>/predictions.csv.gz, read with `git show <rev>:<path>`), else
from the two runs' intervals, and the report says which.

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
sys.path.insert(0, str(ROOT))  # this checkout's emotune, also when the package is installed from elsewhere

from emotune import stats  # noqa: E402
from emotune.errors import EmotuneError  # noqa: E402
from emotune.paths import eval_paths, predictions_path  # noqa: E402


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


def git_show(root: Path, rev: str, path: Path) -> bytes | None:
    """The file at `path` (inside `root`) as committed in `rev`; None when that revision has none."""
    result = subprocess.run(["git", "show", f"{rev}:{path.relative_to(root).as_posix()}"], cwd=root,
                            capture_output=True)
    return result.stdout if result.returncode == 0 else None


def run_name(row: dict) -> str:
    return f"{row['dataset']}/{row['model']}/{row['adapter']}"


def changed_predictions(root: Path, rev: str, row: dict, new: dict, old: dict) -> tuple[tuple | None, str]:
    """((this revision's, the base's) per-row predictions when they pair, else None; how the test is done)."""
    path = predictions_path(row["dataset"], row["model"], row["adapter"], root)
    old_rows = git_show(root, rev, path)
    if old_rows is None:
        return None, f"unpaired: `{rev}` has no per-row predictions of this run"
    if not path.exists():
        return None, "unpaired: this revision has no per-row predictions of this run"
    try:
        mine = stats.run_predictions(new, path.read_bytes(), str(path))
        theirs = stats.aligned(mine, stats.run_predictions(old, old_rows, f"{rev}:{path.relative_to(root)}"))
    except EmotuneError as exc:
        return None, f"unpaired: {exc}"
    if theirs is None:
        return None, "unpaired: the test rows differ between the revisions"
    return (mine, theirs), f"paired, {len(mine):,} test rows"


def changes(root: Path, rev: str, row: dict) -> list[tuple[stats.Difference, str]]:
    """(difference, how it was tested) for each headline metric of `row` when its predictions changed
    against `rev`: any test row decided differently (paired), or, without per-row files to compare, any
    headline metric differing. A run whose decisions are all the same (only its timings moved) is skipped."""
    json_path, _ = eval_paths(row["dataset"], row["model"], row["adapter"], root)
    old_raw = git_show(root, rev, json_path)
    if old_raw is None:
        return []
    new, old = json.loads(json_path.read_text()), json.loads(old_raw)
    if new.get("scored") is False or old.get("scored") is False:  # a zero-shot pair the params do not score
        return []
    metrics = [m for m in stats.headline_metrics(new["official_metric"]) if m in old.get("test", {})]
    paired, how = changed_predictions(root, rev, row, new, old)
    if paired is not None:
        if stats.same_decisions(*paired):
            return []
        return [(stats.paired_difference(*paired, m), how) for m in metrics]
    if all(new["test"][m] == old["test"][m] for m in metrics):
        return []
    return [(stats.unpaired_difference(m, new["test"][m], new["test"].get(stats.interval_key(m)), old["test"][m],
                                       old["test"].get(stats.interval_key(m))), how) for m in metrics]


def verdict_section(root: Path, rev: str, board: list[dict]) -> list[str]:
    """The changed headline metrics of every run and baseline, with interval and verdict (markdown)."""
    rows = [(row, diff, how) for row in board for diff, how in changes(root, rev, row)]
    lines = [f"## Verdicts against `{rev}`", ""]
    if not rows:
        return lines + [f"No run decides any test row differently from `{rev}` (or, without per-row files, "
                        f"no official, macro F1 or micro F1 changed).", ""]
    lines += ["Change = this revision minus the base, with its 95% interval over the test rows (test-sampling "
              "noise only, not training seeds; docs/noise.md). *within noise*: the interval covers 0.", "",
              "| run | metric | base | now | change [95% CI] | verdict | test |", "|---|---|---|---|---|---|---|"]
    for row, diff, how in rows:
        ci = "" if diff.low != diff.low else f" [{diff.low:+.3f}, {diff.high:+.3f}]"  # NaN: no interval
        lines.append(f"| {run_name(row)} | {diff.metric} | {diff.reference_value:.3f} | {diff.value:.3f} | "
                     f"{diff.difference:+.3f}{ci} | {diff.verdict if ci else 'no interval'} | {how} |")
    return lines + [""]


def build(root: Path, rev: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    board = json.loads((root / "metrics/leaderboard.json").read_text())["rows"]
    diff = dvc("metrics", "diff", rev, "--md", root=root).strip() or f"No metric changed against `{rev}`."
    lines = ["# emotune report", "", f"## Metrics against `{rev}`", "", diff, "", *verdict_section(root, rev, board),
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
