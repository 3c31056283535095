"""The Ray engine: enricher sessions inside Ray actors that also write the lake's files.

Each actor (`EnrichWorker`) opens the session once (one model load per actor) with
``num_cpus=1`` (torch limited to `threads_per_worker` threads) and ``num_gpus=gpus_per_worker``.
The driver-side `RemoteSession` carries the model's identity (model_id, dims, labels,
provenance) and three calls the runner's `_run_remote` makes per chunk:

* `submit_piece(texts, uuids, fragments, columns)`: an actor computes the piece with the same
  session code as the local engine and turns the result into the new column values with the
  runner's own `embed_columns` / `score_columns`; the driver gets back a small summary (rows,
  ok, failures, vector width), the values stay in Ray's object store;
* `piece_result(piece)`: that summary (waits for it);
* `write_pieces(uri, version, pieces)`: one actor takes the chunk's values (worker to worker)
  and writes, per touched fragment, the new column file (`LanceFragment.update_columns`,
  the layout of the local merge-insert); the driver gets the fragment metadata and commits it
  as one `LanceOperation.Update` (with the batch-log event), once per chunk.

Writes run in their own concurrency group of the actor, so an actor writes one chunk while it
computes the next. Actors that write an ``s3://`` lake get the driver's AWS variables (see
`AWS_VARS`).

Failure: actors are created with ``max_restarts`` and ``max_task_retries``; a killed worker
process is restarted by Ray (the model is loaded again) and its queued pieces and writes are
re-run there; the files the dead process wrote are never committed (invisible garbage), so the
chunk is committed once. When the retries are used up, the call raises `WorkerFailed`; the
runner adds the chunk's rows to it, stops, chunks already committed stay, the batch is recorded
as failed, and a rerun computes only the rows still missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from ..errors import MissingDependency, VidlakeError


class WorkerFailed(VidlakeError):
    """A piece of work failed on a Ray worker after its retries."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency("ray", "ray", "--engine ray") from exc
    return ray


#: The actor's concurrency group for lake writes (and `info`): one thread beside the compute.
WRITE_GROUP = "write"


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
        """The session's own result for `texts` (`RemoteSession.embed` / `score`)."""
        res = self.sess.embed(texts) if self.kind == "embedder" else self.sess.score(texts)
        return self.pid, res

    def compute(self, texts: list[str], uuids: list[str], fragments: list[int],
                columns: Callable[[Any], dict[str, Any]]) -> tuple[dict[str, Any], Any]:
        """Compute a piece; return (summary for the driver, the ok rows' new values or None).

        The values are an Arrow table of ``uuid``, the row's fragment id and the new columns
        (`columns` is the runner's `embed_columns` / `score_columns`), left in the object store
        for the actor that writes the chunk.
        """
        import numpy as np
        import pyarrow as pa

        from vidprom_lake.enrich.runner import FRAGMENT_COLUMN

        t0 = time.perf_counter()
        res = self.run(texts)[1]
        arrays = columns(res)
        ok = np.asarray(res.ok, dtype=bool)
        n_ok = int(ok.sum())
        table = None
        if n_ok and arrays:
            keep = pa.array(ok)
            table = pa.table({"uuid": pa.array(uuids, pa.string()).filter(keep),
                              FRAGMENT_COLUMN: pa.array(fragments, pa.uint64()).filter(keep),
                              **arrays})
        vecs = getattr(res, "vectors", None)
        dims = int(vecs.shape[1]) if vecs is not None and vecs.ndim == 2 and len(vecs) else None
        meta = {"pid": self.pid, "rows": len(texts), "ok": n_ok, "dims": dims,
                "failures": list(res.failures), "seconds": time.perf_counter() - t0}
        return meta, table

    def write(self, uri: str, version: int, *tables: Any) -> dict[str, Any]:
        """Write the new column values of `tables` (pieces of one chunk) into the fragments
        they belong to, as of table version `version`, WITHOUT committing.

        Per fragment, `LanceFragment.update_columns` joins on uuid and writes one new data file
        holding the updated columns for every row of the fragment (rows not in the chunk keep
        their values); the old file's columns are tombstoned in the returned metadata. A uuid
        the fragment does not hold (a concurrent delete) is an error, never a silent drop.
        """
        import lance
        import pyarrow as pa
        import pyarrow.compute as pc

        from vidprom_lake import storage
        from vidprom_lake.enrich.runner import FRAGMENT_COLUMN

        parts = [t for t in tables if t is not None]
        data = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        ds = lance.dataset(uri, version=version, storage_options=storage.storage_options(uri))
        frag_col = data.column(FRAGMENT_COLUMN)
        fragments: list[Any] = []
        fields: set[int] = set()
        files: list[str] = []
        for fid in sorted(pc.unique(frag_col).to_pylist()):
            sub = data.filter(pc.equal(frag_col, fid)).drop_columns([FRAGMENT_COLUMN])
            frag = ds.get_fragment(fid)
            found = 0
            if frag is not None:
                have = frag.to_table(columns=["uuid"]).column("uuid")
                found = int(pc.sum(pc.is_in(sub.column("uuid"), value_set=have)).as_py() or 0)
            if frag is None or found != sub.num_rows:
                raise VidlakeError(
                    f"{sub.num_rows - found} of {sub.num_rows} rows to write are no longer in "
                    f"fragment {fid} of {uri} at version {version} (another writer changed the "
                    "table); run the command again")
            old = {f.path for f in frag.metadata.files}
            md, modified = frag.update_columns(sub, left_on="uuid", right_on="uuid")
            fragments.append(md)
            fields.update(modified)
            files += [f.path for f in md.files if f.path not in old]
        return {"pid": self.pid, "fragments": fragments, "fields_modified": sorted(fields),
                "read_version": version, "rows": data.num_rows, "files": files}

    def close(self) -> None:
        self.sess.close()


