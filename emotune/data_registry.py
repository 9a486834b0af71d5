"""Dataset registry: turn a `dataset_registry.<name>` entry of params.yaml into unified splits.

Every dataset, built-in or user-declared, comes out as DataFrames with columns `id`, `text` and
`labels` (a list of label names; exactly one for single-label tasks, possibly none for a neutral
multi-label row). Sources, in order: local files (the team's mirror of the raw files, or the user's
own CSV/TSV/JSONL, read by emotune/readers.py as predict's inputs are), then the Hugging Face Hub
through `datasets.load_dataset`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emotune import readers
from emotune.atomic import sha256_file
from emotune.config import DatasetSpec, FetchConfig, LineFiles
from emotune.errors import EmotuneError, did_you_mean
from emotune.hub import HubUnavailable, hub_reachable
from emotune.paths import SPLITS, USER_DATA, project_root

TRUE_VALUES = {"1", "true", "1.0"}
FALSE_VALUES = {"0", "false", "0.0", ""}


@dataclass
class LabelRepairs:
    """Label values of one split's file that fetch repaired instead of refusing: never silently (a warning
    line, `label_repairs` in meta.json, and the clean report counts them)."""

    where: str  # the file, or the Hub split
    unit: str  # "line" (a file's line) or "row" (a Hub or Parquet row)
    whitespace: list[int] = field(default_factory=list)  # cells with spaces around their value: stripped
    repeated: list[int] = field(default_factory=list)  # multi-label rows naming a label twice: kept once

    def counts(self) -> dict[str, int]:
        return {"whitespace_stripped": len(self.whitespace), "repeated_labels_merged": len(self.repeated)}

    def warnings(self) -> list[str]:
        out = []
        if self.whitespace:
            out.append(f"{self.where}: {len(self.whitespace)} label value(s) with spaces around them "
                       f"({self.unit}s {readers.shown_lines(self.whitespace)}): stripped")
        if self.repeated:
            out.append(f"{self.where}: {len(self.repeated)} row(s) naming a label more than once "
                       f"({self.unit}s {readers.shown_lines(self.repeated)}): each label kept once")
        return out


@dataclass
class Unified:
    """One split mapped to `id, text, labels`, and what was repaired on the way."""

    frame: pd.DataFrame
    repairs: LabelRepairs


@dataclass
class CarvedValidation:
    validation: pd.DataFrame
    train: pd.DataFrame
    note: str  # what was done, for meta.json
    warning: str | None = None  # set when the split could not be stratified


@dataclass
class Fetched:
    splits: dict[str, pd.DataFrame]
    source: str
    checksums: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    repairs: dict[str, LabelRepairs] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # printed by the stage; the facts are in notes/repairs

    def label_repairs(self) -> dict[str, dict[str, int]] | None:
        """Per split, the label values repaired (meta.json `label_repairs`); None when nothing was, so the
        meta.json of a clean file keeps its bytes."""
        if not any(any(r.counts().values()) for r in self.repairs.values()):
            return None
        return {split: self.repairs[split].counts() for split in SPLITS if split in self.repairs}


@dataclass(frozen=True)
class Columns:
    """Where text, labels and ids live in a table (a local file or a Hub split)."""

    text: str
    label: str | None = None
    labels: list[str] | None = None
    id: str | None = None
    delimiter: str | None = None  # label_delimiter
    ids_are_indices: bool = False


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def fetch_dataset(spec: DatasetSpec, cfg: FetchConfig, seed: int) -> Fetched:
    """Load every split of `spec` from the first source that has it, then carve validation if needed."""
    fetched = None
    local_problem = None
    if cfg.source == "hub" and spec.hub is None:
        raise EmotuneError(f"dataset {spec.name!r} has no hub entry but fetch.source is hub; set "
                           f"fetch.source to auto or mirror, or add dataset_registry.{spec.name}.hub")
    if cfg.source == "mirror" and not spec.files:
        raise EmotuneError(f"dataset {spec.name!r} has no local files but fetch.source is mirror; set "
                           f"fetch.source to auto or hub, or add dataset_registry.{spec.name}.files")
    if cfg.source in ("auto", "mirror") and spec.files:
        root = local_root(spec, cfg)
        missing = [p for p in _split_paths(spec, root) if not p.exists()]
        for path in _split_paths(spec, root):
            if path.is_dir():
                inside = sorted(p.name for p in path.iterdir() if p.is_file())[:5]
                raise EmotuneError(f"dataset {spec.name!r}: {path} is a folder, not a file; point "
                                   f"dataset_registry.{spec.name}.files at one file per split"
                                   + (f" (it holds {', '.join(inside)})" if inside else " (it is empty)"))
        if not missing:
            fetched = read_local(spec, root)
        else:
            local_problem = (f"{', '.join(str(p) for p in missing)} "
                             f"{'does' if len(missing) == 1 else 'do'} not exist")
            notes = [d / "SOURCE.md" for d in (root, root.parent) if (d / "SOURCE.md").exists()]
            if spec.mirror_dir and notes:
                local_problem += f" (the mirror does not carry it; {notes[0]} says why)"
            if cfg.source == "mirror" or spec.hub is None:
                fix = (f"fix the paths in dataset_registry.{spec.name}.files" if spec.hub is None else
                       "set fetch.source to auto or hub to load it from the Hugging Face Hub")
                raise EmotuneError(f"dataset {spec.name!r}: {local_problem}; {fix}")
    if fetched is None:
        try:
            fetched = read_hub(spec)
        except HubUnavailable as exc:
            lead = f"dataset {spec.name!r}: " + (f"the local copy is incomplete: {local_problem}; and "
                                                  if local_problem else "")
            raise EmotuneError(
                f"{lead}the Hugging Face Hub is unavailable ({exc}). Run the fetch on a machine that "
                f"reaches the Hub, or put the missing files in place, or leave {spec.name!r} out of "
                f"`datasets` in params.yaml.") from None
    if "validation" not in fetched.splits:
        carved = carve_validation(fetched.splits["train"], spec.multi_label, cfg.validation_fraction, seed)
        fetched.splits["validation"], fetched.splits["train"] = carved.validation, carved.train
        fetched.notes.append(carved.note)
        if carved.warning:
            fetched.warnings.append(f"{spec.name}: {carved.warning}")
    fetched.warnings += [w for repairs in fetched.repairs.values() for w in repairs.warnings()]
    return fetched


def local_root(spec: DatasetSpec, cfg: FetchConfig) -> Path:
    if spec.mirror_dir:
        mirror = Path(cfg.mirror)
        return (mirror if mirror.is_absolute() else project_root() / mirror) / spec.mirror_dir
    return project_root()


def _split_paths(spec: DatasetSpec, root: Path) -> list[Path]:
    paths = []
    for files in spec.files.values():
        names = [files.text, files.labels] if isinstance(files, LineFiles) else [files]
        paths += [root / n for n in names]
    return paths


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------
def verify_checksums(spec: DatasetSpec, root: Path) -> dict[str, str]:
    """sha256 of every file of `spec`; a file whose pinned checksum differs stops the fetch."""
    actual = {}
    for path in _split_paths(spec, root):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        actual[rel] = sha256_file(path)
        pinned = spec.sha256.get(rel)
        if pinned and pinned != actual[rel]:
            raise EmotuneError(
                f"dataset {spec.name!r}: checksum mismatch for {path}\n"
                f"  expected (params.yaml dataset_registry.{spec.name}.sha256.{rel}): {pinned}\n"
                f"  actual:   {actual[rel]}\n"
                f"The file is not the version this project was built on (changed, truncated or a "
                f"different release). Restore the original file; or, if you trust the new one, pin its "
                f"checksum in params.yaml and expect different results.")
    unknown = set(spec.sha256) - set(actual)
    if unknown:
        raise EmotuneError(f"dataset_registry.{spec.name}.sha256 pins {sorted(unknown)}, which no split uses; "
                           f"files are {sorted(actual)}")
    return actual


def read_local(spec: DatasetSpec, root: Path) -> Fetched:
    checksums = verify_checksums(spec, root)
    unified = {}
    for split, files in spec.files.items():
        if isinstance(files, LineFiles):
            unified[split] = read_lines(spec, root / files.text, root / files.labels, split)
        else:
            path = root / files
            key = f"dataset_registry.{spec.name}.files.{split}"
            table, lines = read_table(spec, path, key)
            unified[split] = to_unified(table, file_columns(spec), spec, split, str(path), lines)
    # A relative source keeps meta.json (and so the DVC hashes) the same on every machine.
    return Fetched({s: u.frame for s, u in unified.items()}, source=f"local:{os.path.relpath(root, project_root())}",
                   checksums=checksums, repairs={s: u.repairs for s, u in unified.items()})


def file_columns(spec: DatasetSpec) -> Columns:
    return Columns(spec.text_column, spec.label_column, spec.label_columns, spec.id_column,
                   spec.label_delimiter, spec.label_ids)


def read_text(spec: DatasetSpec, path: Path, key: str) -> str:
    """A dataset file's text (emotune/readers.py decodes it, as for predict); an empty file names `key`.
    A file of the team's mirror is a published release, read as published: C1 control characters there
    (SemEval-2018 E-c train has one) are kept, with a warning, so its scores stay comparable."""
    data = path.read_bytes()
    text = readers.decode(data, str(path), allow_c1_controls=bool(spec.mirror_dir))
    if not text.strip():
        raise EmotuneError(f"{path}: the file is empty; point {key} at the right file")
    if spec.mirror_dir and readers.C1_CONTROLS.search(text):
        print(f"warning: {path}: C1 control characters on line(s) {readers.shown_lines(readers.c1_control_lines(text))}"
              f" (Windows-1252 text decoded as Latin-1 by the release's authors); kept as published",
              file=sys.stderr)
    return text


def read_table(spec: DatasetSpec, path: Path, key: str) -> tuple[pd.DataFrame, list[int] | None]:
    """A CSV/TSV/JSONL/Parquet dataset file as a table of its raw values and each row's line number (None
    for Parquet: its rows are numbered from 0, as the Hub's are)."""
    fmt = readers.file_format(path, spec.format,
                              f"set format: {' | '.join(f for f in readers.FORMATS if f != 'lines')} in "
                              f"dataset_registry.{spec.name}")
    if fmt == "parquet":
        table = readers.parquet_table(path.read_bytes(), str(path))
        return pd.DataFrame(table.rows, columns=table.columns, dtype=object), None
    if fmt == "lines":
        # One text a line holds no labels; only a pair of line-aligned files (read_lines) does.
        raise EmotuneError(f"{path}: format lines (plain text, one text a line: what .txt means) has no labels; "
                           f"if the file is a table set format: csv | tsv | jsonl in dataset_registry.{spec.name}, "
                           f"or give texts and labels as two line files: {key}: {{text: ..., labels: ...}}")
    if not spec.header and not spec.columns:
        raise EmotuneError(f"{path}: header: false needs the column names; set columns: [...] in "
                           f"dataset_registry.{spec.name}")
    wanted = (spec.text_column, *(spec.label_columns or []), *filter(None, [spec.label_column]))
    table = readers.parse(read_text(spec, path, key), fmt, str(path), delimiter=spec.delimiter, quoting=spec.quoting,
                          names=None if spec.header else spec.columns, wanted=wanted,
                          how_to_declare=f"set delimiter: or format: in dataset_registry.{spec.name}")
    if spec.header and spec.columns and spec.columns != table.columns:
        raise EmotuneError(f"{path}: header {table.columns} differs from dataset_registry.{spec.name}.columns "
                           f"{spec.columns}")
    return pd.DataFrame(table.rows, columns=table.columns, dtype=object), table.lines


