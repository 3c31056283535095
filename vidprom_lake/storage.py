"""Where a lake lives: a local folder or an object-store URI, and how to reach it.

Credentials and endpoints come from the standard AWS environment variables and are never
written into the lake.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from .errors import VidlakeError

OBJECT_SCHEMES = ("s3", "gs", "az", "abfs", "memory")


def is_remote(uri: str) -> bool:
    return urlparse(str(uri)).scheme in OBJECT_SCHEMES


def normalize(uri: str | os.PathLike[str]) -> str:
    uri = str(uri)
    if is_remote(uri):
        return uri.rstrip("/")
    return str(Path(uri).expanduser().resolve())


def join(root: str, *parts: str) -> str:
    if is_remote(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root, *parts))


def storage_options(uri: str) -> dict[str, str] | None:
    """Lance/object_store options for `uri`, built from the environment (S3 only for now)."""
    if not uri.startswith("s3://"):
        return None
    env = os.environ
    opts: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        opts["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            opts["allow_http"] = "true"
    if env.get("AWS_ALLOW_HTTP", "").lower() == "true":
        opts["allow_http"] = "true"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        opts["aws_region"] = region
    for var, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_SESSION_TOKEN", "aws_session_token"),
    ):
        if env.get(var):
            opts[key] = env[var]
    return opts or None


def exists(uri: str) -> bool:
    """Whether a Lance dataset is at `uri`. An unreachable store is an error, not a "no"."""
    if not is_remote(uri):
        return Path(uri).exists()
    import lance

    try:
        lance.dataset(uri, storage_options=storage_options(uri))
        return True
    except (ValueError, OSError) as exc:
        text = str(exc)
        if "not found" in text.lower() or "NoSuchBucket" in text or "NoSuchKey" in text:
            return False
        first = text.splitlines()[0] if text else type(exc).__name__
        raise VidlakeError(
            f"cannot read {uri} (check AWS_ENDPOINT, AWS_REGION and the credentials): {first[:400]}"
        ) from exc
