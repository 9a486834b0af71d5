"""Nothing is ever left half-written: every output is built under a temporary name next to its final
path and renamed into place only when complete; and never outside the project (emotune/paths.py
check_output: no name from params.yaml and no symlinked folder can move an output out of it). A leaf:
imports only the leaves emotune.errors and emotune.paths."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from emotune.paths import check_output


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(final: Path) -> list[Path]:
    """Remove the `.<name>.tmp-<pid>` and `.<name>.old-<pid>` siblings of `final` that a killed run left
    (SIGKILL or a power cut skips every cleanup), and return them. Only this output's own temporaries, and
    only those whose process is gone: a run writing the same output right now keeps its own."""
    final = Path(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(?:tmp|old)-(\d+)")
    removed = []
    for path in final.parent.iterdir() if final.parent.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match and int(match[1]) != os.getpid() and not process_alive(int(match[1])):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def atomic_dir(final: Path):
    """Yield a fresh temporary directory that replaces `final` on success and vanishes on error, with the
    folders above it that this call created (a failed tokenize of `org/model` left data/tokenized/<d>/org/)."""
    final = check_output(Path(final))
    created = [folder for folder in final.parents if not folder.exists()]  # nearest first
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else writes there now
                break
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path = check_output(Path(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())
