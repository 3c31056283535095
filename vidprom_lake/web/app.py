"""The gallery's ASGI application (Starlette): server-rendered pages, videos with ranges.

Routes (all GET/HEAD; any other method is 405, so nothing can change the lake):

    /                          prompt list: search, filters, order, pages
    /p/{uuid}                  one prompt: metadata, Pika flags, NSFW, near-duplicates, videos
    /models                    the models with videos, each linking to its grid
    /grid/{model}              thumbnail grid of one model's videos (same filters as the list)
    /video/{uuid}/{model}      the clip, with HTTP range requests (206), ETag, caching
    /thumb/{uuid}/{model}      the stored preview image
    /static/...                CSS and the little JavaScript, from the package

Prompts are untrusted text: Jinja2 autoescapes every value, and every response carries a
Content-Security-Policy that allows scripts only from /static (no inline script, no event
handler attributes, nothing from another origin), so even markup that slipped through could
not run. Bad query parameters are 400, unknown ids 404, and an unexpected error is a plain 500
page (logged on the server); no traceback ever reaches the browser.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import storage
from ..errors import VidlakeError
from ..schema import NSFW_LABELS
from .cache import ByteLRU
from .gallery import Gallery, NotFound, SearchUnavailable
from .params import (
    DEDUP,
    PER_PAGE,
    SORTS,
    BadParam,
    ListQuery,
    parse_list_query,
    parse_uuid,
)
from .ranges import (
    CHUNK,
    RangeNotSatisfiable,
    etag_matches,
    if_range_allows,
    iter_file,
    parse_range,
)

log = logging.getLogger("vidlake.web")
T = TypeVar("T")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Clips and previews never change under one (model, uuid) in a pinned lake.
MEDIA_CACHE = "private, max-age=86400"
#: Pages may change when the server is restarted on a newer head: browsers revalidate them
#: (ETag, 304) instead of showing a stale copy.
PAGE_CACHE = "no-cache"
#: Rendered pages kept in memory (a list page of 48 prompts is ~40 KB).
PAGE_CACHE_BYTES = 64 << 20
#: Worker threads for work that blocks (see `_Work`).
THREADS = 8
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("vidprom_lake.web") / name))


def _templates() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_package_dir("templates"))),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["qpath"] = lambda s: quote(str(s), safe="/")
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["score"] = lambda x: "" if x is None else f"{float(x):.3f}"
    env.filters["dt"] = lambda t: "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["kb"] = lambda b: "" if b is None else f"{b / 1024:,.0f} KB"
    return env


class _SecurityHeaders:
    """Pure ASGI middleware adding the security headers to every response."""

    def __init__(self, app: Any):
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k, v) for k, v in self.raw if k not in have]
            await send(message)

        await self.app(scope, receive, send_with)


def create_app(gallery: Gallery, *, allowed_hosts: list[str] | None = None,
               page_cache_bytes: int = PAGE_CACHE_BYTES, threads: int = THREADS) -> Starlette:
    """The ASGI app over `gallery`. `allowed_hosts` guards against DNS rebinding (a web page
    elsewhere pointing its own host name at 127.0.0.1 to read the gallery); None means the
    loopback names only, ``["*"]`` any. Rendered pages are kept (with their ETag) up to
    `page_cache_bytes`. Searches run on at most `threads` worker threads, and so do reads when
    the lake is on an object store (clip and thumbnail reads on as many again, so that they
    never queue behind a search); everything else runs on the event loop (see `_Work`)."""
    env = _templates()
    pages = ByteLRU(page_cache_bytes)
    work = _Work(threads)  # searches; page builds that read an object store
    media = _Work(threads)  # clip and thumbnail reads from an object store
    # A positioned read from a local lake costs ~0.06 ms (page cache): less than handing it to
    # a thread, which under load then waits ~5-20 ms for the GIL. From an object store a read
    # is a network round trip, so there it goes to a thread like the rest.
    local = not storage.is_remote(gallery.lake.uri)

    async def read(fn: Callable[..., T], *args: Any) -> T:
        return fn(*args) if local else await media.run(fn, *args)

    async def chunks(it: Iterator[bytes]) -> AsyncIterator[bytes]:
        if local:
            for chunk in it:
                yield chunk
        else:
            async for chunk in media.iterate(it):
                yield chunk

    def render_html(request: Request, name: str, **ctx: Any) -> str:
        ctx.setdefault("lq", None)
        return str(env.get_template(name).render(
            g=gallery, request_path=request.url.path, nsfw_labels=NSFW_LABELS, sorts=SORTS,
            dedup_choices=DEDUP, per_page_choices=PER_PAGE, **ctx))

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(render_html(request, name, **ctx), status_code=status)

    async def cached_page(request: Request, lq: ListQuery | None, build: Callable[[], str],
                          *, blocking: Callable[[], object] | None = None,
                          on_thread: bool = False) -> Response:
        """The page `build` renders, from the page cache when this path and query were
        rendered before (the lake is pinned: a page never changes while the server runs).

        On a miss, `blocking` (a search) runs first on a worker thread, and `build` then on
        the event loop: building a page from memory takes ~2 ms of CPU, while on a thread it
        would wait for the GIL behind the event loop each time it needs it (~20 ms under load,
        measured). `on_thread` builds on a thread too (a build that reads an object store)."""
        key = (request.url.path, repr(lq))
        hit = pages.get(key)
        source = "hit" if hit is not None else "miss"
        if hit is None:
            if blocking is not None:
                await work.run(blocking)
            html = (await work.run(build) if on_thread else build()).encode()
            etag = '"' + hashlib.blake2b(html, digest_size=12).hexdigest() + '"'
            hit = (html, etag)
            pages.put(key, hit, len(html) + 200)
        html, etag = hit
        # X-Cache says whether the page was rendered for this request (benchmarks count it)
        headers = {"ETag": etag, "Cache-Control": PAGE_CACHE, "X-Cache": source}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    def list_query(request: Request, **force: str) -> ListQuery:
        params = dict(request.query_params)
        params.update(force)
        return parse_list_query(params, sources=set(gallery.listing.sources),
                                models=set(gallery.listing.videos.models))

    async def index(request: Request) -> Response:
        lq = list_query(request)
        if lq.sort == "random" and "seed" not in request.query_params and not lq.searching:
            # a fixed seed in the URL keeps the pages of one shuffle stable
            return RedirectResponse(lq.url("/"), status_code=303)

        def build() -> str:
            t0 = time.perf_counter()
            page, rows = gallery.list_page(lq)
            return render_html(request, "list.html.j2", lq=lq, page=page, rows=rows,
                               ms=(time.perf_counter() - t0) * 1000, grid_model=None,
                               like_row=_like_row(lq))

        return await cached_page(request, lq, build, blocking=searching(lq))

    def searching(lq: ListQuery) -> Callable[[], None] | None:
        """The search a list page has yet to run (None when the answer is in memory)."""
        return None if gallery.search_ready(lq) else lambda: gallery.run_search(lq)

    def _like_row(lq: ListQuery) -> dict[str, Any] | None:
        if lq.like is None:
            return None
        pos = gallery.listing.position(lq.like)
        return gallery.rows([pos])[0] if pos is not None else None

    async def prompt(request: Request) -> Response:
        uuid = _path_uuid(request)
        lq = list_query(request)

        def build() -> str:
            row = gallery.prompt(uuid)
            over = gallery.listing.over_threshold(row["position"], lq)
            return render_html(request, "prompt.html.j2", lq=lq, p=row, over=over)

        # reads one row (~2 ms from a local lake): on a thread only from an object store
        return await cached_page(request, lq, build, on_thread=not local)

    async def models(request: Request) -> Response:
        lq = list_query(request)
        return await cached_page(request, lq,
                                 lambda: render_html(request, "models.html.j2", lq=lq))

    async def grid(request: Request) -> Response:
        model = request.path_params["model"]
        if model not in gallery.listing.videos.models:
            raise NotFound(f"no videos of model {model!r} in this lake")
        lq = list_query(request, model=model)

        def build() -> str:
            t0 = time.perf_counter()
            page, rows = gallery.list_page(lq)
            return render_html(request, "grid.html.j2", lq=lq, page=page, rows=rows,
                               ms=(time.perf_counter() - t0) * 1000, grid_model=model,
                               like_row=None)

        return await cached_page(request, lq, build, blocking=searching(lq))

    async def video(request: Request) -> Response:
        uuid = _path_uuid(request)
        model = request.path_params["model"]
        ref = gallery.cached_video(uuid, model)
        if ref is None:
            ref = await read(gallery.video, uuid, model)
        headers = {"Accept-Ranges": "bytes", "ETag": ref.etag, "Cache-Control": MEDIA_CACHE,
                   "Content-Type": ref.content_type}
        if etag_matches(request.headers.get("if-none-match"), ref.etag):
            return Response(status_code=304, headers=headers)
        try:
            rng = parse_range(request.headers.get("range"), ref.size)
        except RangeNotSatisfiable:
            return Response(status_code=416, headers={**headers,
                                                      "Content-Range": f"bytes */{ref.size}"})
        if rng is not None and not if_range_allows(request.headers.get("if-range"), ref.etag):
            rng = None
        start, length, status = 0, ref.size, 200
        if rng is not None:
            start, length, status = rng.start, rng.length, 206
            headers["Content-Range"] = rng.content_range(ref.size)
        headers["Content-Length"] = str(length)
        if request.method == "HEAD" or length == 0:
            return Response(status_code=status, headers=headers)
        if length <= CHUNK:  # one read, no streaming machinery
            data = await read(gallery.read_video, ref, start, length)
            return Response(data, status_code=status, headers=headers,
                            media_type=ref.content_type)
        return StreamingResponse(chunks(iter_file(ref.blob, start, length, close=False)),
                                 status_code=status, headers=headers,
                                 media_type=ref.content_type)

    async def thumb(request: Request) -> Response:
        uuid = _path_uuid(request)
        model = request.path_params["model"]
        hit = gallery.cached_thumbnail(uuid, model)
        if hit is None:
            hit = await read(gallery.thumbnail, uuid, model)
        data, ctype, etag = hit
        headers = {"ETag": etag, "Cache-Control": MEDIA_CACHE}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=ctype, headers=headers)

    async def health(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadParam | SearchUnavailable):
            status, msg = 400, str(exc)
        elif isinstance(exc, NotFound):
            status, msg = 404, str(exc)
        elif isinstance(exc, HTTPException):
            status, msg = exc.status_code, exc.detail or ""
        elif isinstance(exc, VidlakeError):
            status, msg = 400, str(exc)
        else:
            log.exception("error serving %s", request.url.path)
            status, msg = 500, "an unexpected error happened; the server log has the details"
        if request.url.path.startswith(("/video/", "/thumb/", "/static/")):
            return Response(msg + "\n", status_code=status, media_type="text/plain")
        return render(request, "error.html.j2", status=status, status_code=status, message=msg)

    static = StaticFiles(directory=str(_package_dir("static")))
    routes = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/p/{uuid}", prompt, methods=["GET", "HEAD"]),
        Route("/models", models, methods=["GET", "HEAD"]),
        Route("/grid/{model:path}", grid, methods=["GET", "HEAD"]),
        Route("/video/{uuid}/{model:path}", video, methods=["GET", "HEAD"]),
        Route("/thumb/{uuid}/{model:path}", thumb, methods=["GET", "HEAD"]),
        Route("/healthz", health, methods=["GET", "HEAD"]),
        Mount("/static", app=_CachedStatic(static), name="static"),
    ]
    hosts = allowed_hosts if allowed_hosts is not None else LOOPBACK_HOSTS
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders), Middleware(TrustedHostMiddleware,
                                                             allowed_hosts=hosts)],
        exception_handlers={BadParam: on_error, VidlakeError: on_error, HTTPException: on_error,
                            Exception: on_error},
    )
    app.state.gallery = gallery
    app.state.pages = pages
    return app


class _Work:
    """Runs blocking work (a search; a read from an object store) on a few worker threads,
    off the event loop.

    Only that: a search spends its time in Lance's Rust code, without the GIL, so the event
    loop keeps answering meanwhile; Python work on a thread only takes turns at the GIL with
    the event loop, and waits up to the switch interval (5 ms) each time it wants it back,
    which under load made 0.06 ms reads take 5-20 ms (measured). And a few, not Starlette's
    default 40, for the same reason."""

    def __init__(self, threads: int):
        self.threads = threads
        self._limiter: Any = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        import anyio.to_thread

        if self._limiter is None:  # made inside the running loop
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def iterate(self, it: Iterator[bytes]) -> AsyncIterator[bytes]:
        """The items of a blocking iterator, each produced on a worker thread."""
        done = object()
        while True:
            item = await self.run(next, it, done)
            if item is done:
                return
            yield item


class _CachedStatic:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"cache-control", b"max-age=3600")]
            await send(message)

        await self.app(scope, receive, send_with)


def _path_uuid(request: Request) -> str:
    try:
        return parse_uuid(request.path_params["uuid"])
    except BadParam:
        raise NotFound(f"no prompt {request.path_params['uuid'][:80]!r} in this lake") from None
