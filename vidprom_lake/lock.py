"""The lake's single-writer lock.

Lance commits concurrent appends safely on its own, but a VidLake batch is more than one Lance
commit (data, then the batch-log entry that makes it visible, then tags), and recovery after a
crash rolls tables back to the last logged version. Both need to know that no other writer is
half-way through a batch, so writers take this lock around each commit (not around the long
work before it: generation and embedding run unlocked and only their commits serialise).

Local lakes use `flock`, which the kernel releases when a process dies, so `kill -9` never
leaves a stale lock. Object stores use a lease object written with a conditional PUT
(If-None-Match) that expires unless it is renewed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import LakeBusy, LakeNotFound, VidlakeError
from .storage import is_remote

LEASE_SECONDS = 30.0


@contextlib.contextmanager
def write_lock(root: str, timeout: float = 600.0) -> Iterator[None]:
    if is_remote(root):
        with _s3_lease(root, timeout):
            yield
    else:
        with _flock(root, timeout):
            yield


def try_lock(root: str) -> contextlib.AbstractContextManager[None] | None:
    """The lock if it is free right now, else None (used by read paths to heal the lake)."""
    try:
        cm = write_lock(root, timeout=0.0)
        cm.__enter__()
    except LakeBusy:
        return None
    return cm


@contextlib.contextmanager
def _flock(root: str, timeout: float) -> Iterator[None]:
    import fcntl

    path = Path(root, ".vidlake.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeBusy(
                        f"another process is writing to the lake at {root} (lock {path})"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _s3_client() -> Any:
    import boto3

    env = os.environ
    endpoint = env.get("AWS_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    return boto3.client("s3", endpoint_url=endpoint, region_name=region)


@contextlib.contextmanager
def _s3_lease(root: str, timeout: float) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    without = root[len("s3://"):]
    bucket, _, prefix = without.partition("/")
    key = (prefix.rstrip("/") + "/" if prefix else "") + "_vidlake.lock"
    client = _s3_client()
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout

    def body() -> bytes:
        return json.dumps(
            {"token": token, "host": socket.gethostname(), "pid": os.getpid(),
             "expires": time.time() + LEASE_SECONDS}
        ).encode()

    while True:
        try:
            etag = client.put_object(Bucket=bucket, Key=key, Body=body(), IfNoneMatch="*")["ETag"]
            break
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise VidlakeError(f"cannot reach s3://{bucket}/{key} for the lake's lock: {exc}") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise LakeNotFound(f"no bucket {bucket!r} for the lake at {root}") from None
            if code not in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                msg = exc.response.get("Error", {}).get("Message", "")
                raise VidlakeError(
                    f"cannot write the lake's lock s3://{bucket}/{key}: {code} {msg}".rstrip()
                ) from exc
            # Someone holds it: take it over only if their lease has expired.
            try:
                got = client.get_object(Bucket=bucket, Key=key)
                held = json.loads(got["Body"].read())
                if held.get("expires", 0) < time.time():
                    client.delete_object(Bucket=bucket, Key=key, IfMatch=got["ETag"])
                    continue
            except ClientError:
                continue
            if time.monotonic() >= deadline:
                raise LakeBusy(f"another process holds the lake's lease s3://{bucket}/{key}") from None
            time.sleep(0.2)

    stop = threading.Event()
    lease: dict[str, str | None] = {"etag": etag}

    def renew() -> None:
        # Conditional on our own last write: a lease another process took over (because ours
        # expired, e.g. this process was stalled) is never overwritten.
        while not stop.wait(LEASE_SECONDS / 3):
            try:
                lease["etag"] = client.put_object(Bucket=bucket, Key=key, Body=body(),
                                                  IfMatch=lease["etag"])["ETag"]
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    lease["etag"] = None  # lost it; leave the new holder's lease alone
                    return
            except Exception:  # a transient error: retry at the next tick
                continue

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if lease["etag"]:
            _release(client, bucket, key, lease["etag"], token)


def _release(client: Any, bucket: str, key: str, etag: str, token: str) -> None:
    """Delete our lease, and only ours (conditional delete where the store supports it)."""
    from botocore.exceptions import ClientError

    try:
        client.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("PreconditionFailed", "412", "NoSuchKey"):
            return  # not ours any more
        # A store without conditional deletes: check the token, then delete.
        with contextlib.suppress(Exception):
            got = client.get_object(Bucket=bucket, Key=key)
            if json.loads(got["Body"].read()).get("token") == token:
                client.delete_object(Bucket=bucket, Key=key)
    except Exception:
        pass  # the lease expires on its own
