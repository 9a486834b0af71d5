"""serve: an HTTP JSON API over a trained run or an export folder (FastAPI on uvicorn).

    emotune serve exports/emotion/minilm/lora-onnx-int8          # http://127.0.0.1:8000, no torch imported
    emotune serve emotion/minilm/lora --port 9000 --max-texts 32

    POST /predict  {"texts": ["i feel great", ...]}
                   -> {"model": ..., "predictions": [{"text", "label" (multi-label: "labels"), "probabilities"}]}
                   the records `emotune predict` writes, one per text, in order
    GET  /health   -> {"status": "ok", "model": ..., "runtime": ...}
    GET  /model    -> what the model card says: dataset, task, labels, official metric (value and interval
                      when known), and the request limits

A request is refused with a 4xx JSON body {"error": "..."} when it is not JSON (400), is not an object with
a non-empty list `texts` of non-empty strings (422), has more than --max-texts texts or a text longer than
--max-chars characters, or a body over the bytes those limits allow (413). Predictions run one request at
a time (a lock): the model already uses every core it is given, and requests queue instead of fighting for
them. The server binds 127.0.0.1 unless --host says otherwise: it has no authentication.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations here

from emotune.errors import EmotuneError, run_cli
from emotune.paths import project_root
from emotune.runs import add_run_arguments, warn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DRAIN_BYTES = 16 * 2**20  # an over-long body up to this size is read (and dropped) before the 413 answer


@dataclass(frozen=True)
class Limits:
    max_texts: int = 64  # texts per request
    max_chars: int = 2000  # characters per text (a 512-token text is about 2,000 characters of English)
    batch_size: int = 32

    @property
    def max_body_bytes(self) -> int:
        """The largest body a valid request needs: every text at its limit, 4 bytes a character (UTF-8) or
        6 (a JSON \\u escape), plus room for the JSON around them."""
        return self.max_texts * (self.max_chars * 6 + 16) + 1024


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a POST /predict body, or a RequestError saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, a 4,301-digit number; nesting
        raise RequestError(400, f"the body is not valid JSON ({exc}); send {{\"texts\": [\"...\"]}}") from None
    if not isinstance(payload, dict) or "texts" not in payload:
        raise RequestError(422, "send a JSON object with a list of strings under \"texts\": {\"texts\": [\"...\"]}")
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"\"texts\" must be a list of strings, not {type(texts).__name__}")
    if not texts:
        raise RequestError(422, "\"texts\" is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; at most {limits.max_texts} (split the request)")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, f"texts[{i}] is not a string (got {type(text).__name__})")
        if not text.strip():
            raise RequestError(422, f"texts[{i}] is empty; give a text to classify")
        if len(text) > limits.max_chars:
            raise RequestError(413, f"texts[{i}] has {len(text)} characters; at most {limits.max_chars} per text")
    return texts


async def read_body(request, limit: int) -> bytes:
    """The request body, kept up to `limit` bytes. A longer body is read on and dropped, up to DRAIN_BYTES,
    so that the client, still sending, gets the 413 answer instead of a broken connection; beyond that the
    connection is cut (a 1 GB upload is never buffered)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_BYTES:
        raise RequestError(413, f"the body has {int(declared)} bytes; at most {limit} with these limits")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_BYTES:
            break
    if size > limit:
        raise RequestError(413, f"the body has {size if size <= DRAIN_BYTES else 'over ' + str(DRAIN_BYTES)} bytes; "
                                f"at most {limit} with these limits")
    return b"".join(chunks)


def build_app(predictor, limits: Limits):
    """The FastAPI application over a loaded emotune/predict.py Predictor."""
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from emotune.predict import Inputs, records

    app = FastAPI(title="emotune", summary=f"emotion classifier {predictor.name}", docs_url=None, redoc_url=None)
    lock = threading.Lock()

    def classify(texts: list[str]) -> list[dict]:
        with lock:
            result = predictor.predict(texts, batch_size=limits.batch_size, show_progress=False)
        return records(Inputs(texts, "request", list(range(1, len(texts) + 1))), result)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404, 405: JSON like every other error
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": "invalid request", "detail": json.loads(json.dumps(exc.errors(), default=str))},
                            status_code=422)

    @app.post("/predict")
    async def predict(request: Request):
        texts = parse_texts(await read_body(request, limits.max_body_bytes), limits)
        try:
            predictions = await run_in_threadpool(classify, texts)
        except EmotuneError as exc:
            raise RequestError(422, str(exc)) from None
        return {"model": predictor.name, "predictions": predictions}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": predictor.name, "runtime": predictor.runtime}

    @app.get("/model")
    async def model():
        return {**predictor.facts, "runtime": predictor.runtime, "limits": asdict(limits)}

    return app


def serve(app, host: str, port: int) -> None:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    asyncio.run(server.serve())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Serve a run or an export folder as an HTTP JSON API")
    add_run_arguments(parser)  # (the positional also takes an export folder: a path holding export.json)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this "
                        f"machine only; the API has no authentication)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-texts", type=int, default=Limits.max_texts, help="texts per request")
    parser.add_argument("--max-chars", type=int, default=Limits.max_chars, help="characters per text")
    parser.add_argument("--batch-size", type=int, default=Limits.batch_size)
    parser.add_argument("--threads", type=int, help="ONNX exports: onnxruntime intra-op threads (default: "
                        "OMP_NUM_THREADS, else one per core)")
    args = parser.parse_args(argv)
    for name in ("max_texts", "max_chars", "batch_size"):
        if getattr(args, name) < 1:
            raise EmotuneError(f"--{name.replace('_', '-')} {getattr(args, name)}: give a number >= 1")
    if not 0 <= args.port <= 65535:
        raise EmotuneError(f"--port {args.port}: a port number 0-65535")
    from emotune.exported import is_export
    from emotune.predict import export_predictor, load_predictor

    if args.run and not args.best and is_export(Path(args.run)):
        predictor = export_predictor(Path(args.run), args.threads)  # ONNX: torch is never imported
    else:
        from emotune.devices import pick_device
        from emotune.runs import quiet_transformers

        quiet_transformers()
        predictor = load_predictor(args.run, args.best, project_root(), device=pick_device())
    if args.host not in LOOPBACK:
        warn(f"binding {args.host}: the API has no authentication; anyone who can reach this port can use it")
    limits = Limits(args.max_texts, args.max_chars, args.batch_size)
    print(f"serving {predictor.name} ({predictor.runtime}) on http://{args.host}:{args.port} "
          f"(POST /predict, GET /health, GET /model)", file=sys.stderr, flush=True)
    serve(build_app(predictor, limits), args.host, args.port)


if __name__ == "__main__":
    run_cli(main)
