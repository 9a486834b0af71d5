"""The `emotune` command (pyproject.toml [project.scripts]): the user-facing tools over a project's
trained runs, run from the project folder (or any folder below it; emotune/paths.py).

    emotune predict emotion/minilm/lora --text "i feel great"     # label texts (emotune/predict.py)
    emotune export emotion/minilm/lora --out exported/             # a standalone model + card (export.py)
    emotune export emotion/minilm/lora --format onnx --quantize int8  # ONNX, no torch to run it (onnx_export.py)
    emotune serve exports/emotion/minilm/lora-onnx-int8            # HTTP JSON API on 127.0.0.1 (serve.py)
    emotune explain emotion/minilm/lora                            # token attributions (explain.py)
    emotune recipes list | show NAME | run NAME                    # published recipes (recipes.py)
    emotune runs                                                   # the trained runs of this project
    emotune check                                                  # validate params.yaml, list the runs it plans

The pipeline itself is DVC's: `dvc repro` runs the stages (stages/*.py). `python -m emotune.<command>`
works too. A command's module is imported only when it runs, so `emotune --help` and `emotune check`
start without loading torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from emotune.errors import run_cli

# command -> (one line of help, the module whose main(argv) runs it; None: a main in this file)
COMMANDS = {
    "predict": ("label new texts with a trained run", "emotune.predict"),
    "export": ("export a run as a standalone transformers or ONNX model with a model card", "emotune.export"),
    "serve": ("serve a run or an export as an HTTP JSON API (FastAPI)", "emotune.serve"),
    "explain": ("token attributions for test examples of a run", "emotune.explain"),
    "recipes": ("list, show or run a published recipe as a DVC experiment", "emotune.recipes"),
    "runs": ("list the trained runs of this project", None),
    "check": ("validate params.yaml and list the runs the pipeline would train", None),
}


def runs_main(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="emotune runs", description=COMMANDS["runs"][0]).parse_args(argv)
    from emotune.runs import known_runs

    found = known_runs()
    print("\n".join(found) if found else "no trained runs yet under models/ (run `dvc repro`)")


def check_main(argv: list[str]) -> None:
    argparse.ArgumentParser(prog="emotune check", description=COMMANDS["check"][0]).parse_args(argv)
    from emotune.config import group_notes, load_params
    from emotune.paths import params_file
    from emotune.plan import check_models_available, max_length_warnings

    params = load_params()
    check_models_available(params)
    print(f"{params_file()}: valid")
    for note in group_notes(params):
        print(note)
    for warning in max_length_warnings(params):
        print(f"warning: {warning}", file=sys.stderr)
    for matrix in params.matrices():
        runs = list(matrix.runs())
        if runs:
            print(f"{matrix.name or 'main'}: {len(runs)} runs: {', '.join('/'.join(r) for r in runs)}")
    if params.seeds:  # the extra seeds' runs (train_seeds / evaluate_seeds stages, models/seeds/<seed>/...)
        print(f"extra seeds {', '.join(map(str, params.seeds))}: {len(params.seed_runs())} runs, the main matrix "
              f"once more per seed (models/seeds/<seed>/<dataset>/<model>/<adapter>)")
    zero_shot = [f"{d}/{m}" for d in params.zero_shot_datasets() for m in params.baseline.zero_shot.models]
    if zero_shot:
        print(f"zero-shot baseline: {len(zero_shot)} scored: {', '.join(zero_shot)}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="emotune", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(f"  {name:8} {text}" for name, (text, _) in COMMANDS.items()))
    parser.add_argument("command", choices=COMMANDS, metavar="command", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments (emotune COMMAND -h)")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        sys.exit(0 if argv else 2)
    args = parser.parse_args(argv[:1])
    module = COMMANDS[args.command][1]
    local = {"runs": runs_main, "check": check_main}
    command_main = importlib.import_module(module).main if module else local[args.command]
    sys.argv[0] = f"emotune {args.command}"  # the command's own --help and errors say `emotune predict ...`
    run_cli(command_main, argv[1:])


if __name__ == "__main__":
    main()
