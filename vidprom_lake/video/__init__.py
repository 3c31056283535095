"""Videos in the lake: generate them with diffusers, import existing ones, read them back.

Video bytes live in the ``videos`` table's Lance blob column; probe metadata (codec, size,
frames, duration, sha256) and a small thumbnail sit beside them, so SQL sees sizes and
metadata and never the bytes. Every write is a chunked `Lake.batch`, so a crash loses at most
one chunk and a rerun skips the videos already present.

    >>> from vidprom_lake.video import import_videos, generate, open_video
    >>> import_videos(lake, ["pika_videos/pika_1.tar"], model="pika")
    >>> generate(lake, model="modelscope", limit=100, where="toxicity < 0.1")
    >>> with open_video(lake, uuid, "pika") as f:  # a file-like object av.open reads
    ...     container = av.open(f)

Heavy libraries (av, torch, diffusers) are imported inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Bound eagerly: the function shadows its own submodule's name (`video.generate`). Cheap: the
# module imports torch and diffusers only when a pipeline is loaded.
from .generate import generate

if TYPE_CHECKING:
    from ..lake import Lake
    from .importer import ImportReport


def import_videos(lake: Lake, paths: Any, model: str | None = None, **options: Any) -> ImportReport:
    """Import mp4 files from tar shards, folders or single files; see `importer.import_videos`."""
    from .importer import import_videos as _import

    return _import(lake, paths, model=model, **options)




def open_video(lake: Lake, uuid: str, model: str) -> Any:
    """The mp4 of (uuid, model) as a read-only file-like object (`av.open` reads it)."""
    from .blobs import open_video as _open

    return _open(lake, uuid, model)


def read_video(lake: Lake, uuid: str, model: str) -> bytes:
    """The mp4 bytes of (uuid, model)."""
    from .blobs import read_video as _read

    return _read(lake, uuid, model)


def export_videos(lake: Lake, out_dir: Any, **options: Any) -> Any:
    """Write videos (optionally filtered) to ``out_dir/{model}-{uuid}.mp4``."""
    from .blobs import export_videos as _export

    return _export(lake, out_dir, **options)


def extract_frames(lake: Lake, uuid: str, model: str, out_dir: Any, **options: Any) -> Any:
    """Decode a stored video and write every n-th frame as PNG."""
    from .blobs import extract_frames as _frames

    return _frames(lake, uuid, model, out_dir, **options)


__all__ = ["export_videos", "extract_frames", "generate", "import_videos", "open_video",
           "read_video"]
