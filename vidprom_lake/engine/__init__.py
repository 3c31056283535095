"""Compute engines: where an enricher's model runs, and who writes the data files.

``local`` is today's in-process compute (one model in this process, which also writes the
lake). ``ray`` runs the SAME enricher session code (`resolve(spec, kind)` -> `enr.open(...)` ->
`sess.embed(texts)`, then the runner's `embed_columns` / `score_columns`) inside Ray actors,
one model load per actor; the actors also write each chunk's new column files
(`LanceFragment.update_columns`) and hand back only fragment metadata, which the driver
commits once per chunk through the same `lake.batch(...)`, so a batch stays one tagged,
atomic, resumable version whichever engine computed it.

    from vidprom_lake.engine import get_engine
    eng = get_engine("ray", address="auto", workers=16, gpus_per_worker=1)
    embed(lake, "minilm", engine=eng)

Ray is imported only when the ray engine is asked for (`MissingDependency` names the extra).
"""

from __future__ import annotations

from typing import Any

ENGINES = ("local", "ray")


class LocalEngine:
    """In-process compute: the runner opens the session itself, exactly as without an engine."""

    name = "local"

    def open_session(self, kind: str, spec: str, options: dict[str, Any], *,
                     remote_storage: bool = False) -> Any:
        from ..enrich import resolve

        enr, variant = resolve(spec, kind)
        return enr.open(variant, **options)

    def info(self) -> dict[str, Any]:
        return {"engine": "local"}

    def shutdown(self) -> None:
        pass


def get_engine(name: str = "local", *, address: str | None = None, workers: int | None = None,
               gpus_per_worker: float = 0.0, **options: Any) -> Any:
    """``"local"`` or ``"ray"`` (`address`: ``auto``, ``ray://host:10001`` or None to use the
    already initialised Ray / start a local one; `workers` actors, each ``num_cpus=1`` and
    ``num_gpus=gpus_per_worker``). Extra `options` go to `RayEngine` (``max_restarts``,
    ``max_task_retries``, ``threads_per_worker``, ``piece_rows``)."""
    from ..errors import InputError

    if name == "local":
        if address or (workers not in (None, 1)) or gpus_per_worker:
            raise InputError("--address/--workers/--gpus-per-worker need --engine ray")
        return LocalEngine()
    if name == "ray":
        from .ray_engine import RayEngine

        return RayEngine(address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                         **options)
    raise InputError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "LocalEngine", "get_engine"]