class RemoteSession:
    """Driver-side handle of a session whose model lives (and whose writes run) in actors."""

    def __init__(self, engine: RayEngine, kind: str, actors: list[Any], info: dict[str, Any]):
        self.engine = engine
        self.kind = kind
        self.actors = actors
        self.model_id: str = info["model_id"]
        self.dims: int | None = info["dims"]
        self.labels: tuple[str, ...] = info["labels"]
        self.piece_rows = engine.piece_rows or info["piece_rows"]
        self._provenance = dict(info["provenance"])
        self._next = 0
        self._writer = 0
        self.pids = {info["pid"]}
        self.retries = 0

    def provenance(self) -> dict[str, Any]:
        p = dict(self._provenance)
        p["engine"] = self.engine.info()
        return p

    def _seen(self, pid: int) -> None:
        if pid not in self.pids:  # a restarted actor (a new process) answered
            self.pids.add(pid)
            self.retries += 1

    def _get(self, ref: Any, what: str) -> Any:
        ray = _ray()
        try:
            return ray.get(ref)
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError,
                ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError) as exc:
            _raise_remote(exc, what, self.engine.max_restarts)

    # -- the runner's remote path (compute and write in the actors)
    def submit_piece(self, texts: list[str], uuids: list[str], fragments: list[int],
                     columns: Callable[[Any], dict[str, Any]]) -> list[Any]:
        """Queue a piece on the next actor; returns its handle ``[summary ref, values ref]``."""
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return list(actor.compute.options(num_returns=2).remote(texts, uuids, fragments,
                                                                 columns))

    def piece_result(self, piece: list[Any]) -> dict[str, Any]:
        """The piece's summary: rows, ok, failures (RowFailure), dims, seconds, pid."""
        meta = self._get(piece[0], f"a piece of {self.model_id}")
        self._seen(int(meta["pid"]))
        return dict(meta)

    def write_pieces(self, uri: str, version: int, pieces: list[list[Any]]) -> dict[str, Any]:
        """Have one actor write the pieces' values into the table at `uri` (not committed);
        returns its fragment metadata (``fragments``, ``fields_modified``, ``read_version``)."""
        actor = self.actors[self._writer % len(self.actors)]
        self._writer += 1
        ref = actor.write.options(concurrency_group=WRITE_GROUP).remote(
            uri, version, *[p[1] for p in pieces])
        out = self._get(ref, f"the write of {sum(1 for _ in pieces)} pieces")
        self._seen(int(out["pid"]))
        self.engine.writes.append({"pid": out["pid"], "files": list(out["files"]),
                                   "rows": out["rows"], "uri": uri})
        return dict(out)

    # -- an EmbedSession / ScoreSession look-alike for direct use (results come back here)
    def _result(self, texts: list[str]) -> Any:
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        pid, res = self._get(actor.run.remote(texts), f"{len(texts)} rows")
        self._seen(int(pid))
        return res

    def embed(self, texts: list[str]) -> Any:
        return self._result(texts)

    def score(self, texts: list[str]) -> Any:
        return self._result(texts)

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(a)
        self.engine.sessions.discard(self)


