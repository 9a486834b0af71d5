"""The layout figures of issue 17: lines per DVC stage module, the longest function, and how many
project modules (and lines) a change to one stage must read: the stage's import closure.

    python -m bench.layout            # prints the table, writes metrics/bench/layout.json

The closure is static (ast, imports inside functions included), over the `stages` and `emotune`
packages, whichever exist: the same script measured the tree before and after the redesign
(`--before` writes metrics/bench/layout_before.json; run it in a checkout of the old commit).
"own" is a stage's closure minus the modules every stage reaches (the config and its leaves): what a
change to that one stage has to read beyond the shared, validated config."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("stages", "emotune")
DVC_STAGES = ("fetch", "clean", "audit", "plan", "tokenize", "train", "evaluate", "baseline", "aggregate")


def module_path(module: str) -> Path | None:
    parts = module.split(".")
    for candidate in (REPO.joinpath(*parts).with_suffix(".py"), REPO.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_path(m)}


def closure(module: str) -> set[Path]:
    seen, todo = set(), [module]
    while todo:
        path = module_path(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += sorted(imports(path))
    return {p for p in seen if p.name != "__init__.py" or p.read_text().strip().count("\n") > 3}


def longest_function(paths) -> tuple[int, str]:
    best = (0, "")
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > best[0]:
                    best = (length, f"{path.relative_to(REPO)}:{node.name}")
    return best


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def main() -> None:
    code = sorted(p for pkg in PACKAGES for p in (REPO / pkg).glob("**/*.py"))
    rows = {}
    reaches = {stage: closure(f"stages.{stage}") for stage in DVC_STAGES}
    # What every stage reaches (the config and the leaves): read once, then trusted. The rest of a
    # stage's closure is what a change to that one stage has to read.
    shared = set.intersection(*reaches.values())
    for stage in DVC_STAGES:
        path = REPO / "stages" / f"{stage}.py"
        reach = reaches[stage]
        own = reach - shared
        rows[stage] = {"stage_lines": lines(path), "closure_modules": len(reach),
                       "closure_lines": sum(lines(p) for p in reach),
                       "own_modules": len(own), "own_lines": sum(lines(p) for p in own),
                       "longest_function": longest_function([path])[0]}
    length, where = longest_function(code)
    figures = {"stages_modules": len(list((REPO / "stages").glob("*.py"))),
               "shared_by_every_stage": sorted(str(p.relative_to(REPO)) for p in shared),
               "shared_lines": sum(lines(p) for p in shared),
               "code_modules": len(code), "code_lines": sum(lines(p) for p in code),
               "longest_function": {"lines": length, "where": where}, "stages": rows}
    print(f"{'stage':10} {'lines':>6} {'longest fn':>10} {'closure':>8} {'closure lines':>14} {'own':>4} "
          f"{'own lines':>10}")
    for stage, row in rows.items():
        print(f"{stage:10} {row['stage_lines']:6} {row['longest_function']:10} {row['closure_modules']:8} "
              f"{row['closure_lines']:14} {row['own_modules']:4} {row['own_lines']:10}")
    print(f"shared by every stage: {', '.join(figures['shared_by_every_stage'])} ({figures['shared_lines']} lines)")
    print(f"{figures['code_modules']} modules, {figures['code_lines']} lines; longest function {length} lines ({where})")
    out = REPO / "metrics" / "bench" / ("layout_before.json" if "--before" in sys.argv else "layout.json")
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
