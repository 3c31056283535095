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

import logging
import time
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import VidlakeError
from ..schema import NSFW_LABELS
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
    RangeNotSatisfiable,
    etag_matches,
    if_range_allows,
    iter_file,
    parse_range,
)

log = logging.getLogger("vidlake.web")

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


def create_app(gallery: Gallery, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app over `gallery`. `allowed_hosts` guards against DNS rebinding (a web page
    elsewhere pointing its own host name at 127.0.0.1 to read the gallery); None means the
    loopback names only, ``["*"]`` any."""
    env = _templates()

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("lq", None)
        html = env.get_template(name).render(
            g=gallery, request_path=request.url.path, nsfw_labels=NSFW_LABELS, sorts=SORTS,
            dedup_choices=DEDUP, per_page_choices=PER_PAGE, **ctx)
        return HTMLResponse(html, status_code=status)

    def list_query(request: Request, **force: str) -> ListQuery:
        params = dict(request.query_params)
        params.update(force)
        return parse_list_query(params, sources=set(gallery.listing.sources),
                                models=set(gallery.listing.videos.models))

    def index(request: Request) -> Response:
        lq = list_query(request)
        if lq.sort == "random" and "seed" not in request.query_params and not lq.searching:
            # a fixed seed in the URL keeps the pages of one shuffle stable
            return RedirectResponse(lq.url("/"), status_code=303)
        t0 = time.perf_counter()
        page, rows = gallery.list_page(lq)
        return render(request, "list.html.j2", lq=lq, page=page, rows=rows,
                      ms=(time.perf_counter() - t0) * 1000, grid_model=None,
                      like_row=_like_row(lq))

    def _like_row(lq: ListQuery) -> dict[str, Any] | None:
        if lq.like is None:
            return None
        pos = gallery.listing.position(lq.like)
        return gallery.rows([pos])[0] if pos is not None else None

    def prompt(request: Request) -> Response:
        uuid = _path_uuid(request)
        lq = list_query(request)
        row = gallery.prompt(uuid)
        over = gallery.listing.over_threshold(row["position"], lq)
        return render(request, "prompt.html.j2", lq=lq, p=row, over=over)

    def models(request: Request) -> Response:
        return render(request, "models.html.j2", lq=list_query(request))

    def grid(request: Request) -> Response:
        model = request.path_params["model"]
        if model not in gallery.listing.videos.models:
            raise NotFound(f"no videos of model {model!r} in this lake")
        lq = list_query(request, model=model)
        t0 = time.perf_counter()
        page, rows = gallery.list_page(lq)
        return render(request, "grid.html.j2", lq=lq, page=page, rows=rows,
                      ms=(time.perf_counter() - t0) * 1000, grid_model=model, like_row=None)

    def video(request: Request) -> Response:
        uuid = _path_uuid(request)
        ref = gallery.video(uuid, request.path_params["model"])
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
        blob = gallery.open_blob(ref.offset)
        return StreamingResponse(iter_file(blob, start, length), status_code=status,
                                 headers=headers, media_type=ref.content_type)

    def thumb(request: Request) -> Response:
        uuid = _path_uuid(request)
        data, ctype = gallery.thumbnail(uuid, request.path_params["model"])
        import hashlib

        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        headers = {"ETag": etag, "Cache-Control": MEDIA_CACHE}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=ctype, headers=headers)

    def health(request: Request) -> Response:
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
    return app


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
