"""fetch: raw files (local mirror, user files or the Hub) -> data/raw/<dataset>/{split}.parquet + meta.json.

    python -m stages.fetch <dataset>

The DVC stage's entry point; the work, and why it is done this way, is emotune/data_registry.py.
"""
from __future__ import annotations

import sys

from emotune.artifacts import save_splits
from emotune.atomic import atomic_dir, write_json
from emotune.data_registry import check_tracked_by_dvc, fetch_dataset, published_size_problems
from emotune.errors import EmotuneError, run_cli
from emotune.paths import SPLITS, data_dir
from emotune.stage_args import params_and_dataset


def main(argv: list[str]) -> None:
    params, spec = params_and_dataset(argv, "Fetch one dataset into data/raw/<dataset>/")
    check_tracked_by_dvc(spec)
    fetched = fetch_dataset(spec, params.fetch, params.seed)

    wrong_size = published_size_problems(spec, fetched.splits)
    if wrong_size and fetched.source.startswith("local:"):
        raise EmotuneError(f"dataset {spec.name!r}: split sizes differ from the published ones "
                           f"({'; '.join(wrong_size)}); the files are not the expected release")
    fetched.notes += [f"differs from the published size: {p}" for p in wrong_size]

    meta = {
        "name": spec.name,
        "description": spec.description,
        "task": spec.task,
        "labels": spec.labels,
        "official_metric": spec.official_metric,
        "source": fetched.source,
        "checksums": fetched.checksums,
        "rows": {split: len(fetched.splits[split]) for split in SPLITS},
        "notes": fetched.notes,
    }
    if fetched.label_repairs():  # only then: the meta.json of a file that needed none keeps its bytes
        meta["label_repairs"] = fetched.label_repairs()
    with atomic_dir(data_dir("raw", spec.name)) as out:
        save_splits(out, {split: fetched.splits[split] for split in SPLITS})
        write_json(out / "meta.json", meta)
    print(f"fetch {spec.name}: {meta['rows']} from {fetched.source}")
    for warning in fetched.warnings:
        print(f"warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
