"""The Ray engine: enricher sessions inside Ray actors, results back to the driver.

Each actor (`EnrichWorker`) opens the session once (one model load per actor) with
``num_cpus=1`` (torch limited to `threads_per_worker` threads) and ``num_gpus=gpus_per_worker``.
The driver-side `RemoteSession` looks like an `EmbedSession` / `ScoreSession` to the runner
(model_id, dims, labels, provenance, embed/score), plus `prefetch(pieces)`: the runner hands it
the pieces of the next chunk before it asks for the current one, so every actor has work queued
while the driver writes and commits.

Failure: actors are created with ``max_restarts`` and ``max_task_retries``; a killed worker
process is restarted by Ray (the model is loaded again) and its queued pieces are re-run there,
so the chunk completes and is committed once. When the retries are used up, the piece raises
`WorkerFailed` naming the chunk's rows; the runner stops, chunks already committed stay, the
batch is recorded as failed, and a rerun computes only the rows still missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from typing import Any

from ..errors import MissingDependency, VidlakeError


class WorkerFailed(VidlakeError):
    """A piece of work failed on a Ray worker after its retries."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("ray", "ray", "--engine ray") from exc
    return ray


class EnrichWorker:
    """One Ray actor: one opened enricher session (the same code the local engine runs)."""

    def __init__(self, kind: str, spec: str, options: dict[str, Any], threads: int) -> None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM"):
            os.environ[var] = "false" if var == "TOKENIZERS_PARALLELISM" else str(threads)
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            pass
        from vidprom_lake.enrich import resolve

        t0 = time.perf_counter()
        enr, variant = resolve(spec, kind)
        self.kind = kind
        self.sess: Any = enr.open(variant, **options)
        self.load_seconds = time.perf_counter() - t0
        self.pid = os.getpid()

    def info(self) -> dict[str, Any]:
        return {"model_id": self.sess.model_id, "dims": getattr(self.sess, "dims", None),
                "labels": tuple(getattr(self.sess, "labels", ()) or ()),
                "piece_rows": getattr(self.sess, "piece_rows", None),
                "provenance": self.sess.provenance(), "pid": self.pid,
                "load_seconds": self.load_seconds}

    def run(self, texts: list[str]) -> tuple[int, Any]:
        res = self.sess.embed(texts) if self.kind == "embedder" else self.sess.score(texts)
        return self.pid, res

    def close(self) -> None:
        self.sess.close()


class RemoteSession:
    """Driver-side stand-in for a session whose model lives in Ray actors."""

    def __init__(self, engine: RayEngine, kind: str, actors: list[Any], info: dict[str, Any]):
        self.engine = engine
        self.kind = kind
        self.actors = actors
        self.model_id: str = info["model_id"]
        self.dims: int | None = info["dims"]
        self.labels: tuple[str, ...] = info["labels"]
        self.piece_rows = engine.piece_rows or info["piece_rows"]
        self._provenance = dict(info["provenance"])
        self._queue: deque[tuple[list[str], Any]] = deque()
        self._next = 0
        self.pids = {info["pid"]}
        self.retries = 0

    def provenance(self) -> dict[str, Any]:
        p = dict(self._provenance)
        p["engine"] = self.engine.info()
        return p

    def _submit(self, texts: list[str]) -> Any:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return actor.run.remote(texts)

    def prefetch(self, pieces: list[list[str]]) -> None:
        for texts in pieces:
            self._queue.append((texts, self._submit(texts)))

    def _result(self, texts: list[str]) -> Any:
        ray = _ray()
        ref = None
        if self._queue:
            queued, r = self._queue[0]
            if queued is texts or queued == texts:
                self._queue.popleft()
                ref = r
        if ref is None:  # not prefetched (or out of order): compute it now
            ref = self._submit(texts)
        try:
            pid, res = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VidlakeError):
                raise cause from None
            raise WorkerFailed(f"a Ray worker failed on {len(texts)} rows: "
                               f"{str(exc).splitlines()[0]}") from exc
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                ray.exceptions.WorkerCrashedError) as exc:
            self._queue.clear()
            raise WorkerFailed(
                f"a Ray worker died on {len(texts)} rows and the retries "
                f"(max_restarts={self.engine.max_restarts}) are used up: "
                f"{str(exc).splitlines()[0]}. Chunks already committed stay; rerun the "
                "command to compute the rest") from exc
        if pid not in self.pids:  # a restarted actor (a new process) answered
            self.pids.add(pid)
            self.retries += 1
        return res

    def embed(self, texts: list[str]) -> Any:
        return self._result(texts)

    def score(self, texts: list[str]) -> Any:
        return self._result(texts)

    def close(self) -> None:
        ray = _ray()
        self._queue.clear()
        for a in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(a)
        self.engine.sessions.discard(self)


class RayEngine:
    """`workers` Ray actors per opened session; the driver keeps every lake write."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus_per_worker: float = 0.0, *, max_restarts: int = 3,
                 max_task_retries: int = 3, threads_per_worker: int = 1,
                 piece_rows: int | None = None, runtime_env: dict[str, Any] | None = None):
        ray = _ray()
        if workers is not None and workers < 1:
            from ..errors import InputError

            raise InputError(f"--workers must be >= 1, not {workers}")
        self.max_restarts = max_restarts
        self.max_task_retries = max_task_retries
        self.threads = threads_per_worker
        self.gpus = float(gpus_per_worker or 0.0)
        self.piece_rows = piece_rows
        self.sessions: set[RemoteSession] = set()
        t0 = time.perf_counter()
        self.started_ray = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
            if runtime_env:
                kw["runtime_env"] = runtime_env
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=max(workers or 2, 1), **kw)
            self.started_ray = True
        self.startup_seconds = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(cpus, 1)
        self.address = address

    def info(self) -> dict[str, Any]:
        return {"engine": "ray", "workers": self.workers, "gpus_per_worker": self.gpus,
                "threads_per_worker": self.threads, "max_restarts": self.max_restarts,
                "ray": _ray().__version__}

    def open_session(self, kind: str, spec: str, options: dict[str, Any]) -> RemoteSession:
        ray = _ray()
        cls = ray.remote(EnrichWorker).options(
            num_cpus=1, num_gpus=self.gpus, max_restarts=self.max_restarts,
            max_task_retries=self.max_task_retries)
        opts = dict(options)
        if self.gpus and not opts.get("device"):
            opts["device"] = "cuda"
        actors = [cls.remote(kind, spec, opts, self.threads) for _ in range(self.workers)]
        try:
            infos = ray.get([a.info.remote() for a in actors])
        except ray.exceptions.RayTaskError as exc:
            for a in actors:
                ray.kill(a)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VidlakeError):
                raise cause from None
            raise WorkerFailed(f"opening {spec} on Ray workers failed: "
                               f"{str(exc).splitlines()[0]}") from exc
        sess = RemoteSession(self, kind, actors, infos[0])
        sess.pids = {i["pid"] for i in infos}
        self.sessions.add(sess)
        return sess

    def worker_pids(self) -> list[int]:
        """The process ids of the current actors (the kill test uses them)."""
        ray = _ray()
        return [int(ray.get(a.info.remote())["pid"]) for s in self.sessions for a in s.actors]

    def shutdown(self) -> None:
        for s in list(self.sessions):
            s.close()
        if self.started_ray:
            _ray().shutdown()
