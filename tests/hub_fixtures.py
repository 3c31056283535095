"""A Hugging Face Hub stand-in on 127.0.0.1: enough of the Hub's HTTP API for huggingface_hub.

Serves one or more dataset repos held in memory, in the Hub's layout:

* ``GET /api/datasets/{repo}`` and ``/api/datasets/{repo}/revision/{rev}``: dataset info
  (``sha``, ``gated``, ``cardData``, ``siblings``);
* ``GET /api/datasets/{repo}/auth-check``: 200, or 401/403 with ``X-Error-Code: GatedRepo``;
* ``GET /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=&expand=``: file entries with
  ``size``, git ``oid`` and, for LFS files, ``lfs: {oid: sha256, size, pointerSize}``;
  paginated with a ``Link: <...>; rel="next"`` header like the Hub;
* ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``: small files answered directly (ETag =
  git oid), LFS files redirected (302) to ``/cdn/{sha256}`` with ``X-Linked-Etag`` and
  ``X-Linked-Size``; ``X-Repo-Commit`` on every answer; ``Range`` honoured (206).

Faults to inject: ``drop_after[path] = n`` (close the connection after n body bytes, once),
``corrupt.add(path)`` (serve one byte flipped), ``missing.add(path)`` (404 EntryNotFound while
still listed), ``gated = "manual"`` with ``tokens`` allowed, ``rate`` (bytes/s per response).
Every request is recorded in ``requests`` (method, path, Range, Authorization).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_MIN = 1024  # files at least this big are "LFS" files (the Hub: by .gitattributes rules)


@dataclass
class HubFile:
    data: bytes | None = None
    path_on_disk: str | None = None  # large files (benchmarks) are served from disk
    size: int = 0
    sha256: str = ""
    git_oid: str = ""
    lfs: bool = False

    def read(self, start: int, end: int) -> Any:
        """Chunks of bytes [start, end)."""
        if self.data is not None:
            for i in range(start, end, 1 << 16):
                yield self.data[i:min(end, i + (1 << 16))]
            return
        with open(self.path_on_disk, "rb") as fh:  # type: ignore[arg-type]
            fh.seek(start)
            left = end - start
            while left:
                buf = fh.read(min(1 << 20, left))
                if not buf:
                    return
                left -= len(buf)
                yield buf


def make_file(data: bytes | None = None, *, path_on_disk: str | None = None,
              lfs: bool | None = None) -> HubFile:
    if data is not None:
        size = len(data)
        sha = hashlib.sha256(data).hexdigest()
        git = hashlib.sha1(f"blob {size}\0".encode() + data).hexdigest()
    else:
        import os

        size = os.path.getsize(path_on_disk)  # type: ignore[arg-type]
        h, g = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
        with open(path_on_disk, "rb") as fh:  # type: ignore[arg-type]
            while buf := fh.read(1 << 22):
                h.update(buf)
                g.update(buf)
        sha, git = h.hexdigest(), g.hexdigest()
    is_lfs = size >= LFS_MIN if lfs is None else lfs
    if is_lfs:  # an LFS file's git oid is that of its pointer file
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"
        git = hashlib.sha1(f"blob {len(pointer)}\0".encode() + pointer.encode()).hexdigest()
    return HubFile(data, path_on_disk, size, sha, git, is_lfs)


@dataclass
class HubRepo:
    files: dict[str, HubFile]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    gated: Any = False
    license: str = "cc-by-nc-4.0"


@dataclass
class HubState:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)  # tokens that accepted the gated licence
    drop_after: dict[str, int] = field(default_factory=dict)
    corrupt: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    rate: float | None = None  # bytes per second per response
    page_size: int = 1000
    cdn_url: str = ""  # set by HubServer: LFS downloads are served from a second port
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        # -------------------------------------------------------------- plumbing
        def _record(self) -> None:
            with state.lock:
                state.requests.append({"method": self.command, "path": unquote(self.path),
                                       "range": self.headers.get("Range"),
                                       "auth": self.headers.get("Authorization")})

        def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str | None, message: str, repo: HubRepo | None = None) -> None:
            h = {"X-Error-Message": message}
            if code:
                h["X-Error-Code"] = code
            if repo is not None:
                h["X-Repo-Commit"] = repo.sha
            self._json({"error": message}, status, h)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth[7:] if auth.startswith("Bearer ") else None

        def _gate(self, name: str, repo: HubRepo) -> bool:
            """True when the request may read the repo's files; answers 401/403 otherwise."""
            if not repo.gated:
                return True
            tok = self._token()
            if tok is None:
                self._error(401, "GatedRepo", f"Access to dataset {name} is restricted. You must "
                            "have access to it and be authenticated to access it. Please log in.")
                return False
            if tok not in state.tokens:
                self._error(403, "GatedRepo", f"Access to dataset {name} is restricted and you are "
                            f"not in the authorized list. Visit https://huggingface.co/datasets/"
                            f"{name} to ask for access.")
                return False
            return True

        def _split(self, rest: str) -> tuple[str, HubRepo, str] | None:
            """'owner/name/<tail>' -> (repo name, repo, tail)."""
            parts = rest.split("/", 2)
            if len(parts) < 2:
                return None
            name = f"{parts[0]}/{parts[1]}"
            repo = state.repos.get(name)
            if repo is None:
                self._error(401 if self._token() is None else 404, "RepoNotFound",
                            "Repository not found")
                return None
            return name, repo, parts[2] if len(parts) > 2 else ""

        # -------------------------------------------------------------- routes
        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            self._record()
            u = urlsplit(self.path)
            path = unquote(u.path)
            q = parse_qs(u.query)
            if path.startswith("/api/datasets/"):
                got = self._split(path[len("/api/datasets/"):])
                if got is None:
                    return
                name, repo, tail = got
                if tail == "" or tail.startswith("revision/"):
                    return self._info(name, repo)
                if tail == "auth-check":
                    if self._gate(name, repo):
                        self._json({"ok": True})
                    return
                if tail.startswith("tree/"):
                    if not self._gate(name, repo):
                        return
                    rest = tail[len("tree/"):]
                    _rev, _, sub = rest.partition("/")
                    return self._tree(name, repo, sub, q)
                return self._error(404, None, "not found")
            if path.startswith("/datasets/"):
                got = self._split(path[len("/datasets/"):])
                if got is None:
                    return
                name, repo, tail = got
                if not tail.startswith("resolve/"):
                    return self._error(404, None, "not found")
                _rev, _, fpath = tail[len("resolve/"):].partition("/")
                if not self._gate(name, repo):
                    return
                f = repo.files.get(fpath)
                if f is None or fpath in state.missing:
                    return self._error(404, "EntryNotFound", f"{fpath} does not exist", repo)
                if f.lfs:  # like the Hub: a redirect to a CDN on another origin
                    self.send_response(302)
                    self.send_header("Location", f"{state.cdn_url}/cdn/{f.sha256}?p={quote(fpath)}")
                    self.send_header("X-Repo-Commit", repo.sha)
                    self.send_header("X-Linked-Etag", f'"{f.sha256}"')
                    self.send_header("X-Linked-Size", str(f.size))
                    self.send_header("ETag", f'"{f.git_oid}"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return self._body(fpath, f, {"X-Repo-Commit": repo.sha, "ETag": f'"{f.git_oid}"'})
            if path.startswith("/cdn/"):
                sha = path[len("/cdn/"):]
                fpath = (q.get("p") or [""])[0]
                for repo in state.repos.values():
                    f = repo.files.get(fpath)
                    if f is not None and f.sha256 == sha:
                        return self._body(fpath, f, {"ETag": f'"{sha}"'})
                return self._error(404, None, "no such blob")
            self._error(404, None, "not found")

        def _info(self, name: str, repo: HubRepo) -> None:
            self._json({"_id": "x", "id": name, "author": name.split("/")[0], "sha": repo.sha,
                        "private": False, "gated": repo.gated, "disabled": False,
                        "downloads": 0, "likes": 0, "tags": [],
                        "cardData": {"license": repo.license},
                        "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                        "lastModified": "2024-03-09T00:00:00.000Z",
                        "createdAt": "2024-03-01T00:00:00.000Z"})

        def _tree(self, name: str, repo: HubRepo, sub: str, q: dict[str, list[str]]) -> None:
            recursive = (q.get("recursive") or ["false"])[0].lower() == "true"
            prefix = f"{sub.rstrip('/')}/" if sub else ""
            entries: list[dict[str, Any]] = []
            dirs: set[str] = set()
            for p in sorted(repo.files):
                if not p.startswith(prefix):
                    continue
                rel = p[len(prefix):]
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    d = prefix + "/".join(parts[:i])
                    if (recursive or i == 1) and d not in dirs:
                        dirs.add(d)
                        entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
                if not recursive and len(parts) > 1:
                    continue
                f = repo.files[p]
                e: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": p}
                if f.lfs:
                    e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                entries.append(e)
            start = int((q.get("cursor") or ["0"])[0])
            page = entries[start:start + state.page_size]
            headers = {}
            if start + state.page_size < len(entries):
                host = self.headers.get("Host")
                nxt = (f"http://{host}/api/datasets/{name}/tree/{repo.sha}"
                       f"{'/' + sub if sub else ''}?recursive={recursive}&expand=False"
                       f"&cursor={start + state.page_size}")
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._json(page, 200, headers)

        def _body(self, fpath: str, f: HubFile, headers: dict[str, str]) -> None:
            start, end, status = 0, f.size, 200
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start = int(a)
                end = int(b) + 1 if b else f.size
                if start >= f.size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{f.size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{f.size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            with state.lock:
                drop = state.drop_after.pop(fpath, None) if self.command == "GET" else None
            sent = 0
            t0 = time.perf_counter()
            pos = start
            for chunk in f.read(start, end):
                if fpath in state.corrupt and pos <= f.size // 2 < pos + len(chunk):
                    i = f.size // 2 - pos
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
                if drop is not None and sent + len(chunk) > drop:
                    self.wfile.write(chunk[:max(0, drop - sent)])
                    self.wfile.flush()
                    self.close_connection = True
                    import socket

                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                pos += len(chunk)
                if state.rate:
                    ahead = sent / state.rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

    return H


class HubServer:
    """``with HubServer(state) as hub: os.environ["HF_ENDPOINT"] = hub.url``."""

    def __init__(self, state: HubState):
        self.state = state
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.httpd.daemon_threads = True
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.cdn.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        state.cdn_url = f"http://127.0.0.1:{self.cdn.server_address[1]}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.httpd, self.cdn)]

    def __enter__(self) -> HubServer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s in (self.httpd, self.cdn):
            s.shutdown()
            s.server_close()

    def gets(self, fragment: str) -> list[dict[str, Any]]:
        return [r for r in self.state.requests if r["method"] == "GET" and fragment in r["path"]]
