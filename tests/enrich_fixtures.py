"""Test doubles for enrichment, built by the tests themselves (nothing downloaded).

- `EmbeddingServer`: an OpenAI-compatible ``/v1/embeddings`` HTTP server on 127.0.0.1, so the
  real ``openai`` client runs end to end. It can be scripted to answer 429 (with Retry-After),
  500, malformed JSON, wrong dimensions, 401/404, and to reject one input as too long.
- `build_detoxify_checkpoint`: a tiny random BERT saved in Detoxify's checkpoint format (config +
  state_dict) with local tokenizer files, loaded by the real `detoxify.Detoxify` class.
- `FakeEmbedder` / `FakeScorer`: backends that live only here, registered in tests to show that
  third-party enrichers plug in through the same registry.

Run ``python tests/enrich_fixtures.py serve --delay 0.05 --max-inputs 256`` to serve from a
separate process (the benchmark does).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from vidprom_lake.enrich.base import (
    EmbedResult,
    EmbedSession,
    Enricher,
    RowFailure,
    ScoreResult,
    ScoreSession,
)

TEST_KEY = "sk-test-SECRET-0123456789"
_TABLE_SIZE = 4096


def _table(dim: int) -> np.ndarray:
    rng = np.random.default_rng(dim)
    t = rng.standard_normal((_TABLE_SIZE, dim)).astype(np.float32)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def fake_vectors(texts: list[str], dim: int,
                 tables: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Deterministic unit vectors for `texts` (cheap: table rows picked by crc32, tilted)."""
    tables = tables if tables is not None else {}
    if dim not in tables:
        tables[dim] = _table(dim)
    h = np.array([zlib.crc32(t.encode()) for t in texts], dtype=np.int64)
    v = tables[dim][h % _TABLE_SIZE]
    v[np.arange(len(h)), h % dim] += (0.5 + (h >> 20) / 4096.0).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fake_vector(text: str, dim: int, tables: dict[int, np.ndarray] | None = None) -> np.ndarray:
    return fake_vectors([text], dim, tables)[0]


# ------------------------------------------------------------------------------ server
class EmbeddingServer:
    """OpenAI-compatible embeddings endpoint; use as a context manager.

    `script` is a list of faults answered to the next requests, one each, in order:
    ``"429"`` (Retry-After: retry_after), ``"500"``, ``"malformed"`` (invalid JSON),
    ``"short"`` (one embedding missing), ``"wrong_dims"``, ``"nan_first"``, ``"401"``, ``"404"``.
    ``always`` applies one fault to every request. Inputs containing ``reject_marker`` get a
    400 like OpenAI's "maximum context length" error.
    """

    def __init__(self, *, delay: float = 0.0, max_inputs: int = 2048, dim: int = 64,
                 key: str | None = TEST_KEY, script: list[str] | None = None,
                 always: str | None = None, retry_after: float = 0.01,
                 reject_marker: str = "REJECT-ME", port: int = 0, floats: bool = False):
        self.delay = delay
        self.max_inputs = max_inputs
        self.dim = dim
        self.key = key
        self.script = list(script or [])
        self.always = always
        self.retry_after = retry_after
        self.reject_marker = reject_marker
        self.floats = floats  # answer float lists even when base64 is asked (some servers do)
        self.requests = 0
        self.inputs = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: set[str] = set()
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._tables: dict[int, np.ndarray] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.auth_headers.add(self.headers.get("Authorization", ""))
                    if len(server.bodies) < 50:
                        server.bodies.append({k: v for k, v in body.items() if k != "input"})
                    fault = server.script.pop(0) if server.script else server.always
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    status, payload, headers = server.answer(self.path, body, fault,
                                                             self.headers.get("Authorization", ""))
                finally:
                    with server._lock:
                        server.in_flight -= 1
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def answer(self, path: str, body: dict[str, Any], fault: str | None,
               auth: str) -> tuple[int, Any, dict[str, str]]:
        def err(status: int, message: str, typ: str) -> tuple[int, Any, dict[str, str]]:
            return status, {"error": {"message": message, "type": typ, "code": None}}, {}

        if not path.rstrip("/").endswith("/embeddings"):
            return err(404, f"no route {path}", "invalid_request_error")
        if fault == "401" or (self.key and auth != f"Bearer {self.key}"):
            return err(401, "Incorrect API key provided", "invalid_request_error")
        if fault == "404" or str(body.get("model", "")).startswith("no-such"):
            return err(404, f"The model `{body.get('model')}` does not exist", "invalid_request_error")
        if fault == "429":
            status, payload, _ = err(429, "Rate limit reached", "rate_limit_error")
            return status, payload, {"Retry-After": str(self.retry_after)}
        if fault == "500":
            return err(500, "The server had an error", "server_error")
        if fault == "malformed":
            return 200, b'{"object": "list", "data": [{"embedding": [0.1, 0.2', {}
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return err(400, "'input' must be a non-empty list", "invalid_request_error")
        if len(inputs) > self.max_inputs:
            return err(400, f"too many inputs: {len(inputs)} > {self.max_inputs}",
                       "invalid_request_error")
        for t in inputs:
            if not isinstance(t, str) or not t:
                return err(400, "input must be non-empty strings", "invalid_request_error")
            if self.reject_marker in t:
                return err(400, "This model's maximum context length is 8192 tokens",
                           "invalid_request_error")
        model = str(body.get("model"))
        dim = int(body.get("dimensions") or (3072 if model == "text-embedding-3-large" else self.dim))
        if fault == "wrong_dims":
            dim -= 1
        with self._lock:
            self.inputs += len(inputs)
        vecs = fake_vectors(inputs, dim, self._tables)
        if fault == "short":
            vecs = vecs[:-1]
        if fault == "nan_first":
            vecs[0, 0] = np.nan
        b64 = body.get("encoding_format") == "base64" and not self.floats
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if b64
                 else [float(x) for x in v]} for i, v in enumerate(vecs)]
        return 200, {"object": "list", "data": data, "model": model,
                     "usage": {"prompt_tokens": 1, "total_tokens": 1}}, {}

    def __enter__(self) -> EmbeddingServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------ detoxify
