"""explain (explain/dvc.yaml, off the default pipeline): token attributions for test examples of one run
-> metrics/explain/<dataset>/<model>/<adapter>/. The same command as `emotune explain <run>`, with its
defaults (emotune/explain.py).

    python -m stages.explain <dataset>/<model>/<adapter>
"""
from __future__ import annotations

from emotune import explain
from emotune.errors import run_cli


def main(argv: list[str]) -> None:
    explain.main(argv)


if __name__ == "__main__":
    run_cli(main)
