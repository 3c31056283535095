"""Scraping the generated videos that Discord exports point to.

VidProM's Pika videos were downloaded from the attachments of the bot's replies. The Discord
ingest keeps, per prompt, the bot reply's attachments in the prompt row's ``extra`` JSON (url,
file name, size, content type); this module downloads the video attachment of each such prompt
and imports it through the same checks as `import-videos` (`importer.probe_clip`: every sample
present, the first frame decoded, probe columns, thumbnail), committed in chunks of one batch.

Where the URLs come from:

* no paths: every prompt in the lake whose ``extra.attachments`` holds a video;
* export files/folders: they are ingested first (`Lake.ingest`, idempotent: prompts already in
  the lake are not added twice) and then read again by the same parser (`ingest.discord`), so
  the videos of prompts that were already in the lake (from VidProM's CSV, with the same uuid5)
  are found too.

Downloads run in a thread pool (keep-alive `http.client` connections per thread) under a shared rate limit; transient
failures (429 honouring Retry-After, 5xx, dropped connections, timeouts, bodies cut short) are
retried with exponential backoff; final failures (403/404/410, wrong content type, oversized,
undecodable, ...) are reported per prompt in the report and the batch log, never stored.
Bodies are held in memory (at most `max_bytes` each, a bounded number at a time) and never
written to disk, so a hostile attachment file name cannot create a file anywhere.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import os
import queue
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from ..errors import InputError, VidlakeError
from ..schema import VIDEOS_SCHEMA
from .importer import MODEL_RE, ROWS_PER_BATCH, VIDEO_EXTS

if TYPE_CHECKING:
    from ..lake import Lake

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
MAX_REDIRECTS = 5
#: Content types accepted as a video body (the probe decides whether it really is one).
VIDEO_TYPES = ("video/", "application/octet-stream", "binary/octet-stream", "application/mp4")
HEADERS = {"Accept-Encoding": "identity", "User-Agent": "vidlake-scrape-videos"}
#: HTTP statuses retried with backoff (besides every 5xx).
RETRY_STATUSES = (408, 425, 429)
#: An HTML export shows sizes rounded ("598 KB"); its sizes are estimates within this ratio.
SIZE_SLACK = 1.02

#: Reasons a prompt's video is not imported (besides ``http-NNN``), as they appear in reports.
REASONS = ("bad-url", "bad-redirect", "too-many-redirects", "rate-limited", "timeout",
           "connection", "truncated", "size-mismatch", "oversized", "wrong-content-type",
           "empty", "not-video", "corrupt", "unknown-uuid", "cancelled")


# ---------------------------------------------------------------------- data
@dataclass
class Target:
    """One prompt's video attachment."""

    uuid: str
    url: str
    filename: str
    size: int | None  # declared by the export
    exact_size: bool  # JSON exports give exact sizes; HTML ones rounded (``size_text``)
    time: datetime | None = None
    other_videos: int = 0  # further video attachments on the same reply (not imported)


@dataclass
class Failure:
    uuid: str
    filename: str
    reason: str
    status: int | None = None
    detail: str = ""
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "filename": self.filename, "reason": self.reason,
                "status": self.status, "detail": self.detail, "attempts": self.attempts}


@dataclass
class ScrapeReport:
    model: str
    sources: list[str]
    plan: bool = False
    batch_id: str | None = None
    ingest_batches: list[str] = field(default_factory=list)
    prompts_ingested: int = 0
    prompts_with_video: int = 0
    prompts_without_video: int = 0
    prompts_not_in_lake: int = 0
    considered: int = 0
    already_in_lake: int = 0
    to_fetch: int = 0
    bytes_to_fetch: int = 0
    unknown_sizes: int = 0
    fetched: int = 0
    imported: int = 0
    bytes_downloaded: int = 0
    bytes_imported: int = 0
    retries: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    imported_ids: list[str] = field(default_factory=list)

    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(f.reason for f in self.failures).items()))

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": self.model, "plan": self.plan}
        if self.plan:
            d.update(prompts_with_video=self.prompts_with_video,
                     prompts_not_in_lake=self.prompts_not_in_lake, considered=self.considered,
                     already_in_lake=self.already_in_lake, to_fetch=self.to_fetch,
                     bytes_to_fetch=self.bytes_to_fetch, unknown_sizes=self.unknown_sizes,
                     oversized_declared=self.by_reason().get("oversized", 0))
            return d
        mbps = self.bytes_downloaded / self.seconds / 1e6 if self.seconds else 0.0
        d.update(batch_id=self.batch_id, ingest_batches=self.ingest_batches,
                 prompts_ingested=self.prompts_ingested,
                 prompts_with_video=self.prompts_with_video, considered=self.considered,
                 already_in_lake=self.already_in_lake, to_fetch=self.to_fetch,
                 fetched=self.fetched, imported=self.imported, failed=len(self.failures),
                 failed_by_reason=self.by_reason(), retries=self.retries,
                 bytes_downloaded=self.bytes_downloaded, chunks=self.chunks,
                 seconds=round(self.seconds, 3), mb_per_s=round(mbps, 2))
        return d


