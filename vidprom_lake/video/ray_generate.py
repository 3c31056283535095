"""`generate --engine ray`: each Ray actor loads the pipeline once and writes its own videos.

The driver selects the prompts still without a video (as the local run does), splits them into
pieces of `chunk` prompts and hands them to the actors (`GenerateWorker`). An actor runs the
same code as the local run (`call_pipeline` per `batch_size` prompts with each video's own
seed, `_encode_row`: H.264 encode, probe, thumbnail) and writes the piece's rows into new
Lance data files of the lake's ``videos`` table (`Lake.write_rows`); only the fragment metadata
comes back. The driver commits each finished piece as one chunk of the batch
(`Batch.add_written` + `commit`), so a crash or a dead worker loses at most the pieces in
flight, which were never visible, and a rerun generates exactly the missing videos.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..schema import VIDEOS_SCHEMA

if TYPE_CHECKING:
    from ..lake import Batch
    from .generate import GenerateReport, GeneratorSpec


class GenerateWorker:
    """One Ray actor: one loaded pipeline, writing videos into uncommitted data files."""

    def __init__(self, lake_uri: str, spec: GeneratorSpec, device: str | None,
                 dtype: str | None, download: bool, threads: int) -> None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        from ..lake import Lake
        from . import _deps
        from .generate import _provenance, load_pipeline, pick_device

        _deps.torch().set_num_threads(threads)
        t0 = time.perf_counter()
        self.lake = Lake(lake_uri)
        self.spec = spec
        self.device, self.dtype = pick_device(device, dtype, spec.cuda_dtype)
        self.pipe = load_pipeline(spec, device=self.device, dtype=self.dtype, download=download)
        self.load_seconds = time.perf_counter() - t0
        self.provenance = _provenance(spec, self.pipe, self.device, self.dtype)

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": self.device, "dtype": self.dtype,
                "pipeline": type(self.pipe).__name__, "load_seconds": self.load_seconds,
                "provenance": self.provenance}

    def run(self, part: list[tuple[str, str]], gp: Any, enc: Any, run_params: dict[str, Any],
            batch_id: str, bs: int) -> tuple[int, dict[str, Any]]:
        from .generate import generate_part

        rows: list[dict[str, Any]] = []
        pipeline_s = 0.0
        t_all = time.perf_counter()
        for start in range(0, len(part), bs):
            got, secs = generate_part(self.pipe, self.spec, part[start:start + bs], gp, enc,
                                      run_params, batch_id)
            rows += got
            pipeline_s += secs
        from .generate import _batches

        written = self.lake.write_rows("videos", _batches(rows), schema=VIDEOS_SCHEMA)
        return os.getpid(), {
            "written": written, "ids": [r["video_id"] for r in rows],
            "bytes": sum(int(r["bytes"]) for r in rows), "pipeline_seconds": pipeline_s,
            "overhead_seconds": time.perf_counter() - t_all - pipeline_s}


def start_workers(eng: Any, lake_uri: str, spec: GeneratorSpec, *, device: str | None,
                  dtype: str | None, download: bool) -> Any:
    """The actors, each with its pipeline loaded (a load error surfaces here, before any
    batch is opened)."""
    return eng.pool(GenerateWorker, (lake_uri, spec, device, dtype, download, eng.threads),
                    remote_storage=lake_uri.startswith("s3://"))


def generate_on_ray(pool: Any, b: Batch, todo: list[tuple[str, str]], report: GenerateReport,
                    *, gp: Any, enc: Any, run_params: dict[str, Any], bs: int, chunk: int,
                    progress: Callable[[int, int], None] | None = None) -> None:
    """Generate `todo` on the pool's actors, committing each finished piece in `b`."""
    feed: deque[tuple[int, tuple[Any, ...]]] = deque(
        (s, (todo[s:s + chunk], gp, enc, run_params, b.batch_id, bs))
        for s in range(0, len(todo), chunk))
    for _key, res in pool.run(feed):
        t0 = time.perf_counter()
        n = len(res["ids"])
        b.add_written("videos", res["written"])
        report.generated += n
        report.bytes += res["bytes"]
        report.video_ids.extend(res["ids"])
        report.pipeline_seconds += res["pipeline_seconds"]
        report.retries = pool.retries
        b.counts.update(rows_added=report.generated, selected=report.selected,
                        already_in_lake=report.already_in_lake, retries=pool.retries)
        b.commit()
        report.chunks += 1
        report.overhead_seconds += res["overhead_seconds"] + time.perf_counter() - t0
        if progress:
            progress(report.generated, len(todo))
