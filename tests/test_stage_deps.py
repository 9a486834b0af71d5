"""Every DVC stage depends on every project module it imports, so a code change reruns exactly the
stages whose code it is (issue 15: `baseline` imported `stages.train.sample_rows` without depending on
stages/train.py, and no stage listed stages/config.py). The import closure is computed statically (ast)
over stages/*.py, including imports inside functions, and compared with dvc.yaml and explain/dvc.yaml."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stages.config import ROOT, USER_DATA

STAGES_DIR = ROOT / "stages"
PIPELINES = [ROOT / "dvc.yaml", ROOT / "explain" / "dvc.yaml"]


def imported_modules(path: Path) -> set[str]:
    """The `stages.<module>` names a file imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("stages.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "stages":  # from stages import metrics
                found |= {f"stages.{a.name}" for a in node.names}
            elif node.module.startswith("stages."):
                found.add(node.module)
    return found


def module_file(module: str) -> str:
    return f"stages/{module.removeprefix('stages.')}.py"


def import_closure(module: str) -> set[str]:
    """The files of `module` and of every project module it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path in seen:
            continue
        assert (ROOT / path).is_file(), f"{name} is imported but {path} does not exist"
        seen.add(path)
        todo += sorted(imported_modules(ROOT / path))
    return seen


def pipeline_stages(path: Path):
    """(stage name, stage definition) of a dvc.yaml, YAML merge keys resolved (yaml.safe_load does that)."""
    for name, stage in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"].items():
        yield name, stage.get("do", stage)


def declared_code_deps(stage: dict) -> set[str]:
    return {d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith("stages/")}


def stage_module(stage: dict) -> str:
    match = re.match(r"python -m (stages\.\w+)\b", stage["cmd"])
    assert match, f"cmd {stage['cmd']!r} does not run a stages module"
    return match.group(1)


ALL_STAGES = [(path, name, stage) for path in PIPELINES if path.exists() for name, stage in pipeline_stages(path)]


def test_the_closure_follows_imports_inside_functions():
    # config imports model_registry inside _parse (validation of model names), train imports adapters
    # inside a function: both are part of what the stages run.
    assert "stages/model_registry.py" in import_closure("stages.fetch")
    assert {"stages/train.py", "stages/adapters.py", "stages/config.py", "stages/artifacts.py"} <= \
        import_closure("stages.baseline")
    assert import_closure("stages.text") == {"stages/text.py", "stages/config.py", "stages/model_registry.py",
                                             "stages/artifacts.py"}


@pytest.mark.parametrize("path, name, stage", ALL_STAGES, ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in ALL_STAGES])
def test_stage_deps_are_its_import_closure(path, name, stage):
    needed = import_closure(stage_module(stage))
    declared = declared_code_deps(stage)
    missing, extra = sorted(needed - declared), sorted(declared - needed)
    assert not missing, (f"{path.relative_to(ROOT)}: stage {name!r} imports {missing} but does not depend on "
                         f"them: add them to its deps, or a change there will not rerun it")
    assert not extra, (f"{path.relative_to(ROOT)}: stage {name!r} depends on {extra}, which it never imports: "
                       f"remove them, or every change there reruns it for nothing")


def test_the_package_init_holds_no_code():
    """stages/__init__.py runs with every stage but is in no deps list: it must stay a docstring."""
    body = ast.parse((STAGES_DIR / "__init__.py").read_text(encoding="utf-8")).body
    assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_every_fetch_depends_on_the_user_data_folder():
    fetch = dict(pipeline_stages(ROOT / "dvc.yaml"))["fetch"]
    assert USER_DATA in fetch["deps"]
    assert (ROOT / USER_DATA).is_dir(), f"{USER_DATA} must exist in every checkout (DVC fails on a missing dep)"
