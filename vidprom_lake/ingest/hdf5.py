"""Attach embeddings from an HDF5 file (VidProM's ``VidProM_embed.hdf5``) to existing prompts.

The file holds two datasets, ``uuid`` (N strings) and ``embeddings`` (N x D floats). Nothing is
read whole: the uuids (36 bytes each) are sorted once and matched as bytes, then the lake is
walked fragment by fragment, two fragments at a time. A fragment's uuids give the file row of
each of its prompts; the vectors are read slice by slice (one straight range when the file and
the lake share an order, as they do for VidProM), checked for NaN/inf (mapped ones during the
source's sha256 pass, `_FiniteScan`) and streamed into a new column file beside the fragment
(no prompt row is rewritten). The files are put on disk and
dropped from the page cache as they grow (`storage.write_behind`); all of them are committed
once, as one batch.
"""

from __future__ import annotations

import copy
import mmap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .. import heap
from ..errors import InputError, SchemaError
from ..schema import field_meta, vector_field
from .pipeline import (
    BackgroundHash,
    IngestOptions,
    IngestReport,
    gc_paused,
    read_ahead,
)

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


# A slice of vectors handed to Lance is at most this big: big enough that per-slice overhead
# vanishes, small enough that malloc recycles the buffers instead of mapping (and faulting in)
# fresh memory for every slice, which cost more than the read itself at 100 MB slices.
SLICE_BYTES = 16 << 20

# Fragments whose column files are written at once. Lance's writer for one file keeps ~1.5 of
# two cores busy at best (its encoder and its I/O thread take turns); with two files at once
# a 200k x 3072 attach took ~20% less wall time in an interleaved A/B on two cores.
ATTACH_THREADS = 2


def _uuids(ds: Any) -> np.ndarray:
    """The file's uuids as fixed-width bytes: matched as bytes, never decoded to unicode."""
    raw = ds[()]
    if raw.dtype.kind == "S":
        return raw
    if raw.dtype.kind == "O":
        return np.array([v if isinstance(v, bytes) else str(v).encode() for v in raw], dtype="S")
    return np.char.encode(raw.astype(str), "utf-8")


def _key_bytes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Lake uuids as fixed-width bytes. When all have one length (canonical uuids: 36) this is
    a view of Arrow's data buffer: no Python string per row."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    if not n:
        return np.empty(0, dtype="S1")
    if col.type == pa.string() and col.null_count == 0:
        offsets = np.frombuffer(col.buffers()[1], np.int32, count=n + 1, offset=col.offset * 4)
        width = int(offsets[1] - offsets[0])
        if width and (np.diff(offsets) == width).all():
            return np.frombuffer(col.buffers()[2], f"S{width}", count=n, offset=int(offsets[0]))
    return np.array([v.encode() for v in col.to_pylist()], dtype="S")


