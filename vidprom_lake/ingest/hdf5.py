"""Attach embeddings from an HDF5 file (VidProM's ``VidProM_embed.hdf5``) to existing prompts.

The file holds two datasets, ``uuid`` (N strings) and ``embeddings`` (N x D floats). Nothing is
read whole: the uuids (36 bytes each) are indexed once, then the lake is walked fragment by
fragment and, for each slice of its rows, the matching HDF5 rows are read (as one contiguous
range when the file and the lake share an order, as they do for VidProM) and checked for
NaN/inf. New column data is written beside each fragment (no prompt row is rewritten) and
committed once, as one batch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import InputError, SchemaError
from ..schema import field_meta, vector_field
from .pipeline import IngestOptions, IngestReport, hash_in_background

if TYPE_CHECKING:
    from ..lake import Lake

UUID_NAMES = ("uuid", "uuids", "id", "ids")
EMBED_NAMES = ("embeddings", "embedding", "embeds", "vectors")


def _pick(h5: Any, names: tuple[str, ...], what: str, path: str) -> Any:
    for n in names:
        if n in h5:
            return h5[n]
    raise InputError(
        f"no {what} dataset (looked for {', '.join(names)}; the file has {', '.join(h5.keys()) or 'nothing'})",
        path=path)


def _uuids(ds: Any) -> np.ndarray:
    raw = ds[()]
    if raw.dtype.kind == "O":
        vals = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        return np.array(vals, dtype="U36")
    if raw.dtype.kind == "S":
        return np.char.decode(raw, "ascii").astype("U36")
    return raw.astype("U36")


def _read_rows(ds: Any, idx: np.ndarray) -> np.ndarray:
    """ds[idx] for unsorted unique indices, reading contiguous ranges where it can."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and (np.diff(idx) == 1).all():
        # VidProM's case: the file and the lake share an order, so one straight read
        out = np.empty((len(idx), ds.shape[1]), dtype=ds.dtype)
        ds.read_direct(out, np.s_[int(idx[0]): int(idx[-1]) + 1])
        return out
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    out = np.empty((len(idx), ds.shape[1]), dtype=ds.dtype)
    if len(s) and s[-1] - s[0] + 1 <= 4 * len(s):
        block = ds[int(s[0]): int(s[-1]) + 1]
        out[order] = block[s - s[0]]
    elif len(s):
        out[order] = ds[s]
    return out


class _Lookup:
    def __init__(self, uuids: np.ndarray, path: str):
        self.perm = np.argsort(uuids, kind="stable")
        self.sorted = uuids[self.perm]
        dup = np.flatnonzero(self.sorted[1:] == self.sorted[:-1])
        if len(dup):
            i = int(dup[0])
            a, b = sorted((int(self.perm[i]), int(self.perm[i + 1])))
            raise InputError(f"uuid {self.sorted[i]} appears twice (rows {a} and {b})",
                             path=path, row=b)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """HDF5 row of each key, -1 where absent."""
        if not len(self.sorted):
            return np.full(len(keys), -1)
        pos = np.searchsorted(self.sorted, keys)
        pos[pos >= len(self.sorted)] = 0
        hit = self.sorted[pos] == keys
        return np.where(hit, self.perm[pos], -1)