def read_lines(spec: DatasetSpec, text_path: Path, label_path: Path, split: str) -> Unified:
    """TweetEval layout: texts and labels in two line-aligned files (so blank lines count)."""
    key = f"dataset_registry.{spec.name}.files.{split}"
    texts, labels = (readers.plain_lines(read_text(spec, path, key), keep_blank_lines=True).rows
                     for path in (text_path, label_path))
    if len(texts) != len(labels):
        raise EmotuneError(f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}; "
                           f"the two files must be line-aligned")
    table = pd.DataFrame({"text": [r["text"] for r in texts], "label": [r["text"] for r in labels]}, dtype=object)
    columns = Columns("text", "label", None, None, None, spec.label_ids)
    return to_unified(table, columns, spec, split, str(label_path), list(range(1, len(table) + 1)))


# ---------------------------------------------------------------------------------------------
# One mapping for files and Hub splits
# ---------------------------------------------------------------------------------------------
def to_unified(table: pd.DataFrame, cols: Columns, spec: DatasetSpec, split: str, where: str,
               lines: list[int] | None) -> Unified:
    """Map a raw table to `id, text, labels`; unknown labels or missing columns fail with the row.
    `lines` gives each row's line in its file (None for Hub and Parquet rows, reported by row number)."""
    needed = [cols.text, *filter(None, [cols.label, cols.id]), *(cols.labels or [])]
    for column in needed:
        if column not in table.columns:
            raise EmotuneError(f"{where}: no column {column!r}{did_you_mean(column, table.columns)}; "
                               f"columns are {list(table.columns)}. Fix dataset_registry.{spec.name} in params.yaml")
    if table.empty:
        raise EmotuneError(f"{where}: no data rows (only a header line {list(table.columns)}); add the examples "
                           f"below the header, or point dataset_registry.{spec.name}.files.{split} at the file "
                           f"that has them")
    known = set(spec.labels)
    problems = []
    hints = set()
    repairs = LabelRepairs(where, "line" if lines else "row")

    def at(i: int) -> int:
        return lines[i] if lines else i

    def bad(i, message):
        problems.append(f"{repairs.unit} {at(i)}: {message}")

    labels = []
    empty = []  # single-label rows whose label cell is empty
    if cols.labels:
        for i, row in enumerate(table[cols.labels].itertuples(index=False)):
            names = []
            for name, value in zip(cols.labels, row):
                flag = str(value).strip().lower()
                if flag in TRUE_VALUES:
                    names.append(name)
                elif flag not in FALSE_VALUES:
                    bad(i, f"column {name!r} is {value!r}, expected 0 or 1")
            labels.append(names)
    else:
        for i, value in enumerate(table[cols.label]):
            cell = label_values(value, cols.delimiter)
            if cell.padded:
                repairs.whitespace.append(at(i))
            values = cell.values
            if not values and not spec.multi_label:
                empty.append(i)
                labels.append([])
                continue
            if cols.ids_are_indices:
                names = []
                for v in values:
                    index = int(v) if v.lstrip("-").isdigit() else -1
                    if 0 <= index < len(spec.labels):
                        names.append(spec.labels[index])
                    else:
                        bad(i, f"label {v!r}{f' (of {cell.shown!r})' if len(values) > 1 else ''} is not an index "
                               f"0..{len(spec.labels) - 1} into labels")
            else:
                names = values
            if len(set(names)) < len(names):
                repairs.repeated.append(at(i))
                names = list(dict.fromkeys(names))
            if len(names) > 1 and not spec.multi_label:
                bad(i, f"{len(names)} labels {names} in a single-label dataset (task: single_label)")
            unknown = [] if cols.ids_are_indices else [name for name in names if name not in known]
            separator = other_separator(unknown, known, cols.delimiter)
            numeric = not cols.ids_are_indices and unknown and all(n.lstrip("-").isdigit() for n in unknown)
            for name in unknown:
                if separator:
                    bad(i, f"label {name!r} looks like labels joined by {separator!r}, not the "
                           f"label_delimiter {cols.delimiter!r}" if cols.delimiter else
                           f"label {name!r} looks like several labels joined by {separator!r}")
                else:
                    bad(i, f"unknown label {name!r}{'' if numeric else did_you_mean(name, known)}")
            if separator:
                hints.add(f"the label column seems to use {separator!r} between labels: set "
                          f"dataset_registry.{spec.name}.label_delimiter: {separator!r}"
                          + ("" if spec.multi_label else " (and task: multi_label)"))
            if numeric:
                hints.add(f"the labels are numbers: if they are positions in labels (0 = {spec.labels[0]!r}), "
                          f"set dataset_registry.{spec.name}.label_ids: true"
                          + (f" (with label_delimiter: {cols.delimiter!r} the ids of a row are split first)"
                             if cols.delimiter else ""))
            labels.append(names)
    if empty:
        raise EmotuneError(f"{where}: empty label on {len(empty)} row(s) ({repairs.unit}s "
                           f"{readers.shown_lines([at(i) for i in empty])}); every row of a single-label dataset "
                           f"needs one label of {spec.labels}: fill in the label column {cols.label!r} there, or "
                           f"remove those rows")
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        fixes = "".join(f"\nHint: {h}." for h in sorted(hints))
        raise EmotuneError(f"{where}: {len(problems)} bad label value(s):\n  {shown}\n"
                           f"Labels of {spec.name!r} are {spec.labels}: correct the rows, or add the "
                           f"label to dataset_registry.{spec.name}.labels in params.yaml.{fixes}")
    if spec.multi_label and not spec.allow_empty_labels:
        no_label = [i for i, names in enumerate(labels) if not names]
        if no_label:
            raise EmotuneError(
                f"{where}: {len(no_label)} row(s) with no label at all ({repairs.unit}s "
                f"{readers.shown_lines([at(i) for i in no_label])}). "
                f"Give each row at least one label; or, if a row with no emotion is valid in this dataset "
                f"(a neutral text), set dataset_registry.{spec.name}.allow_empty_labels: true")
    texts = ["" if t is None else str(t) for t in table[cols.text]]
    ids = ([str(v) for v in table[cols.id]] if cols.id
           else [f"{spec.name}-{split}-{i:06d}" for i in range(len(table))])
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise EmotuneError(f"{where}: id {dup!r} occurs more than once in column {cols.id!r}; ids must "
                           f"be unique (or drop id_column to number rows)")
    return Unified(pd.DataFrame({"id": ids, "text": texts, "labels": labels}), repairs)


