"""The layout (docs/development.md): stages/ holds the DVC entry points only, each a short main() over the
emotune library; the library never imports a stage and has no import cycle (function-level imports
count: a cycle closed inside a function is still one); the leaf modules (errors < paths < atomic)
import only the leaves below them;
checking params loads neither pandas nor torch; the package installs with an `emotune` command."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from test_stage_deps import ROOT, imported_modules, pipeline_stages, stage_module

LIBRARY = sorted((ROOT / "emotune").glob("*.py"))
STAGES = sorted(p for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py")
LEAVES = ("errors", "paths", "atomic")
# A stage reads its params, calls the library and reports; the longest (train, baseline) are ~25 lines.
MAX_MAIN_LINES = 40
MAX_STAGE_LINES = 80


def library_graph() -> dict[str, set[str]]:
    return {f"emotune.{p.stem}": {m for m in imported_modules(p) if m.startswith("emotune.")}
            for p in LIBRARY if p.stem != "__init__"}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components of more than one module, and
    modules that import themselves (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_library_has_no_import_cycle():
    found = cycles(library_graph())
    assert not found, (f"import cycles in emotune/: {found}; move what both sides need into a module "
                       f"below them (as emotune/rows.py holds the rows train, generative and baseline share)")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_the_library_never_imports_a_stage(path):
    stages = sorted(m for m in imported_modules(path) if m.split(".")[0] == "stages")
    assert not stages, f"emotune/{path.name} imports {stages}: a stage is an entry point, never a library"


@pytest.mark.parametrize("leaf", LEAVES)
def test_the_leaf_modules_import_only_leaves_below_them(leaf):
    """errors imports nothing of emotune; paths raises its errors; atomic checks its paths (issue 28)."""
    below = LEAVES[:LEAVES.index(leaf)]
    imported = {m.removeprefix("emotune.") for m in imported_modules(ROOT / "emotune" / f"{leaf}.py")}
    assert imported <= set(below), f"emotune/{leaf}.py imports {sorted(imported - set(below))}"


@pytest.mark.parametrize("path", STAGES, ids=lambda p: p.name)
def test_every_stage_is_a_short_entry_point(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert [f.name for f in functions] == ["main"], (f"stages/{path.name} defines {[f.name for f in functions]}: "
                                                     f"a stage holds main() only; the rest belongs in emotune/")
    main = functions[0]
    assert main.end_lineno - main.lineno + 1 <= MAX_MAIN_LINES, f"stages/{path.name}: main() is too long"
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_STAGE_LINES
    assert all(m.split(".")[0] == "emotune" for m in imported_modules(path)), "a stage imports only the library"


def test_every_stage_module_is_run_by_a_dvc_stage_and_the_reverse():
    run = {stage_module(stage) for pipeline in (ROOT / "dvc.yaml", ROOT / "explain" / "dvc.yaml")
           for _, stage in pipeline_stages(pipeline)}
    assert run == {f"stages.{p.stem}" for p in STAGES}


def test_checking_params_loads_neither_pandas_nor_torch():
    script = ("import sys\nfrom emotune.config import load_params\nload_params()\n"
              "heavy = sorted(m for m in ('pandas', 'torch', 'transformers') if m in sys.modules)\n"
              "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_package_is_installed_with_its_command(tmp_path):
    """`pip install -r requirements.txt` (the README's set-up) installs this checkout as the package
    `emotune`, whose console script is the `emotune` command."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"] == {"emotune": "emotune.cli:main"}
    assert "-e ." in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    command = Path(sys.executable).parent / "emotune"
    assert command.is_file(), f"{command}: missing; install the package: pip install -e ."
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "predict" in result.stdout and "recipes" in result.stdout
    # outside a project the command says where it looked, in one line, before loading anything heavy
    result = subprocess.run([str(command), "check"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'params.yaml'}: no such file"), result.stderr
    result = subprocess.run([str(command), "check"], cwd=ROOT / "data", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and f"{ROOT / 'params.yaml'}: valid" in result.stdout, result.stderr
