"""A local Ray cluster for the Ray tests, and worker-killing progress callbacks.

Use from a test module with ``cluster = ray_fixtures.cluster``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def kill_one_worker_once(eng: Any, killed: list[int]) -> Callable[[int, int], None]:
    """A progress callback that SIGKILLs the newest actor process at its first call (after
    the first committed piece, when every actor has pieces queued); `killed` gets its pid."""

    def progress(done: int, total: int) -> None:
        if not killed:
            pid = eng.worker_pids()[-1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    return progress


def kill_all_workers(eng: Any, at_call: int = 1) -> Callable[[int, int], None]:
    """A progress callback that SIGKILLs every actor process at its `at_call`-th call."""
    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1
        if calls[0] == at_call:
            for pid in eng.worker_pids():
                os.kill(pid, signal.SIGKILL)

    return progress
