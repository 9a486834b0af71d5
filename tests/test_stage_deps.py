"""Every DVC stage depends on every project module it imports, so a code change reruns exactly the
stages whose code it is (issue 15: `baseline` imported `train.sample_rows` without depending on its file,
and no stage listed config.py). The import closure is computed statically (ast) over the two packages,
stages/ (the entry points) and emotune/ (the library), including imports inside functions, and compared
with dvc.yaml and explain/dvc.yaml: a module moved or split can never leave a stage's deps stale."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from emotune.paths import USER_DATA

ROOT = Path(__file__).resolve().parent.parent  # the checkout
PACKAGES = ("stages", "emotune")
PIPELINES = [ROOT / "dvc.yaml", ROOT / "explain" / "dvc.yaml"]


def module_file(module: str) -> str | None:
    """The repository path of a project module (`emotune.train` -> emotune/train.py), None if not one."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    for path in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
        if (ROOT / path).is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """The project modules a file imports anywhere (top level or inside a function); `from emotune import
    metrics` names the module emotune.metrics."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if module_file(m) and not module_file(m).endswith("__init__.py")}


def import_closure(module: str) -> set[str]:
    """The files of `module` and of every project module it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        assert path, f"{name} is imported but is no file of {PACKAGES}"
        if path in seen:
            continue
        seen.add(path)
        todo += sorted(imported_modules(ROOT / path))
    return seen


def pipeline_stages(path: Path):
    """(stage name, stage definition) of a dvc.yaml, YAML merge keys resolved (yaml.safe_load does that)."""
    for name, stage in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"].items():
        yield name, stage.get("do", stage)


def declared_code_deps(stage: dict) -> set[str]:
    return {d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith(tuple(f"{p}/" for p in PACKAGES))}


def stage_module(stage: dict) -> str:
    match = re.match(r"python -m (stages\.\w+)\b", stage["cmd"])
    assert match, f"cmd {stage['cmd']!r} does not run a stages module"
    return match.group(1)


ALL_STAGES = [(path, name, stage) for path in PIPELINES if path.exists() for name, stage in pipeline_stages(path)]


def test_the_closure_follows_imports_inside_functions():
    # baseline imports the generative recipe inside a function (the decoder zero-shot path): part of what
    # the stage runs. It scores through emotune/reports.py, not the evaluate stage's module, so a change
    # to the training loop does not rerun the baselines.
    closure = import_closure("stages.baseline")
    assert {"stages/baseline.py", "emotune/baseline.py", "emotune/generative.py", "emotune/reports.py",
            "emotune/config.py"} <= closure
    assert not {"emotune/train.py", "emotune/evaluate.py"} & closure
    # the leaf modules import only the leaves below them (errors < paths < atomic)
    leaves = ("errors", "paths", "atomic")
    for i, leaf in enumerate(leaves):
        assert import_closure(f"emotune.{leaf}") == {f"emotune/{below}.py" for below in leaves[:i + 1]}
    assert import_closure("emotune.text") == {"emotune/text.py", "emotune/config.py", "emotune/models.py",
                                              "emotune/errors.py", "emotune/paths.py", "emotune/adapter_table.py"}


@pytest.mark.parametrize("path, name, stage", ALL_STAGES, ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in ALL_STAGES])
def test_stage_deps_are_its_import_closure(path, name, stage):
    needed = import_closure(stage_module(stage))
    declared = declared_code_deps(stage)
    missing, extra = sorted(needed - declared), sorted(declared - needed)
    assert not missing, (f"{path.relative_to(ROOT)}: stage {name!r} imports {missing} but does not depend on "
                         f"them: add them to its deps (python scripts/sync_stage_deps.py), or a change there will not rerun it")
    assert not extra, (f"{path.relative_to(ROOT)}: stage {name!r} depends on {extra}, which it never imports: "
                       f"remove them (python scripts/sync_stage_deps.py), or every change there reruns it for nothing")


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_inits_hold_no_code(package):
    """stages/__init__.py and emotune/__init__.py run with every stage but are in no deps list: each must
    stay a docstring."""
    body = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8")).body
    assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_every_fetch_depends_on_the_user_data_folder():
    fetch = dict(pipeline_stages(ROOT / "dvc.yaml"))["fetch"]
    assert USER_DATA in fetch["deps"]
    assert (ROOT / USER_DATA).is_dir(), f"{USER_DATA} must exist in every checkout (DVC fails on a missing dep)"