# ---------------------------------------------------------------------- options
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$",
                      re.I)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]?i?b?)?\s*$", re.I)


def parse_rate(value: str | float | None) -> float | None:
    """Requests per second from ``5/s``, ``300/min``, ``1000/h`` or a number; None = unlimited."""
    if value is None:
        return None
    if isinstance(value, int | float):
        rate = float(value)
    else:
        if value.strip().lower() in ("", "none", "0", "unlimited"):
            return None
        m = _RATE_RE.match(value)
        if not m:
            raise VidlakeError(f"--rate {value!r} is not a rate; use e.g. 5/s, 300/min, 1000/h")
        per = {"s": 1, "m": 60, "h": 3600}[(m.group(2) or "s")[0].lower()]
        rate = float(m.group(1)) / per
    if rate <= 0:
        return None
    return rate


def parse_size(value: str | int) -> int:
    """Bytes from ``500000``, ``500K``, ``50MB``, ``1GiB`` (K/M/G/T are powers of 1024)."""
    if isinstance(value, int):
        n = value
    else:
        m = _SIZE_RE.match(value)
        if not m:
            raise VidlakeError(f"--max-bytes {value!r} is not a size; use e.g. 50MB, 800K, 1000000")
        unit = (m.group(2) or "").lower()[:1]
        n = int(float(m.group(1)) * 1024 ** " kmgt".index(unit or " "))
    if n <= 0:
        raise VidlakeError(f"--max-bytes must be positive, not {value!r}")
    return n


