"""clean: data/raw/<dataset> -> data/clean/<dataset> + metrics/clean/<dataset>.json.

    python -m stages.clean <dataset>

The DVC stage's entry point; the work, and why it is done this way, is emotune/clean.py.
"""
from __future__ import annotations

import sys

from emotune.artifacts import load_splits, save_splits
from emotune.atomic import atomic_dir, read_json, write_json
from emotune.clean import clean_splits, label_repairs
from emotune.errors import run_cli
from emotune.paths import data_dir, metrics_path, project_root
from emotune.stage_args import params_and_dataset


def main(argv: list[str]) -> None:
    params, spec = params_and_dataset(argv, "Clean one fetched dataset into data/clean/<dataset>/")
    raw_dir = data_dir("raw", spec.name)
    raw = load_splits(raw_dir)
    splits, report = clean_splits(raw, spec, params.clean)
    raw_meta = read_json(raw_dir / "meta.json")
    report["label_repairs"] = label_repairs(raw_meta)
    meta = raw_meta | {"rows": report["rows_out"]}
    with atomic_dir(data_dir("clean", spec.name)) as out:
        save_splits(out, splits)
        write_json(out / "meta.json", meta)
    write_json(metrics_path("clean", spec.name), {"dataset": spec.name, **report})
    print(f"clean {spec.name}: {report['rows_in']} -> {report['rows_out']}")
    if report["test_labels_unseen_in_train"]:
        unseen = report["test_labels_unseen_in_train"]
        print(f"warning: {spec.name}: test labels never seen in train: "
              f"{', '.join(f'{label} ({n} test rows)' for label, n in unseen.items())}; no model can learn them, "
              f"so their test F1 will be 0 (counted in {metrics_path('clean', spec.name).relative_to(project_root())})",
              file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
