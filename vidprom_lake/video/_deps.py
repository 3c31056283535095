"""Optional-dependency imports for the video extra, with errors that name the extra."""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependency


def av() -> Any:
    try:
        import av as _av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependency("av", "video", "reading and writing videos") from exc
    return _av


def pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover
        raise MissingDependency("pillow", "video", "thumbnails and PNG frames") from exc
    return Image


def torch() -> Any:
    try:
        import torch as _torch
    except ImportError as exc:  # pragma: no cover
        raise MissingDependency("torch", "video", "video generation") from exc
    return _torch


def diffusers() -> Any:
    try:
        import diffusers as _diffusers
    except ImportError as exc:  # pragma: no cover
        raise MissingDependency("diffusers", "video", "video generation") from exc
    return _diffusers