def strip_query(url: str) -> str:
    """The URL without query and fragment: Discord's CDN signs links in the query (ex/is/hm),
    so that part is never stored or logged."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, p.path, "", ""))


# ---------------------------------------------------------------------- targets
def _is_video(att: dict[str, Any]) -> bool:
    ctype = (att.get("content_type") or "").lower()
    if ctype.startswith("video/"):
        return True
    name = str(att.get("filename") or "")
    return not ctype.startswith("image/") and name.lower().endswith(VIDEO_EXTS)


def target_from_extra(uuid: str, extra: str | dict[str, Any] | None,
                      time_: datetime | None = None) -> Target | None:
    """The first video attachment kept for a prompt (``extra.attachments``), or None."""
    if not extra:
        return None
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if not isinstance(extra, dict):
        return None
    atts = [a for a in extra.get("attachments") or [] if isinstance(a, dict) and a.get("url")]
    videos = [a for a in atts if _is_video(a)]
    if not videos:
        return None
    a = videos[0]
    size = a.get("size")
    return Target(uuid=uuid, url=str(a["url"]), filename=str(a.get("filename") or ""),
                  size=int(size) if isinstance(size, int | float) else None,
                  exact_size="size_text" not in a and isinstance(size, int),
                  time=time_, other_videos=len(videos) - 1)


def targets_from_lake(lake: Lake) -> tuple[list[Target], int]:
    """Every prompt in the lake with a video attachment; and how many have attachments but no
    video."""
    ds = lake.dataset("prompts")
    out: list[Target] = []
    without = 0
    for batch in ds.to_batches(columns=["uuid", "time", "extra"],
                               filter="extra LIKE '%\"attachments\"%'"):
        d = batch.to_pydict()
        for u, t, e in zip(d["uuid"], d["time"], d["extra"], strict=True):
            tg = target_from_extra(u, e, t)
            if tg is None:
                without += 1
            else:
                out.append(tg)
    return out, without


class _Sink:
    """Receives the ingest collector's rows; keeps, per uuid, the earliest occurrence (by time,
    then order) whose reply carries a video, the way the ingest keeps the earliest one."""

    def __init__(self) -> None:
        self.best: dict[str, tuple[Any, int, Target]] = {}
        self.seen: set[str] = set()

    def add(self, row: tuple[Any, ...]) -> None:
        uuid, _prompt, t, order, _sid, _channel, _author, extra = row
        self.seen.add(uuid)
        tg = target_from_extra(uuid, extra, t)
        if tg is None:
            return
        cur = self.best.get(uuid)
        if cur is None or (t, order) < (cur[0], cur[1]):
            self.best[uuid] = (t, order, tg)


def targets_from_exports(paths: list[str], ingest_options: dict[str, Any]
                         ) -> tuple[list[Target], int]:
    """The video attachments of every prompt in these exports, read by the ingest's own parser
    and filters (`ingest.discord`); and how many of their prompts have no video."""
    from ..ingest.discord import Collector, Config, DiscordReport, detect_folder, parse_file
    from ..ingest.pipeline import IngestOptions

    unknown = set(ingest_options) - set(IngestOptions.__dataclass_fields__)
    if unknown:
        raise VidlakeError(f"unknown ingest option(s): {', '.join(sorted(unknown))}")
    opts = IngestOptions(**{k: v for k, v in ingest_options.items() if k != "progress"})
    cfg = Config.from_options(opts)
    sink = _Sink()
    for p in paths:
        rep = DiscordReport(path=p, format="discord")
        collect = Collector(cfg, rep, sink)  # type: ignore[arg-type]  # a Spill-shaped sink
        if Path(p).is_dir():
            detect_folder(p)  # every export-looking file must be an export
            from ..ingest.discord import folder_files

            files = folder_files(p)
        else:
            files = [p]
        for f in files:
            parse_file(f, None, cfg, rep, collect)
    targets = [v[2] for v in sink.best.values()]
    return targets, len(sink.seen) - len(targets)


# ---------------------------------------------------------------------- downloading
class RateLimiter:
    """A shared pacing clock: at most `rate` request starts per second, and a global pause
    when a server answers 429 with Retry-After."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> None:
        with self.lock:
            now = time.monotonic()
            t = max(now, self.next)
            self.next = t + self.interval
        if t > now:
            stop.wait(t - now)

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.next = max(self.next, time.monotonic() + seconds)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _Transient(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None,
                 wait: float | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.status, self.wait = reason, detail, status, wait


class _Final(Exception):
    def __init__(self, reason: str, detail: str, status: int | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.status = reason, detail, status


class _Conns(threading.local):
    """Each download thread's keep-alive connections, by (scheme, host, port)."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, int], http.client.HTTPConnection] = {}


@dataclass
class Fetcher:
    """GET one attachment over keep-alive `http.client` connections (one set per thread),
    redirects checked by hand, retries with backoff, and the body checks.

    `http.client` rather than a richer client: it costs about half the CPU per request, and on
    a small machine the CPU is shared with the probing."""

    limiter: RateLimiter
    stop: threading.Event
    max_bytes: int
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    retried: int = 0
    downloaded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    local: _Conns = field(default_factory=_Conns)
    opened: list[http.client.HTTPConnection] = field(default_factory=list)

    def fetch(self, t: Target) -> tuple[bytes | None, Failure | None]:
        attempt = 0
        while True:
            if self.stop.is_set():
                return None, Failure(t.uuid, t.filename, "cancelled", None, "run stopped",
                                     attempt)
            try:
                return self._once(t), None
            except _Final as f:
                return None, Failure(t.uuid, t.filename, f.reason, f.status, f.detail,
                                     attempt + 1)
            except _Transient as tr:
                if attempt >= self.retries or (tr.wait is not None
                                               and tr.wait > self.max_retry_after):
                    detail = tr.detail + f" (gave up after {attempt + 1} attempt(s))"
                    if tr.wait is not None and tr.wait > self.max_retry_after:
                        detail = (f"{tr.detail}; Retry-After {tr.wait:.0f}s exceeds "
                                  f"{self.max_retry_after:.0f}s")
                    return None, Failure(t.uuid, t.filename, tr.reason, tr.status, detail,
                                         attempt + 1)
                if tr.wait is not None:
                    delay = tr.wait
                    self.limiter.pause(delay)  # every worker holds off, not just this one
                else:
                    delay = min(self.max_backoff, self.backoff * 2 ** attempt)
                    delay *= 0.5 + random.random()  # jitter, so retries do not line up
                attempt += 1
                with self.lock:
                    self.retried += 1
                self.stop.wait(delay)

    def close(self) -> None:
        with self.lock:
            for c in self.opened:
                with contextlib.suppress(Exception):
                    c.close()
            self.opened.clear()

    def _conn(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        c = self.local.by_key.get(key)
        if c is None:
            scheme, host, port = key
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            c = cls(host, port, timeout=self.timeout)
            self.local.by_key[key] = c
            with self.lock:
                self.opened.append(c)
        return c

    def _drop(self, key: tuple[str, str, int]) -> None:
        c = self.local.by_key.get(key)
        if c is not None:
            c.close()  # reopened by the next request on this key

    def _once(self, t: Target) -> bytes:
        url = t.url
        for _hop in range(MAX_REDIRECTS + 1):
            p = urlsplit(url)
            scheme = p.scheme.lower()
            if scheme not in ("http", "https"):
                raise _Final("bad-url" if url == t.url else "bad-redirect",
                             f"refused {scheme or 'no'}: scheme (only http and https are fetched)")
            try:
                host, port = p.hostname, p.port
            except ValueError:
                host = None
            if not host:
                raise _Final("bad-url" if url == t.url else "bad-redirect", "no host in the URL")
            key = (scheme, host, port or (443 if scheme == "https" else 80))
            # Percent-encode what http.client cannot send (spaces, non-ASCII); keep the rest.
            target = quote((p.path or "/") + (f"?{p.query}" if p.query else ""),
                           safe="!#$%&'()*+,/:;=?@[]~")
            self.limiter.acquire(self.stop)
            for fresh in (False, True):
                conn = self._conn(key)
                reused = conn.sock is not None
                got_headers = False
                try:
                    conn.request("GET", target, headers=HEADERS)
                    resp = conn.getresponse()
                    got_headers = True
                    if resp.status in (301, 302, 303, 307, 308):
                        loc = resp.getheader("location")
                        resp.read(64 * 1024)
                        self._drop(key)
                        if not loc:
                            raise _Final("bad-redirect", f"HTTP {resp.status} without Location",
                                         resp.status)
                        url = urljoin(url, loc.strip())
                        break
                    return self._body(resp, t)
                except (_Final, _Transient):
                    self._drop(key)
                    raise
                except TimeoutError:
                    self._drop(key)
                    raise _Transient("timeout", f"no data for {self.timeout:g}s") from None
                except (http.client.HTTPException, OSError) as exc:
                    self._drop(key)
                    if reused and not got_headers and not fresh:
                        continue  # a keep-alive connection the server had closed: reconnect
                    if got_headers:
                        raise _Transient("truncated", f"body cut short: {exc!r}") from None
                    raise _Transient("connection", f"{type(exc).__name__}: {exc}") from None
                except BaseException:
                    self._drop(key)
                    raise
        raise _Final("too-many-redirects", f"more than {MAX_REDIRECTS} redirects")

    def _body(self, r: http.client.HTTPResponse, t: Target) -> bytes:
        code = r.status
        if code >= 500 or code in RETRY_STATUSES:
            wait = retry_after(r.getheader("retry-after")) if code in (429, 503) else None
            raise _Transient("rate-limited" if code == 429 else f"http-{code}",
                             f"HTTP {code}", code, wait)
        if code != 200:
            raise _Final(f"http-{code}", f"HTTP {code}"
                         + (" (expired or forbidden link)" if code in (401, 403, 404, 410)
                            else ""), code)
        ctype = (r.getheader("content-type") or "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith(VIDEO_TYPES):
            raise _Final("wrong-content-type", f"content type {ctype} is not a video", code)
        declared: int | None = None
        cl = r.getheader("content-length")
        if cl is not None and not r.chunked:
            try:
                declared = int(cl)
            except ValueError:
                raise _Final("truncated", f"bad Content-Length {cl!r}", code) from None
            if declared > self.max_bytes:
                raise _Final("oversized", f"Content-Length {declared:,} > max {self.max_bytes:,}",
                             code)
        if declared is not None:
            try:
                data = r.read()  # exactly Content-Length bytes, or IncompleteRead
            except http.client.IncompleteRead as exc:
                raise _Transient("truncated", f"{len(exc.partial):,} of {declared:,} bytes "
                                 "(Content-Length), then the connection closed", code) from None
        else:
            buf = bytearray()
            while chunk := r.read(1 << 16):
                buf += chunk
                if len(buf) > self.max_bytes:
                    raise _Final("oversized", f"body exceeds max {self.max_bytes:,} bytes", code)
            data = bytes(buf)
        with self.lock:
            self.downloaded += len(data)
        if declared is not None and len(data) != declared:
            raise _Transient("truncated", f"{len(data):,} of {declared:,} bytes (Content-Length)",
                             code)
        if t.exact_size and t.size is not None and len(data) != t.size:
            raise _Final("size-mismatch", f"{len(data):,} bytes, the export says {t.size:,}",
                         code)
        return data


def _safe_name(t: Target, model: str) -> str:
    """A name for the probe's format hint: our own, never the attachment's (hostile) name."""
    ext = PurePosixPath(t.filename.replace("\\", "/")).suffix.lower()
    return f"{model}-{t.uuid}{ext if ext in VIDEO_EXTS else '.mp4'}"


#: Clips downloaded but not yet stored, at most (and at most this many bytes, by declared size):
#: enough to keep every download slot busy while a chunk commits.
WINDOW_CLIPS = 64
WINDOW_BYTES = 256 * 1024 * 1024
UNKNOWN_SIZE = 1024 * 1024  # the window's guess for a clip whose size the export omits


def _pipeline(targets: list[Target], fetcher: Fetcher, model: str, *, concurrency: int,
              probe_workers: int, verify: str, thumbnails: bool
              ) -> Generator[tuple[Target, bytes | None, Any, bytes | None], None, None]:
    """Download with `concurrency` threads and probe with `probe_workers` threads; yield
    (target, bytes, Probe | ProbeError | Failure, thumbnail) in completion order.

    A feeder thread keeps the download slots busy, independently of the consumer (which
    stalls while a chunk commits), up to a window of clips in flight or waiting to be stored
    (`WINDOW_CLIPS`, `WINDOW_BYTES`), so memory stays bounded."""
    from .importer import probe_clip

    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stop = fetcher.stop
    cond = threading.Condition()
    inflight = [0, 0]  # clips, estimated bytes
    window = max(WINDOW_CLIPS, 2 * (concurrency + probe_workers))

    def est(t: Target) -> int:
        return min(t.size or UNKNOWN_SIZE, fetcher.max_bytes)

    def probe(t: Target, data: bytes) -> None:
        try:
            res, thumb = probe_clip(data, _safe_name(t, model), verify=verify,
                                    thumbnails=thumbnails)
            q.put((t, data, res, thumb))
        except BaseException as exc:  # a bug: surfaces in the consuming thread
            q.put(exc)

    def download(t: Target) -> None:
        try:
            data, fail = fetcher.fetch(t)
            if fail is not None or data is None:
                q.put((t, None, fail, None))
            else:
                probes.submit(probe, t, data)
        except BaseException as exc:
            q.put(exc)

    def feed() -> None:
        try:
            for t in targets:
                size = est(t)
                with cond:
                    while not stop.is_set() and inflight[0] and (
                            inflight[0] >= window or inflight[1] + size > WINDOW_BYTES):
                        cond.wait(0.5)
                    if stop.is_set():
                        return
                    inflight[0] += 1
                    inflight[1] += size
                downloads.submit(download, t)
        except BaseException as exc:
            q.put(exc)

    downloads = ThreadPoolExecutor(concurrency, thread_name_prefix="vidlake-fetch")
    probes = ThreadPoolExecutor(probe_workers, thread_name_prefix="vidlake-probe")
    feeder = threading.Thread(target=feed, name="vidlake-feed", daemon=True)
    feeder.start()
    try:
        for _ in range(len(targets)):
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            with cond:
                inflight[0] -= 1
                inflight[1] -= est(item[0])
                cond.notify()
            yield item
    finally:
        stop.set()
        with cond:
            cond.notify_all()
        feeder.join()
        downloads.shutdown(wait=True, cancel_futures=True)
        probes.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- the command
def scrape_videos(
    lake: Lake,
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None = None,
    *,
    model: str = "pika",
    limit: int | None = None,
    concurrency: int = 8,
    rate: str | float | None = None,
    max_bytes: int | str = DEFAULT_MAX_BYTES,
    retries: int = 4,
    backoff: float = 0.5,
    timeout: float = 30.0,
    max_retry_after: float = 300.0,
    chunk: int = 256,
    verify: str = "first-frame",
    thumbnails: bool = True,
    plan: bool = False,
    ingest_options: dict[str, Any] | None = None,
    probe_workers: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ScrapeReport:
    """Download the video attachment of every prompt that has one, into ``videos``.

    `paths` (Discord export files or folders) are ingested first and their attachments read;
    without paths, every prompt in the lake whose ``extra`` keeps a video attachment is a
    candidate. Candidates are ordered by prompt time then uuid; `limit` keeps the first N (a
    rerun resumes the same set). Videos already in the lake (``{model}-{uuid}``) are skipped,
    so a rerun imports nothing twice and retries only what failed. `plan=True` writes and
    downloads nothing and says how many, how many bytes, and how many are already present.
    `progress(done, total, bytes_downloaded)` is called as clips finish.
    """
    t0 = time.perf_counter()
    if not MODEL_RE.match(model):
        raise InputError(f"model {model!r} is not a valid model name (letters, digits, _.+-:/)")
    if verify not in ("first-frame", "full"):
        raise InputError(f"verify must be first-frame or full, not {verify!r}")
    if concurrency < 1:
        raise VidlakeError("--concurrency must be at least 1")
    if chunk < 1:
        raise VidlakeError("--chunk must be at least 1")
    rps = parse_rate(rate)
    maxb = parse_size(max_bytes)
    plist: list[str] = ([] if paths is None else
                        [os.fspath(paths)] if isinstance(paths, str | os.PathLike)
                        else [os.fspath(p) for p in paths])
    for p in plist:
        if not os.path.exists(p):
            raise InputError("no such file or folder", path=p)
    iopts = dict(ingest_options or {})
    report = ScrapeReport(model=model, sources=plist or ["lake"], plan=plan)

    # 1. the candidates
    if plist:
        targets, report.prompts_without_video = targets_from_exports(plist, iopts)
        if not plan:
            for p in plist:
                ing = lake.ingest(p, **iopts)
                if getattr(ing, "batch_id", None):
                    report.ingest_batches.append(ing.batch_id)
                report.prompts_ingested += int(getattr(ing, "rows_added", 0) or 0)
    else:
        targets, report.prompts_without_video = targets_from_lake(lake)
    report.prompts_with_video = len(targets)
    epoch = datetime.min.replace(tzinfo=UTC)
    targets.sort(key=lambda t: (t.time or epoch, t.uuid))
    if limit is not None:
        targets = targets[:limit]
    report.considered = len(targets)

    # 2. what is already there, what cannot be fetched
    from .importer import existing_video_ids

    uuids = lake.uuid_index()
    existing = existing_video_ids(lake, [model])
    todo: list[Target] = []
    for t in targets:
        if f"{model}-{t.uuid}" in existing:
            report.already_in_lake += 1
            continue
        if t.uuid not in uuids:
            report.prompts_not_in_lake += 1
            if not plan:
                report.failures.append(Failure(t.uuid, t.filename, "unknown-uuid",
                                               None, f"no prompt {t.uuid} in the lake"))
                continue
        if t.size is not None and t.size > maxb * (1 if t.exact_size else SIZE_SLACK):
            report.failures.append(Failure(t.uuid, t.filename, "oversized", None,
                                           f"the export says {t.size:,} bytes > max {maxb:,}"))
            continue
        todo.append(t)
    report.to_fetch = len(todo)
    report.bytes_to_fetch = sum(t.size or 0 for t in todo)
    report.unknown_sizes = sum(t.size is None for t in todo)
    if plan or not (todo or report.failures):  # nothing to fetch or to report: no batch
        report.seconds = time.perf_counter() - t0
        return report

    # 3. download, check, import in chunks
    params = {"paths": plist, "model": model, "limit": limit, "concurrency": concurrency,
              "rate_per_s": rps, "max_bytes": maxb, "retries": retries, "timeout": timeout,
              "verify": verify, "chunk": chunk}
    with lake.batch("scrape", source=plist[0] if len(plist) == 1 else
                    (f"{len(plist)} paths" if plist else "lake: prompts.extra.attachments"),
                    params=params, provenance=_provenance()) as b:
        report.batch_id = b.batch_id
        if todo:
            _run(b, todo, report, model=model, concurrency=concurrency, rps=rps, maxb=maxb,
                 retries=retries, backoff=backoff, timeout=timeout,
                 max_retry_after=max_retry_after, chunk=chunk, verify=verify,
                 thumbnails=thumbnails, probe_workers=probe_workers, progress=progress, t0=t0)
        b.counts.update(_counts(report))
        # Per prompt, in the batch's final event (chunk events carry the totals only).
        b.counts["failures"] = [f.as_dict() for f in report.failures]
    report.seconds = time.perf_counter() - t0
    return report


def _counts(report: ScrapeReport) -> dict[str, Any]:
    return {"rows_added": report.imported, "already_in_lake": report.already_in_lake,
            "considered": report.considered, "fetched": report.fetched,
            "failed": len(report.failures), "failed_by_reason": report.by_reason(),
            "retries": report.retries, "bytes_downloaded": report.bytes_downloaded}


def _run(b: Any, todo: list[Target], report: ScrapeReport, *, model: str, concurrency: int,
         rps: float | None, maxb: int, retries: int, backoff: float, timeout: float,
         max_retry_after: float, chunk: int, verify: str, thumbnails: bool,
         probe_workers: int | None, progress: Callable[[int, int, int], None] | None,
         t0: float) -> None:
    from .importer import rows_to_batch, video_row
    from .probe import ProbeError

    stop = threading.Event()
    fetcher = Fetcher(RateLimiter(rps), stop, maxb, timeout=timeout, retries=retries,
                      backoff=backoff, max_retry_after=max_retry_after)
    workers = probe_workers or max(1, min(4, os.cpu_count() or 1))
    results = _pipeline(todo, fetcher, model, concurrency=concurrency, probe_workers=workers,
                        verify=verify, thumbnails=thumbnails)
    done_n = 0
    total = len(todo)
    finished = False

    def chunk_batches() -> Iterator[Any]:
        nonlocal done_n, finished
        rows: list[dict[str, Any]] = []
        n = 0
        for t, data, res, thumb in results:
            done_n += 1
            if isinstance(res, Failure):
                report.failures.append(res)
            elif isinstance(res, ProbeError):
                report.fetched += 1
                report.failures.append(Failure(t.uuid, t.filename, res.reason, 200, res.detail,
                                               1))
            else:
                report.fetched += 1
                assert data is not None
                rows.append(video_row(
                    uuid=t.uuid, model=model, data=data, probe=res,
                    source=strip_query(t.url),
                    params={"kind": "scrape", "url": strip_query(t.url),
                            "filename": t.filename, "declared_size": t.size,
                            "other_videos": t.other_videos, "verify": verify},
                    batch_id=b.batch_id, thumb=thumb))
                report.imported += 1
                report.bytes_imported += len(data)
                report.imported_ids.append(f"{model}-{t.uuid}")
                n += 1
            report.retries = fetcher.retried
            report.bytes_downloaded = fetcher.downloaded
            if progress:
                progress(done_n, total, fetcher.downloaded)
            if len(rows) >= ROWS_PER_BATCH:
                yield rows_to_batch(rows)
                rows = []
            if n >= chunk:
                break
        else:
            finished = True
        if rows:
            yield rows_to_batch(rows)

    try:
        while not finished:
            before = report.imported
            b.append("videos", chunk_batches(), schema=VIDEOS_SCHEMA)
            b.counts.update(_counts(report))
            if report.imported > before:
                b.commit()
                report.chunks += 1
    finally:
        results.close()
        fetcher.close()
        report.retries = fetcher.retried
        report.bytes_downloaded = fetcher.downloaded
        report.seconds = time.perf_counter() - t0


def _provenance() -> dict[str, Any]:
    import platform

    from .importer import provenance

    return {**provenance(), "http": f"http.client (Python {platform.python_version()})"}


__all__ = ["Failure", "RateLimiter", "ScrapeReport", "Target", "parse_rate", "parse_size",
           "scrape_videos", "strip_query", "target_from_extra"]
