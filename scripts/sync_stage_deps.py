"""Rewrite the code deps of every stage in dvc.yaml and explain/dvc.yaml to the stage's import closure
(the stage module first, then the library modules it reaches, sorted), leaving every other dep and
comment where it is. tests/test_stage_deps.py fails until they match; this fixes them after a code move.

    python scripts/sync_stage_deps.py        # rewrites in place, prints the stages it changed
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_stage_deps import PACKAGES, PIPELINES, import_closure  # noqa: E402

CODE_DEP = re.compile(rf"^(\s*)- ({'|'.join(PACKAGES)})/\S+\.py\s*$")
CMD = re.compile(r"^\s*cmd: python -m (stages\.\w+)")


def sync(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out, changed, module, i = [], [], None, 0
    while i < len(lines):
        line = lines[i]
        if match := CMD.match(line):
            module = match.group(1)
        if CODE_DEP.match(line) and module:
            indent = CODE_DEP.match(line).group(1)
            old = []
            while i < len(lines) and CODE_DEP.match(lines[i]):
                old.append(lines[i].split("- ", 1)[1].strip())
                i += 1
            stage_file = f"{module.replace('.', '/')}.py"
            new = [stage_file, *sorted(import_closure(module) - {stage_file})]
            if new != old:
                changed.append(module)
            out += [f"{indent}- {dep}\n" for dep in new]
            module = None
            continue
        out.append(line)
        i += 1
    path.write_text("".join(out), encoding="utf-8")
    return changed


if __name__ == "__main__":
    for pipeline in PIPELINES:
        for module in sync(pipeline):
            print(f"{pipeline.relative_to(ROOT)}: {module}")
