"""Embeddings from the OpenAI API, or any server that speaks its ``/v1/embeddings`` protocol.

Uses the official ``openai`` client. Inputs are packed into requests within the API's limits
(at most 2,048 inputs and about 300k tokens a request; an input over the model's context is
reported as a failed row, not truncated), requests run concurrently on a thread pool, and each
is retried with exponential backoff (honouring ``Retry-After``) on rate limits, server errors,
timeouts and malformed answers. Authentication, permission and unknown-model errors are final
and reported at once. The key comes from ``OPENAI_API_KEY`` and is never stored anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .base import EmbedResult, EmbedSession, Enricher, EnrichError, RowFailure, versions

KNOWN_DIMS = {
    "text-embedding-3-large": 3072,
    "text-embedding-3-small": 1536,
    "text-embedding-ada-002": 1536,
}
MAX_INPUTS = 2048  # OpenAI: inputs per request
MAX_REQUEST_TOKENS = 300_000  # OpenAI: tokens summed over one request
ENV_KEY = "OPENAI_API_KEY"
ENV_BASE = "OPENAI_BASE_URL"


def safe_url(url: str | None) -> str | None:
    """`url` without user:password@ and without a query string (those may carry secrets)."""
    if not url:
        return url
    p = urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def estimate_tokens(text: str) -> int:
    """A cautious token count for packing requests (about 3 bytes a token, plus one)."""
    return len(text.encode("utf-8", "replace")) // 3 + 1


class _Retryable(Exception):
    pass


class _BadInput(Exception):
    pass


class OpenAISession(EmbedSession):
    def __init__(self, model: str, *, dimensions: int | None, base_url: str | None,
                 api_key: str | None, max_inputs: int | None, concurrency: int,
                 max_retries: int, timeout: float, backoff: float):
        import openai

        self.openai = openai
        self.model = model
        self.model_id = f"openai:{model}"
        self.dimensions = dimensions
        self.dims = dimensions or (KNOWN_DIMS.get(model) if not base_url else None)
        self.base_url = base_url
        self.max_inputs = min(max_inputs or MAX_INPUTS, MAX_INPUTS)
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        self.retries = 0
        self.embedded = 0
        self._lock = threading.Lock()
        # The client's own retries are off: ours count, log and honour Retry-After uniformly.
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                    timeout=timeout)
        # Rows handed over per call: a whole chunk, so requests stream through the pool with no
        # barrier until the chunk is done (progress then moves once a chunk).
        self.piece_rows = 1 << 20
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="vidlake-openai")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "openai",
            "model": self.model_id,
            "dims": self.dims,
            "dimensions_param": self.dimensions,
            "base_url": safe_url(self.base_url) or "https://api.openai.com/v1",
            "versions": versions("openai"),
        }

    # ---------------------------------------------------------------- packing
    def _requests(self, texts: list[str], idx: list[int]) -> list[list[int]]:
        out: list[list[int]] = []
        cur: list[int] = []
        tokens = 0
        for i in idx:
            t = estimate_tokens(texts[i])
            if cur and (len(cur) >= self.max_inputs or tokens + t > MAX_REQUEST_TOKENS):
                out.append(cur)
                cur, tokens = [], 0
            cur.append(i)
            tokens += t
        if cur:
            out.append(cur)
        return out

    # ---------------------------------------------------------------- one request
    def _call(self, inputs: list[str]) -> np.ndarray:
        oa = self.openai
        kwargs: dict[str, Any] = {"model": self.model, "input": inputs, "encoding_format": "base64"}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        try:
            # The raw answer, decoded here straight into numpy: building the client's pydantic
            # objects and float lists costs ~6x more CPU than the request itself.
            raw = self.client.embeddings.with_raw_response.create(**kwargs)
            data = json.loads(raw.http_response.content)["data"]
        except oa.AuthenticationError:
            raise EnrichError(
                f"the embeddings server at {safe_url(self.base_url) or 'api.openai.com'} rejected "
                f"the API key (401): set a valid {ENV_KEY}") from None
        except oa.PermissionDeniedError as exc:
            raise EnrichError(f"access to model {self.model!r} denied (403): {_msg(exc)}") from None
        except oa.NotFoundError as exc:
            raise EnrichError(f"model {self.model!r} not found (404) at "
                              f"{safe_url(self.base_url) or 'api.openai.com'}: {_msg(exc)}") from None
        except (oa.BadRequestError, oa.UnprocessableEntityError) as exc:
            raise _BadInput(_msg(exc)) from None
        except oa.RateLimitError as exc:
            raise _Retryable(("429 rate limited", _retry_after(exc))) from None
        except oa.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise _Retryable((f"server error {exc.status_code}", _retry_after(exc))) from None
            raise EnrichError(f"embeddings request failed ({exc.status_code}): {_msg(exc)}") from None
        except (oa.APIConnectionError, oa.APITimeoutError) as exc:
            raise _Retryable((f"connection: {exc}", None)) from None
        except (oa.APIResponseValidationError, ValueError, KeyError, TypeError) as exc:
            raise _Retryable((f"malformed answer: {exc}", None)) from None
        if not isinstance(data, list) or len(data) != len(inputs):
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise _Retryable((f"malformed answer: {got} embeddings for {len(inputs)} inputs", None))
        try:
            order = sorted(data, key=lambda d: d["index"])
            if [d["index"] for d in order] != list(range(len(inputs))):
                raise ValueError("indices do not match the inputs")
            vecs = np.array([_decode(d["embedding"]) for d in order])
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise _Retryable((f"malformed answer: {exc}", None)) from None
        if vecs.ndim != 2:
            raise _Retryable(("malformed answer: embeddings of different lengths", None))
        return vecs

    def _with_retries(self, inputs: list[str]) -> np.ndarray:
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._call(inputs)
            except _Retryable as exc:
                last, after = exc.args[0]
                if attempt == self.max_retries:
                    break
                with self._lock:
                    self.retries += 1
                delay = after if after is not None else self.backoff * (2 ** attempt)
                time.sleep(min(delay, 60.0) * (1 + 0.1 * random.random()))
        raise EnrichError(f"embeddings request to {safe_url(self.base_url) or 'api.openai.com'} "
                          f"still failing after {self.max_retries} retries: {last}")

    def _batch(self, texts: list[str], idx: list[int]) -> tuple[dict[int, np.ndarray], list[RowFailure]]:
        """Embed inputs `idx`; a rejected request is split in halves to find the bad input."""
        try:
            vecs = self._with_retries([texts[i] for i in idx])
            return dict(zip(idx, vecs, strict=True)), []
        except _BadInput as exc:
            if len(idx) == 1:
                return {}, [RowFailure(idx[0], f"rejected by the server: {exc}")]
        mid = len(idx) // 2
        a, fa = self._batch(texts, idx[:mid])
        b, fb = self._batch(texts, idx[mid:])
        a.update(b)
        return a, fa + fb

    # ---------------------------------------------------------------- public
    def embed(self, texts: list[str]) -> EmbedResult:
        n = len(texts)
        ok = np.zeros(n, dtype=bool)
        failures = [RowFailure(i, "empty text") for i, t in enumerate(texts) if not (t and t.strip())]
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        got: dict[int, np.ndarray] = {}
        futures = [self.pool.submit(self._batch, texts, req) for req in self._requests(texts, todo)]
        try:
            for f in futures:
                part, fails = f.result()
                got.update(part)
                failures.extend(fails)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        # Every input of a first call rejected: a bad parameter (dimensions, model), not bad rows.
        if (len(todo) > 1 and not got and not self.embedded
                and all(f.error.startswith("rejected") for f in failures)):
            raise EnrichError(f"the server rejected every input: {failures[-1].error} "
                              f"(model {self.model!r}, dimensions {self.dimensions})")
        keys = sorted(got)
        vecs = np.stack([got[i] for i in keys]) if keys else np.empty((0, self.dims or 0), np.float32)
        if keys:
            dim = vecs.shape[1]
            want = self.dims
            if want is not None and dim != want:
                raise EnrichError(
                    f"the server answered {dim}-d vectors but {want}-d were expected "
                    f"({'--dimensions ' + str(self.dimensions) if self.dimensions else self.model}); "
                    "nothing from this answer was stored")
            self.dims = dim
            finite: np.ndarray = np.asarray(np.isfinite(vecs).all(axis=1))
            for j in np.flatnonzero(~finite):
                failures.append(RowFailure(keys[j], "server returned NaN/inf values"))
            keys = [k for k, f in zip(keys, finite.tolist(), strict=True) if f]
            vecs = vecs[finite]
        ok[keys] = True
        self.embedded += len(keys)
        failures.sort(key=lambda f: f.index)
        return EmbedResult(vecs.astype(np.float32, copy=False), ok, failures)


def _decode(value: Any) -> np.ndarray:
    """One embedding: base64 little-endian float32 (asked for), or a float list (some servers)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4").astype(np.float32)
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float32)
    raise TypeError(f"an embedding must be base64 text or a list, not {type(value).__name__}")


