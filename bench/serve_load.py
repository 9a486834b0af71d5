"""`emotune serve` under load: a real server process on 127.0.0.1 and concurrent HTTP clients.

    python -m bench.serve_load                      # the MiniLM int8 export bench/inference.py --onnx left
    python -m bench.serve_load --export DIR         # any export folder (or a run name, served by PyTorch)
    python -m bench.serve_load --tiny               # CI smoke run: a tiny BERT export, a temporary JSON

`--requests` POST /predict requests (default 2,000) from `--clients` concurrent clients (default 8), each
request `--texts-per-request` texts drawn from the test split; every answer is checked (status 200, one
prediction per text). Writes requests/s, texts/s, latency p50/p95/p99 and the failures (there must be none)
to metrics/bench/serve_load.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench import common

NAME = "serve_load"
DEFAULT_EXPORT = common.ROOT / ".cache" / "bench" / "onnx" / "project" / "exports" / "emotion" / "minilm" / \
    "full-onnx-int8"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, texts: list[str]) -> tuple[int, int]:
    """(status, predictions returned) of one POST /predict."""
    req = urllib.request.Request(url, data=json.dumps({"texts": texts}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, len(json.loads(response.read())["predictions"])
    except urllib.error.HTTPError as exc:
        return exc.code, 0
    except OSError:
        return -1, 0


def start_server(target: str, cwd: Path, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**common.bench_env(threads), "PYTHONPATH": str(common.ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "emotune.cli", "serve", target, "--port", str(port),
                                "--threads", str(threads)], cwd=cwd, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start: {process.communicate()[1].decode()[-2000:]}")


def tiny_export(work: Path) -> tuple[Path, list[str]]:
    """A tiny BERT toy run, trained and exported to ONNX int8 (for --tiny)."""
    from bench.inference import trained_project
    from emotune.onnx_export import export_onnx
    from emotune.runs import resolve_run

    root, name = trained_project(work, "full", 0, 1, 1, tiny=True)
    import pandas as pd

    texts = pd.read_parquet(root / "data" / "audited" / "toy" / "test.parquet")["text"].tolist()
    return export_onnx(resolve_run(name, root), quantize="int8"), texts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", default=str(DEFAULT_EXPORT), help="export folder (or run name) to serve")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="the server's onnxruntime / torch threads")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    out_path = common.result_path(NAME, args.tiny, args.out)
    result = common.header(NAME, args.tiny)
    work = Path(tempfile.mkdtemp(prefix="emotune-bench-serve-"))
    try:
        if args.tiny:
            folder, pool = tiny_export(work)
            args.requests = min(args.requests, 300)
        else:
            import pandas as pd

            folder = Path(args.export)
            if not (folder / "export.json").is_file():
                raise SystemExit(f"{folder}: no export; run `python -m bench.inference --onnx` first (or --export)")
            info = json.loads((folder / "export.json").read_text())
            project = folder.parents[3]  # <project>/exports/<dataset>/<model>/<name>
            dataset = info["run"].split("/")[0]
            pool = pd.read_parquet(project / "data" / "audited" / dataset / "test.parquet")["text"].tolist()
        rng = np.random.default_rng(0)
        bodies = [[pool[i] for i in rng.choice(len(pool), size=args.texts_per_request)] for _ in range(args.requests)]
        process, url = start_server(str(folder), work, args.threads)
        try:
            for texts in bodies[:20]:  # warm-up
                post(f"{url}/predict", texts)

            def one(texts: list[str]) -> tuple[int, bool, float]:
                tick = time.perf_counter()
                status, count = post(f"{url}/predict", texts)
                return status, status == 200 and count == len(texts), time.perf_counter() - tick

            tick = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool_clients:
                answers = list(pool_clients.map(one, bodies))
            seconds = time.perf_counter() - tick
            alive = process.poll() is None
        finally:
            process.terminate()
            process.communicate(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latencies = [s * 1000 for _, ok, s in answers if ok]
    failures = [status for status, ok, _ in answers if not ok]
    result.update({
        "setup": {"export": str(folder.relative_to(common.ROOT)) if folder.is_relative_to(common.ROOT) else str(folder),
                  "requests": args.requests, "clients": args.clients, "texts_per_request": args.texts_per_request,
                  "server_threads": args.threads, "client": "urllib, one connection per request",
                  "host": "127.0.0.1"},
        "requests_per_s": round(args.requests / seconds, 1),
        "texts_per_s": round(args.requests * args.texts_per_request / seconds, 1),
        "latency_ms": {f"p{q}": round(common.percentile(latencies, q), 2) for q in (50, 95, 99)} if latencies else None,
        "failed_requests": len(failures), "failure_statuses": sorted(set(failures)),
        "server_alive_after": alive, "seconds": round(seconds, 1),
    })
    print(f"{args.requests} requests, {args.clients} clients: {result['requests_per_s']} requests/s, p50 "
          f"{result['latency_ms']['p50'] if latencies else '-'} ms, p95 "
          f"{result['latency_ms']['p95'] if latencies else '-'} ms, {len(failures)} failed", flush=True)
    common.write_result(out_path, result)
    if failures or not alive:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