def attach(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
    import h5py
    import lance

    t0 = time.perf_counter()
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file ({exc})", path=path) from exc
    with h5:
        uds = _pick(h5, UUID_NAMES, "uuid", path)
        eds = _pick(h5, EMBED_NAMES, "embeddings", path)
        if eds.ndim != 2:
            raise InputError(f"embeddings must be 2-D (N x D), got shape {eds.shape}", path=path)
        if uds.shape[0] != eds.shape[0]:
            raise InputError(
                f"{uds.shape[0]:,} uuids but {eds.shape[0]:,} embedding rows; the two datasets "
                "must have one row per prompt", path=path)
        if eds.dtype.kind != "f":
            raise InputError(f"embeddings must be floating point, not {eds.dtype}", path=path)
        n, dim = int(eds.shape[0]), int(eds.shape[1])
        model = opts.model or _attr(h5, eds, "model") or (
            "openai:text-embedding-3-large" if dim == 3072 else "unknown")
        lookup = _Lookup(_uuids(uds), path)
        report.rows_read = n

        column = opts.column
        prompts = lake._open("prompts")
        field = vector_field(column, dim, opts.dtype, model=model, source=Path(path).name)
        existing = prompts.schema.field(column) if column in prompts.schema.names else None
        if existing is not None:
            meta = field_meta(existing)
            if not existing.type.equals(field.type):
                raise SchemaError(
                    f"column {column!r} holds {existing.type} vectors; this file has {dim}-d "
                    f"{opts.dtype}: attach it to another column with --column")
            if meta.get("vidlake:model") and meta["vidlake:model"] != model:
                raise SchemaError(
                    f"column {column!r} holds {meta['vidlake:model']} embeddings, not {model}; "
                    "one embedding space per column: use --column")

        dtype = np.float16 if opts.dtype == "float16" else np.float32
        matched = 0

        def embed_batch(batch: pa.RecordBatch) -> tuple[pa.Array, int]:
            keys = np.array(batch.column(0).to_numpy(zero_copy_only=False), dtype="U36")
            rows = lookup.find(keys)
            have = rows >= 0
            got = _read_rows(eds, rows[have]) if have.any() else np.empty((0, dim), dtype)
            finite = np.isfinite(got).all(axis=1)
            if not finite.all():
                bad = int(rows[have][np.flatnonzero(~finite)[0]])
                raise InputError(f"embedding of uuid {_uuid_at(uds, bad)} has NaN or inf values",
                                 path=path, row=bad)
            got = got.astype(dtype, copy=False)
            if have.all():  # the common case: no scatter, no mask
                return pa.FixedSizeListArray.from_arrays(pa.array(got.reshape(-1)), dim), len(keys)
            vals = np.zeros((len(keys), dim), dtype=dtype)  # masked rows: NULL, never zeros
            vals[have] = got
            flat = pa.array(vals.reshape(-1))
            arr = pa.FixedSizeListArray.from_arrays(flat, dim, mask=pa.array(~have))
            return arr, int(have.sum())

        with lake.batch("attach-embeddings", source=path, source_sha256=hash_in_background(path),
                        params={"column": column, "model": model, "dims": dim,
                                "dtype": opts.dtype}) as b:
            report.batch_id = b.batch_id
            if existing is None:
                ds = prompts
                new_frags: list[Any] = []
                schema = None
                done = 0
                # Counted here: Lance calls the UDF on its own runtime, where a dataset call
                # such as count_rows() panics ("Cannot start a runtime from within a runtime").
                total_rows = ds.count_rows()
                for frag in ds.get_fragments():
                    def udf(batch: pa.RecordBatch) -> pa.RecordBatch:
                        nonlocal done
                        arr, _ = embed_batch(batch)
                        done += batch.num_rows
                        if opts.progress:
                            opts.progress(done, total_rows)
                        return pa.RecordBatch.from_arrays([arr], schema=pa.schema([field]))

                    failure: list[BaseException] = []

                    def guarded(batch: pa.RecordBatch, udf: Any = udf,
                                failure: list[BaseException] = failure) -> pa.RecordBatch:
                        try:
                            return udf(batch)
                        except BaseException as exc:
                            failure.append(exc)
                            raise

                    try:
                        frag_meta, schema = frag.merge_columns(guarded, columns=["uuid"],
                                                               batch_size=opts.chunk_rows)
                    except Exception:
                        if failure:  # Lance wraps our error; surface the original
                            raise failure[0] from None
                        raise
                    new_frags.append(frag_meta)
                # Lance may call the UDF more than once on a batch; count matches directly.
                matched = int((lookup.find(lake.uuid_index()) >= 0).sum())
                if schema is None:  # empty lake: metadata-only column
                    b.add_column("prompts", field)
                else:
                    b.stage("prompts", lance.LanceOperation.Merge(new_frags, schema), ds.version)
            else:
                # The column exists: fill rows still missing it, column-patch style.
                ds = prompts
                missing = ds.to_table(columns=["uuid"], filter=f"{_q(column)} IS NULL")
                keys = missing.column("uuid")
                for start in range(0, len(keys), opts.chunk_rows * 16):
                    sl = pa.RecordBatch.from_arrays([keys.slice(start, opts.chunk_rows * 16).combine_chunks()],
                                                    names=["uuid"])
                    arr, k = embed_batch(sl)
                    if not k:
                        continue
                    have = arr.is_valid()
                    upd = pa.table({"uuid": sl.column(0), column: arr}).filter(have)
                    upd = upd.cast(pa.schema([pa.field("uuid", pa.string()), field]))
                    matched += b.update_columns("prompts", upd, on="uuid", mode="rewrite_columns")
            report.rows_updated = matched
            report.already_in_lake = matched
            report.notes.append(
                f"{matched:,} prompts got {dim}-d embeddings ({model}); "
                f"{n - matched:,} file rows have no prompt in the lake")
            b.counts.update({"rows_updated": matched, "rows_read": n,
                             "not_in_lake": n - matched, "column": column})
    report.seconds = time.perf_counter() - t0
    return report


def _q(name: str) -> str:
    return f"`{name}`"


def _attr(h5: Any, ds: Any, key: str) -> str | None:
    for obj in (ds, h5):
        v = obj.attrs.get(key)
        if v is not None:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None


def _uuid_at(ds: Any, i: int) -> str:
    v = ds[i]
    return v.decode() if isinstance(v, bytes) else str(v)