UNBIASED_CLASSES = ["toxicity", "severe_toxicity", "obscene", "identity_attack", "insult",
                    "threat", "sexual_explicit"]
ORIGINAL_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def build_detoxify_checkpoint(folder: str | Path, variant: str = "unbiased",
                              seed: int = 0) -> tuple[Path, Path]:
    """A tiny random BERT in Detoxify's checkpoint format, plus a local config/tokenizer folder.

    Returns (checkpoint file, config dir). The checkpoint names ``bert-base-uncased`` as its
    model type, exactly like Detoxify's ``original`` release, so loading it offline needs the
    config dir (as a real checkpoint would).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    folder = Path(folder)
    cfg_dir = folder / "config"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    words = ["the", "a", "cat", "dog", "of", "in", "and", "with", "video", "girl", "man",
             "sunset", "city", "kill", "hate", "sex", "nude", "blood", "gun", "cute"]
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,!?-:'\"") + letters
             + [f"##{c}" for c in letters] + words)
    (cfg_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    classes = ORIGINAL_CLASSES if variant.startswith("original") else UNBIASED_CLASSES
    num = 6 if variant.startswith("original") else 16
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        num_labels=num, initializer_range=0.5)
    config.save_pretrained(cfg_dir)
    (cfg_dir / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "model_max_length": 128, "tokenizer_class": "BertTokenizer"}))
    model = BertForSequenceClassification(config)
    ckpt = {
        "config": {
            "arch": {"args": {"model_type": "bert-base-uncased",
                              "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": num}},
            "dataset": {"args": {"classes": classes}},
        },
        "state_dict": model.state_dict(),
    }
    path = folder / f"tiny-{variant}.ckpt"
    torch.save(ckpt, path)
    return path, cfg_dir


# ------------------------------------------------------------------------------ fakes
class FakeSession(EmbedSession):
    """Deterministic vectors; texts containing FAIL-ME fail; `stop_after` calls raise Ctrl-C."""

    def __init__(self, dim: int, stop_after: int | None = None):
        self.model_id = f"fake:{dim}"
        self.dims = dim
        self.calls = 0
        self.stop_after = stop_after
        self.piece_rows = 16
        self._tables: dict[int, np.ndarray] = {}

    def embed(self, texts: list[str]) -> EmbedResult:
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        ok = np.array([bool(t.strip()) and "FAIL-ME" not in t for t in texts])
        fails = [RowFailure(i, "fake failure") for i in np.flatnonzero(~ok)]
        vecs = fake_vectors([t for t, k in zip(texts, ok, strict=True) if k], self.dims,
                            self._tables)
        return EmbedResult(vecs.astype(np.float32), ok, fails)

    def provenance(self) -> dict[str, Any]:
        return {"backend": "fake", "model": self.model_id, "dims": self.dims, "versions": {}}


class FakeEmbedder(Enricher):
    name = "fake"
    kind = "embedder"
    description = "test-only embedder (fake:<dims>)"
    weights = "none"
    default_variant = "8"
    stop_after: int | None = None

    def open(self, variant: str | None, **options: Any) -> FakeSession:
        return FakeSession(int(variant or 8), stop_after=self.stop_after)


class FakeScoreSession(ScoreSession):
    def __init__(self) -> None:
        self.model_id = "fakescore:v1"
        self.labels = ("toxicity", "obscene", "spookiness")

    def score(self, texts: list[str]) -> ScoreResult:
        ok = np.ones(len(texts), bool)
        vals = np.array([zlib.crc32(t.encode()) % 1000 / 1000 for t in texts], np.float32)
        return ScoreResult({lab: vals for lab in self.labels}, ok, [])

    def provenance(self) -> dict[str, Any]:
        return {"backend": "fake", "model": self.model_id, "versions": {}}


class FakeScorer(Enricher):
    name = "fakescore"
    kind = "scorer"
    description = "test-only scorer"

    def open(self, variant: str | None, **options: Any) -> FakeScoreSession:
        return FakeScoreSession()


def main(argv: list[str]) -> None:
    """``serve [--delay S] [--max-inputs N] [--port P]``: serve until killed (prints the URL)."""
    args = dict(zip(argv[1::2], argv[2::2], strict=False))
    srv = EmbeddingServer(delay=float(args.get("--delay", 0)),
                          max_inputs=int(args.get("--max-inputs", 2048)),
                          key=args.get("--key", TEST_KEY), port=int(args.get("--port", 0)))
    print(srv.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        srv.httpd.serve_forever()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(sys.argv[1:])
