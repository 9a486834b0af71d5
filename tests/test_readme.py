"""The README's leaderboard figures are the committed leaderboard's (scripts/readme_leaderboard.py)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_leaderboard as rl  # noqa: E402


def row(dataset, model, adapter, official, rows, kind="run", **extra):
    return {"dataset": dataset, "model": model, "adapter": adapter, "kind": kind, "official": official,
            "official_metric": "macro_f1", "train_examples": rows, **extra}


def test_the_summary_picks_the_best_run_the_best_capped_run_and_every_baseline():
    rows = [row("d", "m", "full", 0.81234, 3000, reference=0.761, vs_reference=0.0513),
            row("d", "m", "lora", 0.7, 1000), row("d", "m", "head", 0.6, 1000),
            *[row("d", "baseline", name, value, n, kind="baseline") for name, value, n in [
                ("tfidf_lr", 0.41, 1000), ("tfidf_lr_all", 0.53, 3000), ("embed_lr", 0.63, 1000),
                ("bilstm", 0.5, 1000), ("majority", 0.14, 1000)]]]
    line = rl.summary(rows).splitlines()[2]
    assert line == ("| d (macro_f1) | m/full (3,000 rows) | 0.812 | m/lora (1,000 rows) | 0.700 | 0.410 | 0.530 | "
                    "0.630 | 0.500 | opt-in, not run | 0.140 | 0.761 | 0.051 |")
    rows.append(row("d", "baseline", "zero_shot_smollm2", 0.224, 0, kind="baseline"))
    assert "| smollm2 0.224 |" in rl.summary(rows)
    rows[0]["official_ci95"] = {"low": 0.79, "high": 0.8317}
    assert "| m/full (3,000 rows) | 0.812 [0.790, 0.832] | m/lora (1,000 rows) | 0.700 |" in rl.summary(rows)


def test_the_readme_table_is_the_committed_leaderboard():
    committed = json.loads((ROOT / "metrics/leaderboard.json").read_text(encoding="utf-8"))["rows"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rl.readme_block(readme) == rl.summary(committed), \
        "README.md's leaderboard summary is not metrics/leaderboard.json's: " \
        "run python scripts/readme_leaderboard.py --write"


def test_every_figure_of_the_readme_table_is_in_the_dataset_s_leaderboard_md_section():
    # the per-run part of the leaderboard (the "# Seeds" part after it repeats the dataset headings)
    md = (ROOT / "metrics/leaderboard.md").read_text(encoding="utf-8").split("\n# Seeds", 1)[0]
    sections = dict(re.findall(r"^## (\S+) \(\w+\)\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M))
    table = rl.readme_block((ROOT / "README.md").read_text(encoding="utf-8")).splitlines()[2:]
    assert table and len(table) == len(sections), (len(table), sorted(sections))
    for line in table:
        dataset = line.split("|")[1].split()[0]
        section = sections[dataset]
        figures = re.findall(r"(?<![\w.])\d\.\d{3}(?![\w.])", line)
        reference = re.search(r"^Reference: \w+ (\S+)", section, flags=re.M)
        if reference:  # the published figure is the section's "Reference:" line (as params.yaml spells it)
            assert figures[-2] == f"{float(reference.group(1)):.3f}", (dataset, figures[-2])  # README rounds
            figures = figures[:-2] + figures[-1:]
        for figure in figures:
            assert figure in section, f"{dataset}: {figure} of README.md is not in metrics/leaderboard.md"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)  # not code comments
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_every_link_of_the_readme_and_the_docs_reaches_a_file_and_heading():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (page.parent / file).resolve() if file else page
            if not resolved.exists() or (anchor and anchor not in anchors(resolved)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readme_lists_every_docs_page_where_the_rest_is():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rest = readme.split("## Where the rest is\n", 1)[1].split("\n## ", 1)[0]
    listed = {target for target in LINK.findall(rest)}
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= listed, listed


# Prose that quotes a committed result sits between `<!-- figures: <file> -->` and `<!-- /figures -->`, the
# file being metrics/leaderboard.md or a bench JSON under metrics/bench/; every three-decimal figure in the
# block must be one of that file's figures (JSON numbers rounded to 3 places), so no page keeps the figures
# of an earlier run.
FIGURE_BLOCK = re.compile(r"<!-- figures: (\S+) -->\n(.*?)<!-- /figures -->", flags=re.S)
FIGURE = re.compile(r"(?<![\w.])-?\d+\.\d{3}(?![\w.])")


def source_figures(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".json":
        return {f.lstrip("-") for f in FIGURE.findall(text)}
    found: set[str] = set()

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            found.add(f"{abs(value):.3f}")
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
    walk(json.loads(text))
    return found


def figure_blocks() -> list[tuple[Path, str, str]]:
    return [(page, source, block) for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
            for source, block in FIGURE_BLOCK.findall(page.read_text(encoding="utf-8"))]


def test_every_quoted_figure_of_the_readme_and_the_docs_is_its_source_s():
    blocks = figure_blocks()
    pages = {page.name for page, source, _ in blocks if source == "metrics/leaderboard.md"}
    # the pages that describe the committed run quote it inside checked blocks
    assert {"README.md", "evaluation.md", "training.md", "seeds.md"} <= pages, pages
    stale = []
    for page, source, block in blocks:
        assert (ROOT / source).is_file(), f"{page.name}: figures of {source}, which does not exist"
        known = source_figures(ROOT / source)
        stale += [f"{page.relative_to(ROOT)}: {figure} is not in {source}"
                  for figure in FIGURE.findall(block) if figure.lstrip("-") not in known]
    assert not stale, stale


def test_a_figure_block_catches_a_figure_of_another_run(tmp_path):
    board = tmp_path / "leaderboard.md"
    board.write_text("| emotion | minilm | full | **0.932** [0.921, 0.943] |\n")
    assert {"0.932", "0.921", "0.943"} <= source_figures(board)
    bench = tmp_path / "b.json"
    bench.write_text(json.dumps({"runs": [{"sd": 0.0123, "ok": True, "seeds": {"42": 0.78949}}]}))
    assert source_figures(bench) == {"0.012", "0.789"}
    block = "<!-- figures: x -->\nLoRA 0.789 vs QLoRA 0.785, sd 0.012\n<!-- /figures -->"
    (source, text), = FIGURE_BLOCK.findall(block)
    assert [f for f in FIGURE.findall(text) if f not in source_figures(bench)] == ["0.785"]