class _Mapping:
    """The vectors read straight from the page cache through a read-only mapping of the file,
    when HDF5 stores them as plain bytes: a contiguous dataset, or chunks of whole rows with no
    filter (h5py's defaults; VidProM's file is one or the other, it is 20.6 GB = N x 3072 x 4
    bytes). A range of rows is then a view of the mapping, one per run of chunks that lie back
    to back in the file: no read into a buffer, no fresh memory. Views already handed to Lance
    are unmapped again as the attach moves on (`release`), so the process's resident memory
    stays small; a view Lance still reads just maps its pages again (the mapping is shared and
    read-only: the file's bytes come back).

    Like any mapped reader, the process gets SIGBUS if another program truncates the file
    while it is read; HDF5 files are not rewritten in place by anything VidLake does."""

    def __init__(self, mm: mmap.mmap, run_rows: np.ndarray, run_offsets: np.ndarray,
                 shape: tuple[int, int], dtype: np.dtype):
        self.mm, self.run_rows, self.run_offsets = mm, run_rows, run_offsets
        self.n, self.dim = shape
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.dim * self.dtype.itemsize

    @classmethod
    def of(cls, ds: Any, path: str) -> _Mapping | None:
        """The mapping of dataset `ds`, or None when its layout is anything else (compressed,
        partial chunks, big-endian, unallocated chunks ...): then HDF5 reads it."""
        import h5py

        n, dim = ds.shape
        row_bytes = dim * ds.dtype.itemsize
        try:
            plist = ds.id.get_create_plist()
            if plist.get_nfilters() or ds.dtype.byteorder == ">" or not ds.size:
                return None
            if plist.get_layout() == h5py.h5d.CONTIGUOUS:
                offset = ds.id.get_offset()
                if offset is None:  # never written
                    return None
                run_rows, run_offsets = np.array([0]), np.array([offset])
            elif plist.get_layout() == h5py.h5d.CHUNKED and ds.chunks[1] == dim:
                chunks: list[tuple[int, int, int, int]] = []
                ds.id.chunk_iter(lambda c: chunks.append(
                    (c.chunk_offset[0], c.byte_offset, c.size, c.filter_mask)))
                per = ds.chunks[0]
                if len(chunks) != -(-n // per) or any(c[2] != per * row_bytes or c[3]
                                                      for c in chunks):
                    return None
                rows, offsets = np.array(sorted(chunks)).T[:2]
                # a run: chunks back to back in the file as in the rows
                cut = np.flatnonzero(np.diff(offsets) != per * row_bytes) + 1
                run_rows, run_offsets = rows[np.r_[0, cut]], offsets[np.r_[0, cut]]
            else:
                return None
            with open(path, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, AttributeError, TypeError):
            return None
        ends = run_offsets + np.diff(np.r_[run_rows, n]) * row_bytes
        if int(ends.max()) > len(mm):  # a file cut short
            mm.close()
            return None
        found = cls(mm, run_rows.astype(np.int64), run_offsets.astype(np.int64), (n, dim),
                    ds.dtype)
        # the mapping must give what HDF5 gives, or it is not used: the first row of each run
        # (up to 16 of them) and the last row
        check = [*found.run_rows[:: max(1, len(found.run_rows) // 16)].tolist(), n - 1]
        if not all(np.array_equal(found.rows(r, r + 1)[0][0], ds[r], equal_nan=True)
                   for r in check):
            mm.close()
            return None
        return found

    def _runs(self, a: int, b: int) -> Iterator[tuple[int, int]]:
        """(byte offset, row count) of rows [a, b) in each run they cross."""
        r = int(np.searchsorted(self.run_rows, a, side="right")) - 1
        while a < b:
            end = min(b, int(self.run_rows[r + 1]) if r + 1 < len(self.run_rows) else self.n)
            yield int(self.run_offsets[r]) + (a - int(self.run_rows[r])) * self.row_bytes, end - a
            a, r = end, r + 1

    def rows(self, a: int, b: int) -> list[np.ndarray]:
        """Rows [a, b) as views of the mapping, one per run they cross."""
        return [np.frombuffer(self.mm, self.dtype, count=k * self.dim, offset=at).reshape(k, self.dim)
                for at, k in self._runs(a, b)]

    def release(self, a: int, b: int) -> None:
        """Unmap the pages of rows [a, b) (the page cache keeps them; nothing is lost)."""
        if not hasattr(self.mm, "madvise"):
            return
        for at, k in self._runs(a, b):
            lo = at - at % mmap.PAGESIZE
            self.mm.madvise(mmap.MADV_DONTNEED, lo, at + k * self.row_bytes - lo)


class _FiniteScan:
    """Finds the rows with a NaN or inf among the mapped vectors while the source's sha256
    reads the file (`BackgroundHash(check=...)`): each piece is looked at while it is still
    in the CPU's cache, instead of a second pass over gigabytes of memory just before Lance
    copies them (with that pass a 2.5 GB attach took ~6% longer here). The pieces come in file
    order; a row cut by a piece boundary is kept until its other part comes. `bad` marks the
    file rows that hold one; the attach checks the rows it handed to Lance against it before
    it commits."""

    def __init__(self, mapping: _Mapping):
        self.dtype, self.dim, self.row_bytes = mapping.dtype, mapping.dim, mapping.row_bytes
        counts = np.diff(np.r_[mapping.run_rows, mapping.n])
        order = np.argsort(mapping.run_offsets, kind="stable")  # runs in file order
        self.starts = mapping.run_offsets[order]
        self.ends = self.starts + counts[order] * self.row_bytes
        self.first_rows = mapping.run_rows[order]
        self.bad = np.zeros(mapping.n, dtype=bool)
        self._part = bytearray()  # the start of a row cut by the last piece's end

    def __call__(self, pos: int, piece: memoryview) -> None:
        end = pos + len(piece)
        r = int(np.searchsorted(self.ends, pos, side="right"))  # the first run ending after pos
        while r < len(self.starts) and int(self.starts[r]) < end:
            lo, hi, row0 = int(self.starts[r]), int(self.ends[r]), int(self.first_rows[r])
            a, b = max(lo, pos), min(hi, end)
            if a < b:
                self._run(piece, pos, a, b, lo, row0)
            r += 1

    def _run(self, piece: memoryview, pos: int, a: int, b: int, lo: int, row0: int) -> None:
        rb = self.row_bytes
        row, into = divmod(a - lo, rb)
        if into:  # the rest of a row the last piece began
            take = min(rb - into, b - a)
            self._part += piece[a - pos: a - pos + take]
            a += take
            if len(self._part) == rb:
                self._look(bytes(self._part), row0 + row)
                self._part.clear()
                row += 1
        whole = (b - a) // rb
        if whole:
            self._look(piece[a - pos: a - pos + whole * rb], row0 + row, whole)
            a += whole * rb
        if a < b:  # a row that goes on in the next piece
            self._part[:] = piece[a - pos: b - pos]

    def _look(self, data: Any, row: int, rows: int = 1) -> None:
        vals = np.frombuffer(data, dtype=self.dtype).reshape(rows, self.dim)
        self.bad[row + _nonfinite_rows(vals)] = True


def _nonfinite_rows(vals: np.ndarray) -> np.ndarray:
    """The indices of the rows of `vals` (N x D) that hold a NaN or inf. A finite row sum means
    every value is finite (a NaN or inf in a summand is not summed away); only a row whose sum
    is not (a bad value, or overflow) pays for the exact check."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = vals.sum(axis=1)
    suspects = np.flatnonzero(~np.isfinite(sums))
    if not len(suspects):
        return suspects
    return suspects[~np.isfinite(vals[suspects]).all(axis=1)]


def _read_rows(ds: Any, idx: np.ndarray) -> np.ndarray:
    """ds[idx] for unsorted unique indices, reading contiguous ranges where it can."""
    out = np.empty((len(idx), ds.shape[1]), dtype=ds.dtype)
    if not len(idx):
        return out
    if idx[-1] - idx[0] == len(idx) - 1 and (np.diff(idx) == 1).all():
        # VidProM's case: the file and the lake share an order, so one straight read
        ds.read_direct(out, np.s_[int(idx[0]): int(idx[-1]) + 1])
        return out
    order = np.argsort(idx, kind="stable")
    s = idx[order]
    if s[-1] - s[0] + 1 <= 4 * len(s):  # dense: one read of the span, then pick
        block = ds[int(s[0]): int(s[-1]) + 1]
        out[order] = block[s - s[0]]
        return out
    # scattered: each run of consecutive file rows is read straight into place (h5py's fancy
    # indexing costs ~30x more per row)
    import h5py

    got = np.empty_like(out)
    fspace = ds.id.get_space()
    cuts = [0, *(np.flatnonzero(np.diff(s) != 1) + 1).tolist(), len(s)]
    for a, b in zip(cuts[:-1], cuts[1:], strict=False):
        fspace.select_hyperslab((int(s[a]), 0), (b - a, out.shape[1]))
        ds.id.read(h5py.h5s.create_simple((b - a, out.shape[1])), fspace, got[a:b])
    out[order] = got
    return out


class _Lookup:
    """The file's uuids, sorted once, to find the file row of each lake uuid."""

    def __init__(self, uuids: np.ndarray, path: str):
        self.perm = np.argsort(uuids, kind="stable")
        self.sorted = uuids[self.perm]
        dup = np.flatnonzero(self.sorted[1:] == self.sorted[:-1])
        if len(dup):
            i = int(dup[0])
            a, b = sorted((int(self.perm[i]), int(self.perm[i + 1])))
            raise InputError(f"uuid {self.sorted[i].decode(errors='replace')} appears twice "
                             f"(rows {a} and {b})", path=path, row=b)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """HDF5 row of each key (bytes), -1 where absent."""
        srt = self.sorted  # one array throughout: fragments look up in two threads
        if not len(srt) or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        if keys.dtype.itemsize > srt.dtype.itemsize:
            # widen the file's side; cutting a key could make it match a shorter uuid
            srt = self.sorted = srt.astype(keys.dtype)
        keys = keys.astype(srt.dtype, copy=False)
        pos = np.searchsorted(srt, keys)
        pos[pos >= len(srt)] = 0
        hit = srt[pos] == keys
        return np.where(hit, self.perm[pos], -1).astype(np.int64, copy=False)


class _Vectors:
    """Reads the vectors of given HDF5 rows as Arrow columns, checked for NaN/inf."""

    # how many rows handed to Lance stay mapped (Lance copies a slice within a few of it)
    MAPPED_ROWS_KEPT = 8192

    def __init__(self, uds: Any, eds: Any, dtype: Any, path: str):
        self.uds, self.eds, self.dtype, self.path = uds, eds, dtype, path
        self.dim = int(eds.shape[1])
        self.mapping = _Mapping.of(eds, path)
        self._handed: list[tuple[int, int]] = []  # mapped row ranges handed out, oldest first
        # With a scan (`scan_for_bad_values`), mapped rows are handed out unchecked and their
        # ranges kept here (one list for every fork) for `check_scanned`.
        self.scan: _FiniteScan | None = None
        self._unchecked: list[tuple[int, int]] = []

    def scan_for_bad_values(self) -> _FiniteScan | None:
        """A `_FiniteScan` for the source's sha256 to run, when the vectors are mapped and
        stored as the column's type (no narrowing, which is checked after it)."""
        if self.mapping is not None and self.mapping.dtype == np.dtype(self.dtype):
            self.scan = _FiniteScan(self.mapping)
        return self.scan

    def check_scanned(self, sha: BackgroundHash) -> None:
        """Once the scan has read the whole file (`sha` done): the first row handed out
        unchecked that holds a NaN or inf is an InputError, as a checked one would be."""
        if self.scan is None or not self._unchecked:
            return
        sha.result()
        bad = np.flatnonzero(self.scan.bad)
        if not len(bad):
            return
        ranges = np.array(sorted(self._unchecked))
        at = np.searchsorted(ranges[:, 0], bad, side="right") - 1
        handed = (at >= 0) & (bad < ranges[np.maximum(at, 0), 1])
        if handed.any():
            row = int(bad[handed][0])
            raise InputError(f"embedding of uuid {_uuid_at(self.uds, row)} has NaN or inf "
                             "values", path=self.path, row=row)

    def __call__(self, rows: np.ndarray) -> pa.FixedSizeListArray:
        """The vectors of file rows `rows`, in that order, as one array."""
        parts = list(self.pieces(rows))
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)

    def pieces(self, rows: np.ndarray) -> Iterator[pa.FixedSizeListArray]:
        """The vectors of file rows `rows`, in that order, as consecutive arrays; -1 gives
        NULL (never zeros). A straight range of a mapped file comes as views of the mapping
        (one per run of chunks it crosses), anything else as one array read by HDF5."""
        a = int(rows[0]) if len(rows) else -1
        if (self.mapping is None or a < 0 or rows[-1] - a != len(rows) - 1
                or not (np.diff(rows) == 1).all()):
            yield self._arrow(rows)
            return
        for view in self.mapping.rows(a, a + len(rows)):
            if self.scan is not None:  # checked by the scan (`check_scanned`)
                self._unchecked.append((a, a + len(view)))
                yield pa.FixedSizeListArray.from_arrays(pa.array(view.reshape(-1)), self.dim)
            else:
                yield self._arrow(np.arange(a, a + len(view)), view)
            self._handed.append((a, a + len(view)))
            a += len(view)
        while sum(b - a for a, b in self._handed[1:]) >= self.MAPPED_ROWS_KEPT:
            self.mapping.release(*self._handed.pop(0))

    def fork(self) -> _Vectors:
        """Another reader of the same rows, for another thread: the same mapping, its own list
        of ranges handed out (each reader releases only its own)."""
        other = copy.copy(self)
        other._handed = []
        return other

    def release(self) -> None:
        """Unmap every range handed out (once Lance has written them)."""
        while self._handed and self.mapping is not None:  # (only a mapping hands ranges out)
            self.mapping.release(*self._handed.pop(0))

    def _arrow(self, rows: np.ndarray, got: np.ndarray | None = None) -> pa.FixedSizeListArray:
        have = rows >= 0
        idx = rows[have]
        if got is None:
            got = _read_rows(self.eds, idx) if len(idx) else np.empty((0, self.dim), self.dtype)
        nonfinite = _nonfinite_rows(got)
        if len(nonfinite):
            bad = int(idx[nonfinite[0]])
            raise InputError(f"embedding of uuid {_uuid_at(self.uds, bad)} has NaN or inf "
                             "values", path=self.path, row=bad)
        if self.dtype != got.dtype:
            with np.errstate(over="ignore"):
                narrow = got.astype(self.dtype)
            beyond = _nonfinite_rows(narrow)  # finite before: beyond the stored type's range
            if len(beyond):
                bad = int(idx[beyond[0]])
                hint = ": attach it as float32" if self.dtype == np.float16 else ""
                raise InputError(f"embedding of uuid {_uuid_at(self.uds, bad)} has values beyond "
                                 f"{np.finfo(self.dtype).max:g}, the largest "
                                 f"{np.dtype(self.dtype).name}{hint}", path=self.path, row=bad)
            got = narrow
        if len(idx) == len(rows):  # the common case: no scatter, no mask
            return pa.FixedSizeListArray.from_arrays(pa.array(got.reshape(-1)), self.dim)
        vals = np.zeros((len(rows), self.dim), dtype=self.dtype)
        vals[have] = got
        return pa.FixedSizeListArray.from_arrays(pa.array(vals.reshape(-1)), self.dim,
                                                 mask=pa.array(~have))


def attach(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
    import h5py

    t0 = time.perf_counter()
    try:
        # No chunk cache: rows are read once each, and with a cache HDF5 reads a whole chunk
        # (3 MB in VidProM-shaped files) through it for every row it gives back
        h5 = h5py.File(path, "r", rdcc_nbytes=0)
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
        vectors = _Vectors(uds, eds, np.float16 if opts.dtype == "float16" else np.float32, path)
        # the file's sha256 (for the batch log) from here on, beside the lookup and the write;
        # it also looks for NaN/inf in mapped vectors as it goes
        sha = BackgroundHash(path, check=vectors.scan_for_bad_values())
        try:
            return _attach(lake, path, opts, report, uds, eds, vectors, sha, t0)
        except BaseException:
            sha.cancel()
            raise


def _attach(lake: Lake, path: str, opts: IngestOptions, report: IngestReport, uds: Any,
            eds: Any, vectors: _Vectors, sha: BackgroundHash, t0: float) -> IngestReport:
    """`attach` once the file's datasets have passed their checks."""
    import lance

    n, dim = int(eds.shape[0]), int(eds.shape[1])
    model = opts.model or _attr(eds.file, eds, "model") or (
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

    with lake.batch("attach-embeddings", source=path, source_sha256=sha,
                    params={"column": column, "model": model, "dims": dim,
                            "dtype": opts.dtype}) as b:
        report.batch_id = b.batch_id
        if existing is None:
            slice_rows = max(1, min(opts.chunk_rows, SLICE_BYTES // (dim * eds.dtype.itemsize)))
            new_frags, schema, matched = _column_files(lake, prompts, field, lookup, vectors,
                                                       slice_rows, opts)
            if schema is None:  # empty lake: metadata-only column
                b.add_column("prompts", field)
            else:
                b.stage("prompts", lance.LanceOperation.Merge(new_frags, schema),
                        prompts.version)
        else:
            # The column exists: fill rows still missing it, column-patch style.
            matched = 0
            missing = prompts.to_table(columns=["uuid"], filter=f"{_q(column)} IS NULL")
            keys = missing.column("uuid")
            step = opts.chunk_rows * 16
            for start in range(0, len(keys), step):
                part = keys.slice(start, step).combine_chunks()
                rows = lookup.find(_key_bytes(part))
                have = rows >= 0
                if not have.any():
                    continue
                upd = pa.table({"uuid": part.filter(pa.array(have)),
                                column: vectors(rows[have])})
                upd = upd.cast(pa.schema([pa.field("uuid", pa.string()), field]))
                matched += b.update_columns("prompts", upd, on="uuid", mode="rewrite_columns")
                vectors.release()
        vectors.check_scanned(sha)  # before anything commits
        report.rows_updated = matched
        report.already_in_lake = matched
        report.notes.append(
            f"{matched:,} prompts got {dim}-d embeddings ({model}); "
            f"{n - matched:,} file rows have no prompt in the lake")
        b.counts.update({"rows_updated": matched, "rows_read": n,
                         "not_in_lake": n - matched, "column": column})
    report.seconds = time.perf_counter() - t0
    return report


class _Stopped(Exception):
    """Another fragment's column file failed: this one stops too."""


def _column_files(lake: Lake, ds: Any, field: pa.Field, lookup: _Lookup, vectors: _Vectors,
                  slice_rows: int, opts: IngestOptions) -> tuple[list[Any], Any, int]:
    """Write one new column file per fragment of `ds`, holding each prompt's vector (NULL for
    prompts not in the file). Returns the fragments' new metadata, the new schema (None when
    the table has no fragment) and how many prompts got a vector. Nothing is committed."""
    out_schema = pa.schema([field])
    # Counted here: Lance pulls the slices on its own runtime, where a dataset call such as
    # count_rows() panics ("Cannot start a runtime from within a runtime").
    total = ds.count_rows()
    new_frags: list[Any] = []
    schema = None
    done = matched = 0
    progress = threading.Lock()
    stop = threading.Event()  # a fragment failed: the others stop at their next slice

    def column_file(frag: Any) -> tuple[Any, Any, int]:
        """Write `frag`'s new column file: (its new metadata, the new schema, rows matched)."""
        rows = lookup.find(_key_bytes(frag.to_table(columns=["uuid"]).column(0)))
        vec = vectors.fork()
        failure: list[BaseException] = []

        def slices() -> Iterator[pa.RecordBatch]:
            nonlocal done
            try:
                for s in range(0, len(rows), slice_rows):
                    if stop.is_set():
                        raise _Stopped
                    part = rows[s: s + slice_rows]
                    for piece in vec.pieces(part):
                        yield pa.record_batch([piece], schema=out_schema)
                    with progress:
                        done += len(part)
                        if opts.progress:
                            opts.progress(done, total)
            except BaseException as exc:
                failure.append(exc)
                raise

        # A reader, not a UDF: Lance reads nothing back and the rows come in the fragment's
        # order (its live rows, as the scan gave them).
        reader = pa.RecordBatchReader.from_batches(
            out_schema, read_ahead(slices(), 2, "vidlake-h5-read"))
        try:
            meta, schema = frag.merge_columns(reader)
        except Exception:
            stop.set()
            if failure:  # Lance wraps our error; surface the original
                raise failure[0] from None
            raise
        finally:
            vec.release()
        return meta, schema, int((rows >= 0).sum())

    from concurrent.futures import ThreadPoolExecutor, wait

    with gc_paused(), heap.reuse(), lake.write_behind("prompts"), ThreadPoolExecutor(
            ATTACH_THREADS, thread_name_prefix="vidlake-attach") as pool:
        futures = [pool.submit(column_file, frag) for frag in ds.get_fragments()]
        try:
            for fut in futures:  # in fragment order
                meta, schema, m = fut.result()
                new_frags.append(meta)
                matched += m
        except BaseException as exc:
            stop.set()
            for fut in futures:
                fut.cancel()
            # the error to raise is the one that stopped the others, not their _Stopped
            wait(futures)
            errors = [f.exception() for f in futures if not f.cancelled()]
            raise next((e for e in errors if e is not None and not isinstance(e, _Stopped)),
                       exc) from None
    return new_frags, schema, matched


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
