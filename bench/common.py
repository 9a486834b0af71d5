"""What every benchmark shares: machine facts, the result file, peak RSS, small statistics.

Each benchmark prints its figures and writes one JSON: `metrics/bench/<name>.json` for a real run; a
`--tiny` run (CI) writes to `--out` or a temporary folder, never into metrics/.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout

# Idle OpenMP threads sleep instead of spinning, as in every emotune stage (emotune/train.py): on a shared CPU
# spinning threads fight the other processes and a step can run many times slower. Set before torch loads
# (every benchmark imports this module first).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


BENCH_DIR = ROOT / "metrics" / "bench"


def cpu_model() -> str:
    """e.g. "AMD EPYC (family 25, model 1, virtual machine)": the name, and family/model where the name is vague."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    extra = [f"family {fields['cpu family']}, model {fields['model']}"] if "cpu family" in fields else []
    if "hypervisor" in fields.get("flags", "").split():
        extra.append("virtual machine")
    return f"{name} ({', '.join(extra)})" if extra else name


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "dvc"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    """Where and with what a figure was measured."""
    import torch

    facts = {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": f"{platform.system()} {platform.machine()}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions(),
    }
    return facts


def command_line() -> str:
    """The command that reproduces this run (as typed from the repository root)."""
    module = Path(sys.argv[0]).with_suffix("")
    try:
        module = module.resolve().relative_to(ROOT)
        prog = "python -m " + ".".join(module.parts)
    except ValueError:
        prog = "python " + sys.argv[0]
    return " ".join([prog, *map(shlex.quote, sys.argv[1:])])


def result_path(name: str, tiny: bool, out: str | None) -> Path:
    if out:
        return Path(out)
    if tiny:
        return Path(tempfile.gettempdir()) / "emotune-bench" / f"{name}.tiny.json"
    return BENCH_DIR / f"{name}.json"


def header(name: str, tiny: bool) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"benchmark": name, "tiny": tiny, "command": command_line(),
            "date": now.date().isoformat(), "datetime_utc": now.isoformat(timespec="seconds"),
            "machine": machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def write_result(path: Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 1/5/15-minute run-queue lengths: above the core count, other work shared the CPU during the run
    data.setdefault("load_average_at_end", [round(x, 2) for x in os.getloadavg()])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux ru_maxrss is in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def bench_env(threads: int | None = None) -> dict:
    """Environment of a benchmark subprocess: offline, and the same OpenMP settings for every arm."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",
               OMP_WAIT_POLICY="PASSIVE", DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def toy_texts(n: int, seed: int, labels: list[str]):
    """`n` learnable rows (id, text, labels) in the words the tiny models' tokenizers know: each row has
    one cue word of its label among filler words. For --tiny runs only."""
    import numpy as np
    import pandas as pd

    cues = {label: word for label, word in zip(labels, ("happy", "angry", "sad", "afraid", "surprised", "love"))}
    filler = "i am you are we they so very really the a and but today night people work home life time".split()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = labels[int(rng.integers(len(labels)))]
        words = list(rng.choice(filler, size=int(rng.integers(2, 20))))
        words.insert(int(rng.integers(len(words) + 1)), cues[label])
        rows.append({"id": f"toy-{seed}-{i:05d}", "text": " ".join(words), "labels": [label]})
    return pd.DataFrame(rows)


def load_json(path: Path, missing: str = "run what writes it first") -> dict:
    """A JSON file a bench reads (a result, a metrics report, the leaderboard); a missing one stops the bench
    with its path and `missing`, what to do about it."""
    from emotune.atomic import read_json

    if not Path(path).is_file():
        raise SystemExit(f"{path}: missing; {missing}")
    return read_json(path)


def audited_slice(root: Path, dataset: str, sizes: tuple[int, int, int] | None = None, seed: int = 0):
    """data/audited/<dataset> under `root`: the mirror's rows through the project's fetch and clean (no
    audit: by default it only reports), every row or a seeded sample of (train, validation, test) rows.
    Returns (params, folder, splits written)."""
    from emotune.clean import clean_splits
    from emotune.config import load_params
    from emotune.data_registry import fetch_dataset
    from emotune.paths import SPLITS
    from emotune.rows import sample_rows

    params = load_params()
    spec = params.dataset(dataset)
    fetched = fetch_dataset(spec, params.fetch, params.seed)
    splits, _ = clean_splits(fetched.splits, spec, params.clean)
    folder = Path(root) / "data" / "audited" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    out = {split: sample_rows(splits[split], None if sizes is None else n, seed)
           for split, n in zip(SPLITS, sizes or (None,) * len(SPLITS))}
    for split, frame in out.items():
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    (folder / "meta.json").write_text(json.dumps({"name": dataset, "task": spec.task, "labels": list(spec.labels),
                                                 "checksums": fetched.checksums,
                                                 "rows": {s: len(f) for s, f in out.items()}}))
    return params, folder, out
