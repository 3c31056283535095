"""A PyTorch-style iterable dataset over the lake, for training scripts.

    from vidprom_lake import open_lake
    from vidprom_lake.dataset import LakeVideoDataset
    ds = LakeVideoDataset(open_lake("lake"), where="model = 'ms' AND toxicity < 0.1",
                          num_frames=8, size=(64, 64))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)

Each sample is a dict: ``prompt`` (the cleaned text, or the raw one when there is no cleaned
text), ``uuid``, ``video_id``, ``model``, ``frames`` (uint8 tensor ``T x H x W x 3``, `num_frames`
frames spread evenly over the clip and resized to `size`), and ``meta`` (the other columns).
With ``videos=False`` it yields one sample per prompt without frames.

Sharding: the selected rows (fixed order, by video id or uuid) are split by position so that
DataLoader worker ``w`` of ``W``, in distributed rank ``r`` of ``R``, takes rows
``i % (W * R) == r * W + w``; every row is seen exactly once per epoch across all of them.
`shuffle=True` permutes the row order with ``seed + epoch`` (call `set_epoch`) before sharding.

This module imports torch (it is what it is for); the rest of the package does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import InputError, MissingDependency, QueryError
from .schema import VIDEO_BLOB_COLUMN

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - torch is the point of this module
    raise MissingDependency("torch", "video", "vidprom_lake.dataset") from exc

if TYPE_CHECKING:
    from .lake import Lake

META_COLUMNS = ("time", "source", "width", "height", "fps", "num_frames", "duration_s",
                "toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit",
                "unique_semantic")


def _decode(fileobj: Any, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """`num_frames` RGB frames spread evenly over the clip, resized to size=(width, height)."""
    import av

    with av.open(fileobj) as container:
        frames = [f for f in container.decode(video=0)]
    if not frames:
        raise InputError("the clip has no decodable frames")
    idx = np.linspace(0, len(frames) - 1, num_frames).round().astype(int)
    w, h = size
    return np.stack([frames[i].reformat(width=w, height=h, format="rgb24").to_ndarray() for i in idx])


def shard_of(n: int, worker: int, workers: int, rank: int = 0, world: int = 1) -> range:
    """Positions this worker reads: every (workers*world)-th row from its own offset."""
    return range(rank * workers + worker, n, workers * world)


class LakeVideoDataset(IterableDataset):
    def __init__(self, lake: Lake, *, where: str | None = None, videos: bool = True,
                 num_frames: int = 8, size: tuple[int, int] = (64, 64), shuffle: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, limit: int | None = None):
        if num_frames < 1:
            raise InputError(f"num_frames must be >= 1, not {num_frames}")
        if not (0 <= rank < world_size):
            raise InputError(f"rank {rank} is not in 0..{world_size - 1}")
        if size[0] < 2 or size[1] < 2:
            raise InputError(f"size must be at least 2x2, not {size}")
        self.uri = lake.uri
        self.pinned = lake.head()
        self.where = where
        self.videos = videos
        self.num_frames = num_frames
        self.size = (int(size[0]), int(size[1]))
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size
        self.rows = self._select(lake, limit)  # small columns only, fixed at construction

    def _select(self, lake: Lake, limit: int | None) -> pa.Table:
        import duckdb

        view, key = ("gallery", "video_id") if self.videos else ("prompts", "uuid")
        cols = ["uuid", "prompt", "prompt_clean", *(["video_id", "model"] if self.videos else [])]
        con = lake.sql()
        have = {d[0] for d in con.execute(f"SELECT * FROM {view} LIMIT 0").description}
        cols += [c for c in META_COLUMNS if c in have]
        conds = [f"{key} IS NOT NULL"] + ([f"({self.where})"] if self.where else [])
        sql = f"SELECT {', '.join(cols)} FROM {view} WHERE {' AND '.join(conds)} ORDER BY {key}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            return con.execute(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"{str(exc).strip()} (check where={self.where!r})") from None
        finally:
            con.close()

    def __len__(self) -> int:
        return self.rows.num_rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _positions(self) -> list[int]:
        order = np.arange(self.rows.num_rows)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(order)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return [int(order[i]) for i in shard_of(len(order), worker, workers, self.rank, self.world_size)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from .lake import Lake

        lake = Lake(self.uri, pinned=self.pinned)  # each worker opens its own reader
        positions = self._positions()
        ds = lake.dataset("videos") if self.videos else None
        for start in range(0, len(positions), 32):
            part = positions[start:start + 32]
            rows = self.rows.take(pa.array(part, pa.int64())).to_pylist()
            blobs: list[Any] = [None] * len(rows)
            if ds is not None:
                ids = ", ".join("'" + r["video_id"].replace("'", "''") + "'" for r in rows)
                t = ds.to_table(columns=["video_id"], filter=f"video_id IN ({ids})", with_row_id=True)
                rid = dict(zip(t.column("video_id").to_pylist(), t.column("_rowid").to_pylist(), strict=True))
                files = ds.take_blobs(VIDEO_BLOB_COLUMN, ids=[rid[r["video_id"]] for r in rows])
                blobs = list(files)
            for r, blob in zip(rows, blobs, strict=True):
                sample: dict[str, Any] = {
                    "prompt": r["prompt_clean"] or r["prompt"],
                    "uuid": r["uuid"],
                    "meta": {k: r[k] for k in META_COLUMNS if k in r},
                }
                if blob is not None:
                    with blob as fh:
                        frames = _decode(fh, self.num_frames, self.size)
                    sample.update(video_id=r["video_id"], model=r["model"],
                                  frames=torch.from_numpy(frames))
                yield sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: frames stacked into B x T x H x W x 3, everything else as lists."""
    out: dict[str, Any] = {k: [s[k] for s in samples] for k in samples[0] if k != "frames"}
    if "frames" in samples[0]:
        out["frames"] = torch.stack([s["frames"] for s in samples])
    return out
