"""The command lines of the DVC stages (stages/*.py): one dataset, or one dataset x model x adapter run."""
from __future__ import annotations

import argparse

from emotune.config import DatasetSpec, Params, load_params


def params_and_dataset(argv: list[str], description: str) -> tuple[Params, DatasetSpec]:
    """The command line of a per-dataset stage: `python -m stages.<stage> <dataset>`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", help="a name from params.yaml dataset_registry")
    params = load_params()
    return params, params.dataset(parser.parse_args(argv).dataset)



def run_args(argv: list[str], description: str) -> argparse.Namespace:
    """The `<dataset> <model> <adapter>` command line of the per-run stages (train, evaluate)."""
    parser = argparse.ArgumentParser(description=description)
    for name in ("dataset", "model", "adapter"):
        parser.add_argument(name)
    parser.add_argument("--seed", type=int, help="one of params.yaml `seeds` (an extra seed's run, dvc.yaml "
                                                 "train_seeds); default: the primary seed's run")
    parser.add_argument("--tuned", action="store_true", help="a tune-group run, whose plan the tune stage wrote "
                                                              "(data/plans_tuned/, dvc.yaml train_tuned)")
    return parser.parse_args(argv)
