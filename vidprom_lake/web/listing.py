"""The gallery's listing index: what the list pages show and filter on, held in memory.

Paging through 1.67M prompts newest-first with six NSFW thresholds, a date range and a
model filter must answer in well under 150 ms on two cores, many times a second, also with
dozens of clients at once. A DuckDB top-N over the Lance tables reads the filter columns of
every row plus the text of the candidates on each request (0.5-1.4 s at 1.67M rows,
measured), and even a Lance ``take`` of one page's 48 rows costs ~20 ms of CPU (random rows,
a dozen columns). So the server reads, once at start and through `Lake.dataset` (the pinned
Lance datasets; nothing else), the columns a list page filters on, sorts by and shows:

    uuid, time, length(prompt), the first 400 characters of the prompt, six NSFW scores,
    source, dedup status, dup_of, and per video: its prompt and model

(about 100 bytes plus the preview per prompt: ~330 MB at VidProM size, loaded in a few
seconds). A request then becomes numpy work over these arrays (a boolean mask per filter
set, cached, walked in a precomputed sort order until the page is full) plus Arrow ``take``s
of the page's uuids and previews: no Lance read at all. Filters never reach any SQL: they are
typed values compared with arrays.

Rows are addressed by their *position* in the pinned prompts dataset (what `take` accepts).
A uuid is found through Polars' 64-bit hash of the string, and the row it lands on is checked
against the uuid held in memory, so a hash collision can never show the wrong prompt.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..schema import NSFW_LABELS

if TYPE_CHECKING:
    from ..lake import Lake
    from .params import ListQuery

NULL_TIME = np.iinfo(np.int64).min
DEDUP_CODES = {"unique": 1, "duplicate": 0, "unscored": -1}
_DEDUP_VALUE = {1: True, 0: False, -1: None}
SCAN_BLOCK = 65_536
#: Characters of each prompt held in memory for the list pages (longer prompts end in "…").
PREVIEW_CHARS = 400
_READ_BATCH = 65_536


def uuid_keys(values: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """64-bit keys of uuid strings (Polars' string hash, fixed seed: stable in-process)."""
    import polars as pl

    if isinstance(values, pa.ChunkedArray | pa.Array):
        s = pl.Series(values=values)
    else:
        s = pl.Series(values=list(values), dtype=pl.Utf8)
    return s.hash(seed=0).to_numpy().astype(np.uint64, copy=False)


class _LRU:
    """A small thread-safe LRU cache of computed values."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._d

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


@dataclass
class VideoIndex:
    """Every video's prompt position, model and row offset, sorted by prompt position."""

    models: list[str]
    prompt_pos: np.ndarray  # int32, sorted
    model_code: np.ndarray  # int16
    offset: np.ndarray  # int64: position in the videos dataset
    per_model: dict[str, int] = field(default_factory=dict)
    orphans: int = 0  # videos whose prompt is not in the pinned prompts table

    def of_prompt(self, pos: int) -> list[tuple[str, int]]:
        """(model, videos-dataset offset) of every video of the prompt at `pos`, by model."""
        lo = int(np.searchsorted(self.prompt_pos, pos, "left"))
        hi = int(np.searchsorted(self.prompt_pos, pos, "right"))
        out = [(self.models[int(self.model_code[i])], int(self.offset[i])) for i in range(lo, hi)]
        return sorted(out)

    def find(self, pos: int, model: str) -> int | None:
        for m, off in self.of_prompt(pos):
            if m == model:
                return off
        return None


@dataclass
class Page:
    positions: list[int]
    has_next: bool
    total: int | None  # matches of the filters (None for searches: only the top K were ranked)
    hidden_nsfw: int = 0  # matches the NSFW switch hides
    scores: dict[int, float] = field(default_factory=dict)


class Listing:
    """The in-memory listing index of a pinned lake (see the module docstring)."""

    def __init__(self, lake: Lake, *, progress: Callable[[str], None] | None = None):
        t0 = time.perf_counter()
        say = progress or (lambda _m: None)
        self.lake = lake
        prompts = lake.dataset("prompts")
        names = set(prompts.schema.names)
        cols: dict[str, str] = {"uuid": "uuid", "time": "time", "chars": "length(prompt)",
                                "preview": f"left(prompt, {PREVIEW_CHARS})", "source": "source"}
        for c in (*NSFW_LABELS, "unique_semantic", "dup_of"):
            if c in names:
                cols[c] = c
        say(f"reading the listing columns of {prompts.count_rows():,} prompts")
        frags = prompts.get_fragments()
        t = _read_columns(prompts, cols)
        self.n = n = t.num_rows
        self.uuids: pa.Array = t.column("uuid").combine_chunks()
        # Row addresses (fragment id << 32 | row in fragment, what a Lance search can return
        # instead of columns) map to positions by arithmetic while no fragment has deletions.
        self._frag_ids = np.array([f.fragment_id for f in frags], np.int64)
        rows = np.array([f.physical_rows for f in frags], np.int64)
        self._frag_start = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self._frag_rows = rows
        self.addressable = (bool(np.all(np.diff(self._frag_ids) > 0)) and int(rows.sum()) == n
                            and all(f.metadata.deletion_file is None for f in frags))
        self.previews: pa.Array = t.column("preview").combine_chunks()
        keys = uuid_keys(self.uuids)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.key_pos = order.astype(np.int32)
        tcol = t.column("time").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        self.time_us = tcol.fill_null(NULL_TIME).to_numpy().astype(np.int64, copy=False)
        self.chars = t.column("chars").fill_null(0).to_numpy().astype(np.int32)
        self.nsfw = np.zeros((len(NSFW_LABELS), n), np.float32)
        self.nsfw_scored = 0
        for i, c in enumerate(NSFW_LABELS):
            if c in cols:
                col = t.column(c)
                self.nsfw[i] = col.fill_null(0).to_numpy().astype(np.float32, copy=False)
                self.nsfw_scored = max(self.nsfw_scored, n - col.null_count)
        src = t.column("source").fill_null("(none)").dictionary_encode().combine_chunks()
        self.sources: list[str] = src.dictionary.to_pylist()
        self.source_code = src.indices.to_numpy().astype(np.int16)
        self.source_counts = dict(zip(self.sources, np.bincount(
            self.source_code, minlength=len(self.sources)).tolist(), strict=True))
        if "unique_semantic" in cols:
            us = t.column("unique_semantic")
            self.dedup = np.where(us.is_null().to_numpy(zero_copy_only=False), -1,
                                  us.fill_null(False).to_numpy(zero_copy_only=False)).astype(np.int8)
        else:
            self.dedup = np.full(n, -1, np.int8)
        self.dup_of = np.full(n, -1, np.int32)
        if "dup_of" in cols:
            d = t.column("dup_of")
            valid = ~d.is_null().to_numpy(zero_copy_only=False)
            if valid.any():
                idx = np.flatnonzero(valid)
                found = self.positions_of(d.filter(pa.array(valid)), verify=False)
                self.dup_of[idx] = found
        del t
        # the duplicates of each kept prompt, found by binary search (positions ascending)
        has = np.flatnonzero(self.dup_of >= 0).astype(np.int32)
        self._dups = has[np.argsort(self.dup_of[has], kind="stable")]
        self._dups_of = self.dup_of[self._dups]
        say("sorting")
        # newest first; rows without a time come last in both orders
        self.by_newest = np.argsort(-np.where(self.time_us == NULL_TIME, np.iinfo(np.int64).min + 1,
                                              self.time_us), kind="stable").astype(np.int32)
        self._by_oldest: np.ndarray | None = None
        self.by_longest = np.argsort(-self.chars.astype(np.int64), kind="stable").astype(np.int32)
        valid_t = self.time_us[self.time_us != NULL_TIME]
        self.first_time = _to_dt(int(valid_t.min())) if valid_t.size else None
        self.last_time = _to_dt(int(valid_t.max())) if valid_t.size else None
        say("indexing videos")
        self.videos = self._video_index()
        self._position = functools.lru_cache(maxsize=1 << 16)(self._position_uncached)
        self._model_masks: dict[str, np.ndarray] = {}
        self._masks = _LRU(24)
        self._perms = _LRU(4)
        _release_memory()
        self.load_seconds = time.perf_counter() - t0
        self.nbytes = self.uuids.nbytes + self.previews.nbytes + sum(a.nbytes for a in (
            self.keys, self.key_pos, self.time_us, self.chars, self.nsfw, self.source_code,
            self.dedup, self.dup_of, self._dups, self._dups_of, self.by_newest, self.by_longest,
            self.videos.prompt_pos, self.videos.model_code, self.videos.offset))

    # ------------------------------------------------------------------ lookups
    def positions_of(self, uuids: pa.Array | pa.ChunkedArray | Sequence[str], *,
                     verify: bool = True) -> np.ndarray:
        """Row positions of `uuids` (-1 where the lake has no such prompt).

        With `verify`, each hit is confirmed against the row's uuid (held in memory), so even
        a 64-bit hash collision cannot map a uuid to another prompt."""
        keys = uuid_keys(uuids)
        lo = np.searchsorted(self.keys, keys, "left")
        hi = np.searchsorted(self.keys, keys, "right")
        pos = np.full(len(keys), -1, np.int64)
        single = (hi - lo) == 1
        pos[single] = self.key_pos[lo[single]]
        multi = np.flatnonzero((hi - lo) > 1)
        want = _as_list(uuids)
        if multi.size:  # several uuids share a key: compare the strings
            for i in multi:
                cands = np.sort(self.key_pos[lo[i]:hi[i]])
                got = self.uuids.take(pa.array(cands)).to_pylist()
                for p, u in zip(cands, got, strict=True):
                    if u == want[i]:
                        pos[i] = p
        if verify:
            check = np.flatnonzero(single)
            if check.size:
                got = self.uuids.take(pa.array(pos[check])).to_pylist()
                for j, u in zip(check, got, strict=True):
                    if u != want[j]:
                        pos[j] = -1
        return pos

    def positions_of_addresses(self, addresses: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Positions of Lance row addresses (-1 for an address outside the pinned dataset).
        Only when `addressable` (no deletions), where a position is the fragment's first
        position plus the row's offset in it."""
        assert self.addressable
        a = np.asarray(addresses.to_numpy(zero_copy_only=False), np.uint64)
        if self._frag_ids.size == 0:
            return np.full(a.size, -1, np.int64)
        frag = (a >> np.uint64(32)).astype(np.int64)
        off = (a & np.uint64(0xFFFFFFFF)).astype(np.int64)
        i = np.clip(np.searchsorted(self._frag_ids, frag), 0, self._frag_ids.size - 1)
        ok = (self._frag_ids[i] == frag) & (off < self._frag_rows[i])
        return np.where(ok, self._frag_start[i] + off, -1)

    def position(self, uuid: str) -> int | None:
        """The position of one uuid (None if the lake has no such prompt); the last 64k
        lookups are remembered (one costs ~0.1 ms: the page just listed asks for its
        thumbnails, a playing clip for range after range)."""
        return self._position(uuid)

    def _position_uncached(self, uuid: str) -> int | None:
        p = int(self.positions_of([uuid])[0])
        return p if p >= 0 else None

    def display(self, positions: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """What a list row shows of each prompt at `positions`, from memory alone: uuid,
        preview (the first PREVIEW_CHARS characters, "…" when cut), chars, time, source,
        unique_semantic (None when not deduplicated), nsfw_top (the highest-scoring NSFW
        category and its score; unscored counts as 0) and position."""
        pos = np.asarray(positions, np.int64)
        if pos.size == 0:
            return []
        idx = pa.array(pos)
        uuids = self.uuids.take(idx).to_pylist()
        previews = self.previews.take(idx).to_pylist()
        chars = self.chars[pos].tolist()
        times = self.time_us[pos].tolist()
        sources = self.source_code[pos].tolist()
        dedup = self.dedup[pos].tolist()
        nsfw = self.nsfw[:, pos]
        top = np.argmax(nsfw, axis=0).tolist()
        top_score = nsfw[top, np.arange(pos.size)].tolist()
        out = []
        for j, p in enumerate(pos.tolist()):
            text = previews[j] or ""
            out.append({
                "uuid": uuids[j],
                "preview": text + "…" if chars[j] > PREVIEW_CHARS else text,
                "chars": chars[j],
                "time": None if times[j] == NULL_TIME else _to_dt(times[j]),
                "source": self.sources[sources[j]],
                "unique_semantic": _DEDUP_VALUE[dedup[j]],
                "nsfw_top": (NSFW_LABELS[top[j]], top_score[j]),
                "position": p,
            })
        return out

    def take(self, positions: Sequence[int] | np.ndarray, columns: list[str]) -> pa.Table:
        """Rows at `positions` of the pinned prompts dataset, in the order given."""
        pos = np.asarray(positions, np.int64)
        if pos.size == 0:
            ds = self.lake.dataset("prompts")
            return ds.schema.empty_table().select(columns)
        order = np.argsort(pos, kind="stable")
        t = self.lake.dataset("prompts").take(pos[order], columns=columns)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return t.take(pa.array(inverse))

    # ------------------------------------------------------------------ filters
    def model_mask(self, model: str) -> np.ndarray:
        if model not in self._model_masks:
            v = self.videos
            mask = np.zeros(self.n, bool)
            if model == "any":
                sel = v.prompt_pos
            else:
                code = v.models.index(model)
                sel = v.prompt_pos[v.model_code == code]
            mask[sel[sel >= 0]] = True
            self._model_masks[model] = mask
        return self._model_masks[model]

    def mask(self, lq: ListQuery, *, nsfw: bool = True) -> np.ndarray | None:
        """Which prompts pass the filters of `lq` (None: all of them). Cached per filter set."""
        nsfw_f = tuple(sorted(lq.nsfw_filters().items())) if nsfw else ()
        key = (lq.source, lq.model, lq.date_from, lq.date_to, lq.dedup, nsfw_f)
        return self._masks.get(key, lambda: self._build_mask(lq, nsfw_f))

    def _build_mask(self, lq: ListQuery, nsfw_f: tuple[tuple[str, float], ...]) -> np.ndarray | None:
        m: np.ndarray | None = None

        def both(x: np.ndarray) -> None:
            nonlocal m
            m = x if m is None else (m & x)

        if lq.source is not None:
            both(self.source_code == self.sources.index(lq.source))
        if lq.model:
            both(self.model_mask(lq.model))
        if lq.date_from is not None:
            both(self.time_us >= _us(lq.date_from))
        if lq.date_to is not None:
            # the whole `to` day is included; rows without a time fail any date filter
            both((self.time_us < _us(lq.date_to + timedelta(days=1))) & (self.time_us != NULL_TIME))
        if lq.dedup != "all":
            both(self.dedup == DEDUP_CODES[lq.dedup])
        for name, limit in nsfw_f:
            both(self.nsfw[NSFW_LABELS.index(name)] <= np.float32(limit))
        return m

    def count(self, mask: np.ndarray | None) -> int:
        return self.n if mask is None else int(np.count_nonzero(mask))

    # ------------------------------------------------------------------ pages
    def order(self, sort: str, seed: int) -> np.ndarray:
        if sort == "newest":
            return self.by_newest
        if sort == "oldest":
            if self._by_oldest is None:
                t = np.where(self.time_us == NULL_TIME, np.iinfo(np.int64).max, self.time_us)
                self._by_oldest = np.argsort(t, kind="stable").astype(np.int32)
            return self._by_oldest
        if sort == "longest":
            return self.by_longest
        if sort == "shortest":
            return self.by_longest[::-1]
        if sort == "random":
            return self._perms.get(seed, lambda: np.random.default_rng(seed).permutation(
                self.n).astype(np.int32))
        raise ValueError(sort)

    def page(self, lq: ListQuery) -> Page:
        """The positions on page `lq.page` of the list, in order, and whether more follow."""
        mask = self.mask(lq)
        order = self.order(lq.sort, lq.seed)
        want = lq.offset + lq.per_page + 1
        hits: list[np.ndarray] = []
        got = 0
        for s in range(0, order.size, SCAN_BLOCK):
            blk = order[s:s + SCAN_BLOCK]
            if mask is not None:
                blk = blk[mask[blk]]
            hits.append(blk)
            got += blk.size
            if got >= want:
                break
        allhits = np.concatenate(hits) if hits else np.empty(0, np.int32)
        sel = allhits[lq.offset:lq.offset + lq.per_page]
        total = self.count(mask)
        hidden = 0
        if lq.nsfw_filters():
            hidden = self.count(self.mask(lq, nsfw=False)) - total
        return Page([int(x) for x in sel], got > lq.offset + lq.per_page, total, hidden)

    def ranked_page(self, lq: ListQuery, positions: np.ndarray, scores: np.ndarray) -> Page:
        """A page of search results: `positions` best first, filtered by `lq`'s filters."""
        keep = positions >= 0
        positions, scores = positions[keep], scores[keep]
        mask = self.mask(lq)
        if mask is not None:
            ok = mask[positions]
            hidden = 0
            if lq.nsfw_filters():
                loose = self.mask(lq, nsfw=False)
                hidden = int(np.count_nonzero(loose[positions] if loose is not None
                                              else np.ones(positions.size, bool))) - int(ok.sum())
            positions, scores = positions[ok], scores[ok]
        else:
            hidden = 0
        sel = positions[lq.offset:lq.offset + lq.per_page]
        sc = scores[lq.offset:lq.offset + lq.per_page]
        return Page([int(x) for x in sel], positions.size > lq.offset + lq.per_page, None,
                    hidden, {int(p): float(s) for p, s in zip(sel, sc, strict=True)})

    def near_duplicates(self, pos: int, limit: int = 50) -> tuple[list[int], int]:
        """Prompts that the last dedup marked as duplicates of the one at `pos`."""
        lo = int(np.searchsorted(self._dups_of, pos, "left"))
        hi = int(np.searchsorted(self._dups_of, pos, "right"))
        return self._dups[lo:min(hi, lo + limit)].tolist(), hi - lo

    def nsfw_of(self, pos: int) -> dict[str, float]:
        return {k: float(self.nsfw[i, pos]) for i, k in enumerate(NSFW_LABELS)}

    def over_threshold(self, pos: int, lq: ListQuery) -> list[str]:
        """NSFW categories in which the prompt at `pos` scores above `lq`'s thresholds."""
        return [k for k, lim in lq.nsfw_filters().items()
                if self.nsfw[NSFW_LABELS.index(k), pos] > np.float32(lim)]

    # ------------------------------------------------------------------ videos
    def _video_index(self) -> VideoIndex:
        ds = self.lake.dataset("videos")
        t = ds.to_table(columns=["uuid", "model"])
        if t.num_rows == 0:
            return VideoIndex([], np.empty(0, np.int32), np.empty(0, np.int16),
                              np.empty(0, np.int64))
        pos = self.positions_of(t.column("uuid"), verify=False)
        m = t.column("model").dictionary_encode().combine_chunks()
        models = m.dictionary.to_pylist()
        code = m.indices.to_numpy().astype(np.int16)
        offsets = np.arange(t.num_rows, dtype=np.int64)
        keep = pos >= 0
        orphans = int((~keep).sum())
        pos, code, offsets = pos[keep], code[keep], offsets[keep]
        order = np.lexsort((code, pos))
        per_model = dict(zip(models, np.bincount(code, minlength=len(models)).tolist(),
                             strict=True))
        # a model name sorts the grid links; keep the dictionary order stable by name
        return VideoIndex(models, pos[order].astype(np.int32), code[order], offsets[order],
                          per_model, orphans)


def _read_columns(ds: Any, cols: dict[str, str]) -> pa.Table:
    """`cols` of every row of `ds`, read batch by batch so that only one batch of full prompt
    texts is in memory at a time (the preview is copied out of each)."""
    scanner = ds.scanner(columns=cols, batch_size=_READ_BATCH)
    schema = scanner.projected_schema
    i = schema.get_field_index("preview")
    schema = schema.set(i, pa.field("preview", pa.string()))
    batches = []
    for b in scanner.to_batches():
        # `left()` gives string views into the whole texts: copy the previews out
        batches.append(b.set_column(i, "preview", b.column(i).cast(pa.string())))
    return pa.Table.from_batches(batches, schema=schema)


def _release_memory() -> None:
    """Give back what reading the listing columns freed: Arrow's allocator and glibc's malloc
    (Lance's) both keep freed memory for reuse, ~400 MB after reading 1.67M prompts, which a
    long-running server would hold for nothing (RSS 1.06 GB -> 0.64 GB, measured)."""
    from .. import heap

    pa.default_memory_pool().release_unused()
    heap.trim()


def _as_list(values: pa.Array | pa.ChunkedArray | Sequence[str]) -> list[Any]:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.to_pylist()
    return list(values)


def _us(d: date) -> int:
    return int(datetime.combine(d, dtime(0), tzinfo=UTC).timestamp() * 1_000_000)


def _to_dt(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