@dataclass(frozen=True)
class LabelCell:
    values: list[str]  # the label values of one cell, stripped, empty ones dropped
    padded: bool  # the cell (or a list item) had spaces around its value
    shown: str  # the cell as the user wrote it, for messages


def label_values(value, delimiter: str | None) -> LabelCell:
    """The label values of one cell: a list column's items (Parquet, JSON arrays, Hub sequences), the parts
    between `delimiter`s (`3,12` with label_delimiter ","), or the cell itself. Spaces count as a repair
    only around a whole value: `joy, anger` is the usual way to write a delimited list."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = ["" if v is None else str(v) for v in value]
        return LabelCell([v.strip() for v in items if v.strip()], any(v != v.strip() for v in items if v.strip()),
                         str(items))
    text = "" if value is None or pd.isna(value) else str(value)
    parts = text.split(delimiter) if delimiter else [text]
    return LabelCell([p.strip() for p in parts if p.strip()], bool(text.strip()) and text != text.strip(), text)


def other_separator(unknown: list[str], known: set[str], delimiter: str | None) -> str | None:
    """The separator that splits the unknown values into known labels (`joy;;fear` in a `|` column: `;`)."""
    for separator in ("|", ";", ",", "/", "+", " "):
        if separator == delimiter:
            continue
        parts = [[p.strip() for p in name.split(separator) if p.strip()] for name in unknown]
        if unknown and all(len(p) > 1 and set(p) <= known for p in parts):
            return separator
    return None


# ---------------------------------------------------------------------------------------------
# Hugging Face Hub
# ---------------------------------------------------------------------------------------------
def read_hub(spec: DatasetSpec, load_dataset=None) -> Fetched:
    """Load `spec.hub` with `datasets.load_dataset` and map it like a local file."""
    hub = spec.hub
    local = project_root() / hub.path  # a folder of data files (or a saved Hub copy) loads with no network
    if load_dataset is None:
        import datasets

        if not local.exists():
            hub_reachable()
        load_dataset = datasets.load_dataset
    try:
        dsd = load_dataset(str(local) if local.exists() else hub.path, hub.name, revision=hub.revision)
    except (ConnectionError, OSError) as exc:
        raise HubUnavailable(str(exc)) from None
    unified = {}
    for split, hub_split in hub.splits.items():
        if hub_split not in dsd:
            if split == "validation":
                continue
            raise EmotuneError(f"hub dataset {hub.path} ({hub.name}) has no split {hub_split!r}; "
                               f"it has {list(dsd)}. Fix dataset_registry.{spec.name}.hub.splits")
        unified[split] = hub_split_to_frame(dsd[hub_split], spec, split)
    revision = hub.revision or "main"
    return Fetched({s: u.frame for s, u in unified.items()}, source=f"hub:{hub.path}/{hub.name or ''}@{revision}",
                   checksums={f"{split}.fingerprint": dsd[s]._fingerprint for split, s in hub.splits.items()
                              if s in dsd}, repairs={s: u.repairs for s, u in unified.items()})


def hub_split_to_frame(ds, spec: DatasetSpec, split: str) -> Unified:
    hub = spec.hub
    table = ds.to_pandas()
    feature = ds.features.get(hub.label_column) if hub.label_column else None
    if feature is not None and hasattr(feature, "int2str"):  # ClassLabel: ints -> names
        table[hub.label_column] = [feature.int2str(int(v)) if int(v) >= 0 else "<unlabelled -1>"
                                   for v in table[hub.label_column]]
    cols = Columns(hub.text_column, hub.label_column, hub.label_columns, hub.id_column)
    name = f"{hub.path}" + (f" ({hub.name})" if hub.name else "")
    return to_unified(table, cols, spec, split, f"hub dataset {name}, split {split}", None)


# ---------------------------------------------------------------------------------------------
# Validation split
# ---------------------------------------------------------------------------------------------
def carve_validation(train: pd.DataFrame, multi_label: bool, fraction: float, seed: int) -> CarvedValidation:
    """Seeded split of train into validation and train, stratified by label where every label can be
    (multi-label rows by their first label); where not, a random split that says so and why."""
    keys = train["labels"].map(lambda ls: "|".join(sorted(ls)) if not multi_label else
                               (ls[0] if ls else "<none>"))
    per_key = keys.value_counts()
    held_out = int(np.ceil(fraction * len(train)))
    if len(train) < 2 or held_out >= len(train):
        raise EmotuneError(f"train has {len(train)} rows: too few to carve a validation split of "
                           f"{fraction:.0%}; add a validation file or more training rows")
    single = sorted(per_key[per_key < 2].index)
    # sklearn stratifies only where every stratum has 2 rows and the held-out rows can hold one of each
    reason = (f"the label(s) {', '.join(single)} have a single train row" if single else
              f"{held_out} validation rows cannot hold each of the {len(per_key)} labels" if held_out < len(per_key)
              else None)
    rest, val = train_test_split(train, test_size=fraction, random_state=seed,
                                 stratify=None if reason else keys)
    how = "stratified" if not reason else f"NOT stratified ({reason}): a random split"
    warning = None if not reason else (
        f"validation carved from train without stratification: {reason}, so the validation split may lack "
        f"labels. Give a validation file, more rows of those labels, or a larger fetch.validation_fraction")
    return CarvedValidation(val.reset_index(drop=True), rest.reset_index(drop=True),
                            f"validation carved from train: {fraction:.0%}, {how}, seed {seed}", warning)


def published_size_problems(spec: DatasetSpec, splits: dict[str, pd.DataFrame]) -> list[str]:
    return [f"{split}: {len(splits[split])} rows, published {n}"
            for split, n in spec.split_sizes.items() if split in splits and len(splits[split]) != n]


__all__ = ["fetch_dataset", "read_hub", "hub_split_to_frame", "carve_validation", "Fetched", "SPLITS"]


def check_tracked_by_dvc(spec: DatasetSpec) -> None:
    """A user's own files must sit under data/user/, the folder every fetch stage depends on in dvc.yaml:
    elsewhere DVC would never see them change, and `dvc repro` would keep serving the old data."""
    if spec.mirror_dir:  # the team's read-only mirror, outside the repository; its files are sha256-pinned
        return
    user = (project_root() / USER_DATA).resolve()
    for split, files in spec.files.items():
        names = [files.text, files.labels] if isinstance(files, LineFiles) else [files]
        for name in names:
            if not (project_root() / name).resolve().is_relative_to(user):
                raise EmotuneError(
                    f"dataset_registry.{spec.name}.files.{split}: {name} is outside {USER_DATA}/; DVC tracks "
                    f"a dataset's own files only there (dvc.yaml: every fetch stage depends on {USER_DATA}), "
                    f"so a change elsewhere would never rerun the fetch. Move the file into {USER_DATA}/ "
                    f"(e.g. {USER_DATA}/{spec.name}/{Path(name).name}) and update the path.")
