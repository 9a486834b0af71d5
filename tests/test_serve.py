"""`emotune serve` as a real server process on 127.0.0.1 (a free port) and a real HTTP client (urllib): it
answers what `emotune predict` answers for the same export, refuses bad input with 4xx JSON and never a 500
or a crash, and serves a bounded load test (2,000 requests, 8 concurrent clients) without a failed request.
A tiny BERT LoRA run of the toy dataset, exported to ONNX int8, offline."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from toy_runs import LABELS
from use_runs import CUE_TEXTS, make_project, train_run

from emotune import onnx_export as ox
from emotune import predict as pr
from emotune import testing
from emotune.runs import resolve_run
from emotune.serve import Limits, parse_texts

ROOT = Path(__file__).resolve().parent.parent  # the checkout
MAX_TEXTS, MAX_CHARS = 8, 500
LOAD_REQUESTS, LOAD_CLIENTS = 2000, 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(url: str, body: bytes | None = None, method: str | None = None, timeout: float = 30):
    """(status, parsed JSON body) of one HTTP request; 4xx/5xx are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method or ("POST" if body is not None else "GET"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    root = make_project(base / "project")
    name = train_run(root, testing.save_tiny_model("bert", base / "tiny-bert"), "lora")
    return root, name, ox.export_onnx(resolve_run(name, root), quantize="int8")


def start(root: Path, target: str, *options: str) -> tuple[str, subprocess.Popen]:
    """`emotune serve TARGET` in its own process on a free port of 127.0.0.1, once /health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "emotune.cli", "serve", target, "--port", str(port), *options],
                               cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # a loaded 2-core machine: torch alone can take a minute to import
    while True:
        try:
            if request(f"{url}/health", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not come up: {process.communicate()[1].decode()[-2000:]}")
        time.sleep(0.2)
    return url, process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()[-3000:]
    assert b"on http://127.0.0.1:" in err, "binds the loopback address by default"


@pytest.fixture(scope="module")
def server(export):
    """The base URL and process of `emotune serve EXPORT` (ONNX int8) with small limits."""
    root, _, folder = export
    url, process = start(root, str(folder), "--max-texts", str(MAX_TEXTS), "--max-chars", str(MAX_CHARS),
                         "--threads", "1")
    yield url, process
    stop(process)


def test_serving_the_run_itself_answers_what_predict_writes_and_reports_its_evaluation(export, tmp_path):
    root, name, _ = export
    report = root / "metrics" / "eval" / f"{name}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"official_metric": "accuracy", "official": 0.55, "test_rows": 40,
                                  "test": {"accuracy": 0.55}, "official_ci95": {"low": 0.4, "high": 0.7}}))
    url, process = start(root, name)
    try:
        status, facts = request(f"{url}/model")
        assert status == 200 and facts["runtime"] == "pytorch" and facts["run"] == name
        assert facts["metric"] == {"name": "accuracy", "official_metric": "accuracy", "test_value": 0.55,
                                   "test_rows": 40, "interval": [0.4, 0.7]}
        texts = list(CUE_TEXTS.values())
        status, body = request(f"{url}/predict", json.dumps({"texts": texts}).encode())
    finally:
        stop(process)
    os.chdir(root)
    try:
        pr.main([name, *[a for t in texts for a in ("--text", t)], "--output", str(tmp_path / "run.jsonl")])
    finally:
        os.chdir(ROOT)
    assert status == 200
    assert body["predictions"] == [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]


def test_health_and_model_facts(server, export):
    url, _ = server
    _, name, folder = export
    assert request(f"{url}/health") == (200, {"status": "ok", "model": str(folder), "runtime": "onnxruntime"})
    status, facts = request(f"{url}/model")
    assert status == 200
    assert facts["dataset"] == "toy" and facts["labels"] == LABELS and facts["task"] == "single_label"
    assert facts["run"] == name and facts["format"] == "onnx" and facts["quantize"] == "int8"
    check = json.loads((folder / "export.json").read_text())["check"]
    assert facts["metric"]["name"] == "accuracy" and facts["metric"]["export_check_value"] == check["export_metric"]
    assert facts["limits"] == {"max_texts": MAX_TEXTS, "max_chars": MAX_CHARS, "batch_size": 32}


def test_predictions_are_what_emotune_predict_writes(server, export, tmp_path):
    url, _ = server
    root, _, folder = export
    texts = list(CUE_TEXTS.values()) + ["@friend it was http://x.org a day", "ÉMOTION — très bien 😊"]
    status, body = request(f"{url}/predict", json.dumps({"texts": texts}).encode())
    assert status == 200
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pr.main([str(folder), "--input", str(inputs), "--output", str(tmp_path / "out.jsonl")])
    expected = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert body["predictions"] == expected
    assert [sorted(p["probabilities"]) for p in body["predictions"]] == [sorted(LABELS)] * len(texts)


BAD = [
    (b"not json", 400, "not valid JSON"),
    (b'{"texts": ["ok"]} trailing', 400, "not valid JSON"),
    (b"\xff\xfe{}", 400, "not valid JSON"),
    (b"[" * 20_000, 400, "not valid JSON"),  # nesting deeper than the parser's recursion limit
    (b'{"texts": [' + b"9" * 5000 + b"]}", 400, "not valid JSON"),  # an integer too long to convert
    (b"", 400, "not valid JSON"),
    (b"[]", 422, "JSON object"),
    (b'{"text": "hi"}', 422, "JSON object"),
    (b'{"texts": "hi"}', 422, "must be a list"),
    (b'{"texts": []}', 422, "is empty"),
    (b'{"texts": ["hi", 3]}', 422, "texts[1] is not a string"),
    (b'{"texts": [null]}', 422, "texts[0] is not a string"),
    (b'{"texts": [["nested"]]}', 422, "texts[0] is not a string"),
    (b'{"texts": ["  "]}', 422, "texts[0] is empty"),
    (json.dumps({"texts": ["hi"] * (MAX_TEXTS + 1)}).encode(), 413, f"at most {MAX_TEXTS}"),
    (json.dumps({"texts": ["x" * (MAX_CHARS + 1)]}).encode(), 413, f"at most {MAX_CHARS} per text"),
    (json.dumps({"texts": ["y" * 1_000_000]}).encode(), 413, "bytes"),  # a 1 MB text: refused unread
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_gets_a_4xx_json_error(server, body, status, message):
    url, process = server
    got, answer = request(f"{url}/predict", body)
    assert (got, message in answer["error"]) == (status, True), answer
    assert process.poll() is None
    assert request(f"{url}/health")[0] == 200, "the server still answers"


def test_wrong_routes_and_methods_are_json_errors(server):
    url, _ = server
    assert request(f"{url}/nothing")[0] == 404
    assert request(f"{url}/predict")[0] == 405
    assert request(f"{url}/health", b"{}")[0] == 405


def test_the_parser_limits_match_what_the_server_enforces():
    limits = Limits(max_texts=2, max_chars=5)
    assert parse_texts(b'{"texts": ["abcde", "\\u00e9"]}', limits) == ["abcde", "é"]
    # the largest valid body (every text at its limit, escaped) fits under the body limit
    biggest = json.dumps({"texts": ["\u00e9" * 5] * 2}).encode()
    assert len(biggest) <= limits.max_body_bytes


def test_load_2000_requests_at_8_concurrent_clients_without_a_failure(server):
    url, process = server
    texts = list(CUE_TEXTS.values())

    def one(i: int) -> tuple[int, float]:
        body = json.dumps({"texts": texts[: 1 + i % len(texts)]}).encode()
        tick = time.perf_counter()
        status, answer = request(f"{url}/predict", body)
        ok = status == 200 and len(answer["predictions"]) == 1 + i % len(texts)
        return (200 if ok else status), time.perf_counter() - tick

    tick = time.perf_counter()
    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        results = list(pool.map(one, range(LOAD_REQUESTS)))
    seconds = time.perf_counter() - tick
    failed = [status for status, _ in results if status != 200]
    latencies = sorted(s for _, s in results)
    print(f"\n{LOAD_REQUESTS} requests, {LOAD_CLIENTS} clients: {LOAD_REQUESTS / seconds:.0f} requests/s, p50 "
          f"{latencies[len(latencies) // 2] * 1000:.1f} ms, p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms")
    assert not failed, f"{len(failed)} failed requests: {failed[:10]}"
    assert process.poll() is None
