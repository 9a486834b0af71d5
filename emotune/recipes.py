"""Published recipes as presets: recipes/<name>.yaml holds the params.yaml overrides that reproduce one
write-up, and this command turns them into a DVC experiment.

    emotune recipes list
    emotune recipes show <name> [--offline]          # the `dvc exp run -S ...` command line
    emotune recipes run <name> [--offline] [--queue] [-S key=value ...]
                                            # checks the params, then runs that command (-S: more
                                            # overrides after the recipe's, e.g. a sweep grid)

A recipe file:

    title: ...                 # one line
    source: ...                # what the write-up did
    reported: {metric, value, note}
    notes: [...]               # where emotune's run differs, and why
    params:                    # dotted params.yaml keys -> values, exactly what `-S key=value` sets
      adapter.r: 128
      train.warmup_steps: 1000
    offline:                   # overrides on top of `params` for a machine without the Hub: the same
      models: [gemma3]         # settings on the offline model of the same family (a real smoke run)

Each key becomes `-S ++key=value` (Hydra's override grammar, which `dvc exp run` parses: `++` sets a key
whether or not params.yaml has it; a mapping value merges into the mapping params.yaml has there).
Before DVC runs anything the overrides are applied to a copy of params.yaml with DVC's own function
and validated (emotune/config.py), so a bad recipe fails at once, naming its file and key.
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from emotune.config import Params, load_params
from emotune.errors import EmotuneError, run_cli
from emotune.paths import params_file as project_params
from emotune.paths import project_root

RECIPE_KEYS = ("title", "source", "reported", "notes", "params", "offline")


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    title: str
    source: str
    reported: dict
    params: dict[str, Any]
    offline: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def overrides(self, offline: bool = False) -> dict[str, Any]:
        """The dotted keys and values this recipe sets (the offline ones over the others)."""
        return {**self.params, **(self.offline if offline else {})}


def recipe_names(folder: Path | None = None) -> list[str]:
    folder = project_root() / "recipes" if folder is None else Path(folder)
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def load_recipe(name: str, folder: Path | None = None) -> Recipe:
    folder = project_root() / "recipes" if folder is None else Path(folder)
    path = Path(name) if name.endswith(".yaml") else Path(folder) / f"{name}.yaml"
    if not path.exists():
        known = recipe_names(folder)
        from emotune.errors import did_you_mean

        raise EmotuneError(f"no recipe {name!r}{did_you_mean(name, known)}; known: {', '.join(known)} "
                           f"(files in {folder})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EmotuneError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise EmotuneError(f"{path}: expected a mapping with {', '.join(RECIPE_KEYS)}")
    unknown = sorted(set(data) - set(RECIPE_KEYS))
    if unknown:
        raise EmotuneError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(RECIPE_KEYS)}")
    for key in ("title", "source", "params"):
        if not data.get(key):
            raise EmotuneError(f"{path}: missing {key!r}")
    for key in ("params", "offline"):
        if not isinstance(data.get(key) or {}, dict):
            raise EmotuneError(f"{path}: {key} must map dotted params.yaml keys to values")
    return Recipe(path.stem, path, data["title"], data["source"], data.get("reported") or {}, data["params"],
                  data.get("offline") or {}, list(data.get("notes") or []))


# ---------------------------------------------------------------------------------------------
# Overrides in Hydra's grammar (what `dvc exp run -S` parses)
# ---------------------------------------------------------------------------------------------
HYDRA_WORDS = ("null", "true", "false", "nan", "inf", "-inf")  # bare, Hydra would read these as values


def hydra_value(value: Any) -> str:
    """`value` as a Hydra override value that parses back to exactly it. Plain words stay bare, other
    strings are quoted (so `null`-like words, spaces, colons and commas stay strings); mapping keys are left
    bare (Hydra reads `gemma-1.1-2b-it` and `owner/name` as keys, not quoted ones)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z_][\w\-./]*", value) and value.lower() not in HYDRA_WORDS:
            return value  # a plain word (emotion, all-linear, owner/name): Hydra reads it as that string
        quote = "'" if '"' in value and "'" not in value else '"'  # '"..."' reads well inside shell quotes
        return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise EmotuneError(f"cannot express {value!r} as a params override")


