"""Every repository path the newcomer-facing files name exists: params.yaml, dvc.yaml, README.md and the
docs/ pages point at code, scripts, benches, tests and committed bench results by their paths, and a
moved module must not leave its old path behind (issue 28: params.yaml named stages/config.py long after
it moved to emotune/)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Folders whose files are the repository's own (code, docs, committed bench results), not pipeline outputs:
# data/, models/ and the other metrics/ folders are what a run writes, and may not exist in a fresh clone.
TRACKED = ("emotune", "stages", "scripts", "bench", "tests", "docs", "recipes", "reports", "explain",
           "metrics/bench", ".github")
NAMED_PATH = re.compile(r"(?<![\w./-])((?:" + "|".join(map(re.escape, TRACKED)) + r")/[\w.*<>{}$/-]*[\w/])")
TEMPLATED = set("*<>{}$")  # `${item}`, `<dataset>`, `bench/*.py`: a pattern, not a path


def named_files() -> list[Path]:
    return [ROOT / "params.yaml", ROOT / "dvc.yaml", ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def named_paths(text: str) -> list[str]:
    """The repository-relative paths in `text`, templated ones left out."""
    return [m.group(1).rstrip("/") for m in NAMED_PATH.finditer(text) if not TEMPLATED & set(m.group(1))]


def test_the_path_pattern_finds_paths_in_prose_code_and_comments():
    text = ("Validated by stages/config.py before; see `emotune/plan.py` and (bench/data_scale.py), "
            "metrics/bench/x.json, data/audited/emotion, metrics/eval/${item}.json, tests/toy_runs.py::toy, "
            "docs/<topic>.md, my_emotune/x.py")
    assert named_paths(text) == ["stages/config.py", "emotune/plan.py", "bench/data_scale.py",
                                 "metrics/bench/x.json", "tests/toy_runs.py"]


@pytest.mark.parametrize("source", named_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_file_names_exists(source):
    missing = sorted({p for p in named_paths(source.read_text(encoding="utf-8")) if not (ROOT / p).exists()})
    assert not missing, f"{source.relative_to(ROOT)} names paths that are not in the repository: {missing}"
