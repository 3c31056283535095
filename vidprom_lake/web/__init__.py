"""`vidlake serve`: a small, read-only web gallery over a lake (Starlette + uvicorn).

    >>> from vidprom_lake.web import open_gallery, create_app
    >>> app = create_app(open_gallery("lake", as_of="batch-0007"))   # any ASGI server runs it

See docs/web.md. Starlette, uvicorn and jinja2 are imported only when the gallery is used
(extra ``web``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .gallery import Gallery


def _require() -> None:
    import importlib.util

    from ..errors import MissingDependency

    for pkg in ("starlette", "uvicorn", "jinja2"):
        if importlib.util.find_spec(pkg) is None:
            raise MissingDependency(pkg, "web", "the web gallery")


def open_gallery(uri: str | None = None, *, as_of: str | None = None,
                 column: str | None = None, progress: Any = None) -> Gallery:
    """The gallery of the lake at `uri`, pinned at `as_of` (default: its head now)."""
    from .gallery import Gallery, pin

    return Gallery(pin(uri or _default_uri(), as_of), column=column, progress=progress)


def create_app(gallery: Gallery, *, allowed_hosts: list[str] | None = None,
               **options: Any) -> Starlette:
    """The ASGI application over `gallery` (see `app.create_app` for `options`)."""
    _require()
    from .app import create_app as _create

    return _create(gallery, allowed_hosts=allowed_hosts, **options)


def _default_uri() -> str:
    from ..lake import default_uri

    return default_uri()


__all__ = ["create_app", "open_gallery"]