#: Variables an actor needs to reach an ``s3://`` lake or input the way the driver does.
AWS_VARS = ("AWS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ALLOW_HTTP")


def _raise_remote(exc: BaseException, what: str, max_restarts: int) -> NoReturn:
    """Translate a Ray failure into the package's errors (a backend error stays itself)."""
    ray = _ray()
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VidlakeError):
            raise cause from None
        raise WorkerFailed(f"a Ray worker failed on {what}: {str(exc).splitlines()[0]}") from exc
    raise WorkerFailed(
        f"a Ray worker died on {what} and the retries (max_restarts={max_restarts}) are used "
        f"up: {str(exc).splitlines()[0]}. Chunks already committed stay; rerun the command to "
        "do the rest") from exc


class WorkerPool:
    """`engine.workers` actors of one class (`cls(*args)` loads its state once, e.g. a
    pipeline); `run(feed)` sends pieces of work to them and yields results as they finish.

    Each actor has at most `per_actor` pieces queued, so a slow one never holds back the
    rest and the driver's commits overlap with the actors' work. A killed actor is restarted
    by Ray and its queued pieces re-run there (``max_restarts``/``max_task_retries``); when
    the retries are used up, `run` raises `WorkerFailed` and the pieces not yet yielded are
    dropped (whatever they wrote is uncommitted garbage).
    """

    def __init__(self, engine: RayEngine, cls: type, args: tuple[Any, ...], *,
                 env: dict[str, str] | None = None) -> None:
        ray = _ray()
        self.engine = engine
        opts: dict[str, Any] = {"num_cpus": 1, "num_gpus": engine.gpus,
                                "max_restarts": engine.max_restarts,
                                "max_task_retries": engine.max_task_retries}
        if env:
            opts["runtime_env"] = {"env_vars": dict(env)}
        remote = ray.remote(cls).options(**opts)
        self.args = args  # object refs among them must outlive the actors (restarts re-read them)
        self.actors = [remote.remote(*args) for _ in range(engine.workers)]
        try:
            self.infos: list[dict[str, Any]] = ray.get([a.info.remote() for a in self.actors])
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            self.close()
            _raise_remote(exc, f"start-up of {cls.__name__}", engine.max_restarts)
        self.pids = {int(i["pid"]) for i in self.infos}
        self.current = {i: int(info["pid"]) for i, info in enumerate(self.infos)}
        self.retries = 0
        engine.pools.add(self)

    def run(self, feed: Any, method: str = "run", per_actor: int = 2) -> Iterator[tuple[Any, Any]]:
        """Yield ``(key, result)`` for each ``(key, args)`` taken from `feed` (an iterator, or
        a deque the caller may append to while iterating, e.g. to resubmit a piece)."""
        ray = _ray()
        pending: dict[Any, tuple[int, Any]] = {}

        def take() -> tuple[Any, tuple[Any, ...]] | None:
            if isinstance(feed, deque):
                return feed.popleft() if feed else None
            return next(feed, None)

        def submit(i: int) -> bool:
            item = take()
            if item is None:
                return False
            key, args = item
            pending[getattr(self.actors[i], method).remote(*args)] = (i, key)
            return True

        for _ in range(per_actor):
            for i in range(len(self.actors)):
                submit(i)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, key = pending.pop(ready[0])
            try:
                pid, res = ray.get(ready[0])
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError,
                    ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError) as exc:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref)
                pending.clear()
                _raise_remote(exc, f"piece {key}", self.engine.max_restarts)
            if pid not in self.pids:  # a restarted actor (a new process) answered
                self.pids.add(pid)
                self.retries += 1
            self.current[i] = pid
            yield key, res
            submit(i)
            if not pending:  # the caller may have fed more while we were suspended
                for j in range(len(self.actors)):
                    submit(j)

    def worker_pids(self) -> list[int]:
        """The actors' process ids as last seen (no call to the actors: they may be busy)."""
        return [self.current[i] for i in sorted(self.current)]

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(a)
        self.engine.pools.discard(self)