def set_args(recipe: Recipe, offline: bool = False) -> list[str]:
    """`++key=value` for each override: the strings `dvc exp run -S` takes."""
    return [f"++{key}={hydra_value(value)}" for key, value in recipe.overrides(offline).items()]


def apply(recipe: Recipe, offline: bool, params_file: Path, out: Path) -> Path:
    """Write `params_file` with the recipe's overrides to `out`, with DVC's own override code."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    args = set_args(recipe, offline)
    shutil.copyfile(params_file, out)
    try:
        apply_overrides(out, args)  # all at once, as `dvc exp run` does
        return out
    except InvalidArgumentError:
        pass
    for arg in args:  # find the one DVC refuses, to name it
        shutil.copyfile(params_file, out)
        try:
            apply_overrides(out, [arg])
        except InvalidArgumentError as exc:
            raise EmotuneError(f"{recipe.path}: {arg.split('=', 1)[0][2:]}: DVC cannot set {arg!r} "
                               f"({exc.__cause__ or exc})") from None
    raise EmotuneError(f"{recipe.path}: DVC cannot apply these overrides together: {args}")


def check(recipe: Recipe, offline: bool = False, params_file: Path | None = None) -> Params:
    """The Params the experiment will run with; any error names the recipe file."""
    params_file = project_params() if params_file is None else Path(params_file)
    with tempfile.TemporaryDirectory() as tmp:
        path = apply(recipe, offline, Path(params_file), Path(tmp) / "params.yaml")
        try:
            return load_params(path)
        except EmotuneError as exc:
            message = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")  # the temporary copy
            raise EmotuneError(f"{recipe.path}{' (offline)' if offline else ''}: {message}") from None


def command(recipe: Recipe, offline: bool = False, queue: bool = False, extra: list[str] = ()) -> list[str]:
    """`dvc exp run` with the recipe's overrides, then the user's own `extra` -S overrides (a sweep such as
    `train.lr=1e-4,5e-4` queues one experiment per value; DVC names those itself)."""
    name = recipe.name.replace("_", "-") + ("-offline" if offline else "")
    sweep = any("," in arg.split("=", 1)[-1] and not arg.split("=", 1)[-1].startswith(("[", "{", "'", '"'))
                for arg in extra)
    args = ["dvc", "exp", "run", *([] if sweep else ["-n", name]), *(["--queue"] if queue else [])]
    for arg in [*set_args(recipe, offline), *extra]:
        args += ["-S", arg]
    return args


def describe(recipe: Recipe, params: Params, offline: bool) -> str:
    runs = [f"{m.name or 'main'}: {'/'.join(r)}" for m in params.matrices() for r in m.runs()]
    reported = recipe.reported
    figure = (f"{reported.get('metric')} {reported.get('value')}" if reported.get("value") is not None
              else "no single figure") + (f" ({reported['note']})" if reported.get("note") else "")
    lines = [f"{recipe.name}: {recipe.title}", f"  reported: {figure}",
             f"  runs{' (offline)' if offline else ''}: " + (", ".join(runs) or "none")]
    lines += [f"  note: {n}" for n in recipe.notes]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Run a published recipe (recipes/<name>.yaml) as a DVC experiment")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="the recipes and what they reported")
    for action in ("show", "run"):
        p = sub.add_parser(action, help="print the dvc exp run command" if action == "show"
                           else "check the params, then dvc exp run")
        p.add_argument("name")
        p.add_argument("--offline", action="store_true",
                       help="the recipe's offline variant: the same settings on an offline model of its family")
        p.add_argument("--queue", action="store_true", help="queue the experiment (dvc queue start runs it)")
        p.add_argument("-S", "--set-param", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                       help="more overrides after the recipe's, as dvc exp run -S takes them (a,b,c: a sweep)")
    args = parser.parse_args(argv)
    if args.action == "list":
        for name in recipe_names():
            recipe = load_recipe(name)
            print(describe(recipe, check(recipe), False) + "\n")
        return
    recipe = load_recipe(args.name)
    params = check(recipe, args.offline)
    print(describe(recipe, params, args.offline))
    cmd = command(recipe, args.offline, args.queue, args.extra)
    print(shlex.join(cmd))
    if args.action == "run":
        sys.exit(subprocess.call(cmd, cwd=project_root()))


if __name__ == "__main__":
    run_cli(main)
