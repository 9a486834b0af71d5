"""fetch: raw files (local mirror, user files or the Hub) -> data/raw/<dataset>/{split}.parquet + meta.json.

    python -m stages.fetch <dataset>
"""
from __future__ import annotations

from pathlib import Path

from stages.artifacts import atomic_dir, data_dir, run_stage, save_splits, write_json
from stages.config import ROOT, SPLITS, USER_DATA, DatasetSpec, EmotuneError, LineFiles, params_and_dataset
from stages.data_registry import fetch_dataset, published_size_problems


def check_tracked_by_dvc(spec: DatasetSpec) -> None:
    """A user's own files must sit under data/user/, the folder every fetch stage depends on in dvc.yaml:
    elsewhere DVC would never see them change, and `dvc repro` would keep serving the old data."""
    if spec.mirror_dir:  # the team's read-only mirror, outside the repository; its files are sha256-pinned
        return
    user = (ROOT / USER_DATA).resolve()
    for split, files in spec.files.items():
        names = [files.text, files.labels] if isinstance(files, LineFiles) else [files]
        for name in names:
            if not (ROOT / name).resolve().is_relative_to(user):
                raise EmotuneError(
                    f"dataset_registry.{spec.name}.files.{split}: {name} is outside {USER_DATA}/; DVC tracks "
                    f"a dataset's own files only there (dvc.yaml: every fetch stage depends on {USER_DATA}), "
                    f"so a change elsewhere would never rerun the fetch. Move the file into {USER_DATA}/ "
                    f"(e.g. {USER_DATA}/{spec.name}/{Path(name).name}) and update the path.")


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
    with atomic_dir(data_dir("raw", spec.name)) as out:
        save_splits(out, {split: fetched.splits[split] for split in SPLITS})
        write_json(out / "meta.json", meta)
    print(f"fetch {spec.name}: {meta['rows']} from {fetched.source}")


if __name__ == "__main__":
    run_stage(main)
