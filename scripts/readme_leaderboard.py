"""The README's leaderboard summary, built from the committed metrics/leaderboard.json: per dataset, the
best run, the best run on the capped training sample (each with its 95% interval), every baseline (TF-IDF + LR on the same and on all
rows, embeddings + LR, BiLSTM, zero-shot, majority) and the published reference with the gap. Every
figure is the leaderboard's own number, rounded as metrics/leaderboard.md rounds it; tests/test_readme.py
fails when the README's copy differs from what this prints, so the README cannot keep figures of an
earlier run.

    python scripts/readme_leaderboard.py           # print the table
    python scripts/readme_leaderboard.py --write   # replace the README's table (between its markers)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- leaderboard-summary: scripts/readme_leaderboard.py --write -->"
END = "<!-- /leaderboard-summary -->"
ZERO_SHOT_PREFIX = "zero_shot_"  # emotune/paths.py ZERO_SHOT_PREFIX


def score(value) -> str:
    return "" if value is None else f"{value:.3f}"


def score_with_interval(row: dict | None) -> str:
    """0.932 [0.921, 0.943]: the official metric and its bootstrap 95% interval over test rows, as
    metrics/leaderboard.md prints them (emotune/aggregate.py official_text); the bare figure without one."""
    if row is None:
        return ""
    interval = row.get("official_ci95")
    if not isinstance(interval, dict):
        return score(row["official"])
    return f"{row['official']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def run_name(row: dict) -> str:
    return f"{row['model']}/{row['adapter']} ({row['train_examples']:,} rows)"


def summary(rows: list[dict]) -> str:
    out = ["| dataset (metric) | best run | score [95% CI] | best run on the capped sample | score [95% CI] | "
           "TF-IDF + LR, same rows | TF-IDF + LR, all rows | embeddings + LR | BiLSTM | zero-shot | majority | "
           "published | best run minus published |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        runs = [r for r in mine if r["kind"] == "run"]
        base = {r["adapter"]: r for r in mine if r["kind"] == "baseline"}
        best = max(runs, key=lambda r: r["official"])
        capped = [r for r in runs if r["train_examples"] == base["tfidf_lr"]["train_examples"]]
        best_capped = max(capped, key=lambda r: r["official"]) if capped else None
        zero = [r for name, r in base.items() if name.startswith(ZERO_SHOT_PREFIX)]
        zero_text = ", ".join(f"{r['adapter'][len(ZERO_SHOT_PREFIX):]} {score(r['official'])}" for r in zero)
        out.append("| " + " | ".join([
            f"{dataset} ({best['official_metric']})", run_name(best), score_with_interval(best),
            run_name(best_capped) if best_capped else "", score_with_interval(best_capped),
            score(base["tfidf_lr"]["official"]), score(base["tfidf_lr_all"]["official"]),
            score(base.get("embed_lr", {}).get("official")), score(base.get("bilstm", {}).get("official")),
            zero_text or "opt-in, not run", score(base["majority"]["official"]),
            score(best.get("reference")) or "none", score(best.get("vs_reference"))]) + " |")
    return "\n".join(out) + "\n"


def readme_block(readme: str) -> str:
    """The README's copy of the table (between the markers), or an error naming the missing marker."""
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md: the markers {START!r} and {END!r} are missing; put them around the "
                         f"leaderboard summary table")
    return readme.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="replace the README's table")
    args = parser.parse_args(argv)
    table = summary(json.loads((ROOT / "metrics/leaderboard.json").read_text(encoding="utf-8"))["rows"])
    if not args.write:
        print(table, end="")
        return 0
    path = ROOT / "README.md"
    readme = path.read_text(encoding="utf-8")
    old = readme_block(readme)
    before, rest = readme.split(START, 1)
    path.write_text(before + START + "\n" + table + END + rest.split(END, 1)[1], encoding="utf-8")
    print(f"{path}: leaderboard summary {'unchanged' if old == table else 'rewritten'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