class RayEngine:
    """`workers` Ray actors per opened session or pool; actors write data files, the driver
    commits them."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus_per_worker: float = 0.0, *, max_restarts: int = 3,
                 max_task_retries: int = 3, threads_per_worker: int = 1,
                 piece_rows: int | None = None, runtime_env: dict[str, Any] | None = None,
                 forward_env: bool | None = None):
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
        self.pools: set[WorkerPool] = set()
        #: Every column write the actors made: pid, data files, rows, table uri.
        self.writes: list[dict[str, Any]] = []
        self.forward_env = forward_env
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

    def open_session(self, kind: str, spec: str, options: dict[str, Any], *,
                     remote_storage: bool = False) -> RemoteSession:
        """`workers` `EnrichWorker` actors of `spec`; with `remote_storage` (an ``s3://``
        lake, which the actors write) they get the driver's AWS variables (see `pool`)."""
        ray = _ray()
        opts: dict[str, Any] = {"num_cpus": 1, "num_gpus": self.gpus,
                                "max_restarts": self.max_restarts,
                                "max_task_retries": self.max_task_retries}
        env = self._env(remote_storage)
        if env:
            opts["runtime_env"] = {"env_vars": env}
        cls = ray.remote(concurrency_groups={WRITE_GROUP: 1})(EnrichWorker).options(**opts)
        kw = dict(options)
        if self.gpus and not kw.get("device"):
            kw["device"] = "cuda"
        actors = [cls.remote(kind, spec, kw, self.threads) for _ in range(self.workers)]
        try:
            infos = ray.get([a.info.options(concurrency_group=WRITE_GROUP).remote()
                             for a in actors])
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            for a in actors:
                with contextlib.suppress(Exception):
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

    def _env(self, remote_storage: bool) -> dict[str, str] | None:
        fwd = self.forward_env if self.forward_env is not None else remote_storage
        return {k: os.environ[k] for k in AWS_VARS if os.environ.get(k)} if fwd else None

    def pool(self, cls: type, args: tuple[Any, ...], *, remote_storage: bool = False) -> WorkerPool:
        """Start `workers` actors of `cls` (see `WorkerPool`).

        Actors that write to an ``s3://`` lake or read ``s3://`` inputs need the driver's AWS
        variables; with `remote_storage` they get them through the actor's Ray runtime_env
        (``forward_env=False`` on the engine: rely on the nodes' own credentials instead).
        """
        return WorkerPool(self, cls, args, env=self._env(remote_storage))

    def worker_pids(self) -> list[int]:
        """The process ids of the current actors (the kill tests use them)."""
        ray = _ray()
        pids = [int(ray.get(a.info.options(concurrency_group=WRITE_GROUP).remote())["pid"])
                for s in self.sessions for a in s.actors]
        for p in self.pools:
            pids += p.worker_pids()
        return pids

    def shutdown(self) -> None:
        for s in list(self.sessions):
            s.close()
        for p in list(self.pools):
            p.close()
        if self.started_ray:
            _ray().shutdown()