def _msg(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
    return str(getattr(exc, "message", exc))[:500]


def _retry_after(exc: Any) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None) or {}
    for key in ("retry-after-ms", "retry-after"):
        v = headers.get(key)
        if v is None:
            continue
        try:
            secs = float(v)
        except ValueError:
            continue
        return secs / 1000 if key == "retry-after-ms" else secs
    return None


class OpenAIEmbeddings(Enricher):
    name = "openai"
    kind = "embedder"
    description = ("OpenAI embeddings (text-embedding-3-large/-small, --dimensions) or any "
                   "compatible server (--base-url)")
    extra = "embed"
    packages = ("openai",)
    env = (ENV_KEY, ENV_BASE)
    weights = "remote API"
    default_variant = "text-embedding-3-large"

    def extra_needs(self) -> list[str]:
        if os.environ.get(ENV_KEY) or os.environ.get(ENV_BASE):
            return []
        return [f"{ENV_KEY} (or --base-url for a compatible server)"]

    def model_id(self, variant: str | None) -> str | None:
        return f"openai:{variant or self.default_variant}"

    def open(self, variant: str | None, **options: Any) -> OpenAISession:
        self.require("OpenAI embeddings")
        model = variant or self.default_variant
        base_url = options.get("base_url") or os.environ.get(ENV_BASE) or None
        key = os.environ.get(ENV_KEY)
        if not key:
            if not base_url:
                raise EnrichError(f"OpenAI embeddings need an API key: export {ENV_KEY}=... "
                                  "(or give --base-url for a compatible server that needs none)")
            key = "no-key"  # compatible servers (Ollama, vLLM...) often take none
        dims = options.get("dimensions")
        if dims is not None and dims <= 0:
            raise EnrichError(f"--dimensions must be positive, not {dims}")
        assert model is not None
        return OpenAISession(
            model, dimensions=dims, base_url=base_url, api_key=key,
            max_inputs=options.get("batch_size"),
            concurrency=int(options.get("concurrency") or 16),
            max_retries=int(options.get("max_retries", 6)),
            timeout=float(options.get("timeout") or 60.0),
            backoff=float(options.get("backoff", 0.5)),
        )
