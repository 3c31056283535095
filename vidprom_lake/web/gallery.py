"""What the pages show, over the library API: the pinned lake, its listing index, searches,
one prompt with its videos, and video bytes.

`Gallery` never writes: it holds a *pinned* `Lake` (read-only by construction: `Lake.batch`
refuses on it), so the server shows one consistent state of the lake (`--as-of`, or the head
when it started) however long it runs and whatever writers do meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LakeNotFound, VidlakeError
from ..schema import VIDEO_BLOB_COLUMN, field_meta, is_vector_field
from .cache import ByteLRU
from .listing import _LRU, Listing, Page
from .params import ListQuery
from .ranges import sniff_image_type, sniff_video_type

if TYPE_CHECKING:
    from ..lake import Lake

#: Search candidates ranked before filtering: the smallest of these that holds twice what
#: the page needs (a BM25 top-100 costs about a third of a top-500 in Lance); a later page of
#: the same search reuses the candidates of an earlier one when they suffice.
CANDIDATE_STEPS = (100, 250, 500, 1000, 2000)
MAX_CANDIDATES = CANDIDATE_STEPS[-1]
#: Thumbnails kept in memory (bytes): a list page shows up to 192 of them.
THUMB_CACHE_BYTES = 32 << 20


class NotFound(VidlakeError):
    """No such prompt, video or thumbnail in the lake (HTTP 404)."""


class SearchUnavailable(VidlakeError):
    """A search the lake cannot answer (no vectors, no model to embed a text): HTTP 400."""


@dataclass(frozen=True)
class VideoRef:
    model: str
    offset: int  # position in the pinned videos dataset
    size: int
    etag: str
    content_type: str
    #: The open Lance blob (positioned reads, safe from several threads at once): opening one
    #: costs ~0.5 ms of CPU, a read from it ~0.06 ms. Never closed explicitly, since another
    #: request may still be reading it; it is released with the last reference.
    blob: Any = field(default=None, compare=False, repr=False)


def pin(uri: str, as_of: str | None = None) -> Lake:
    """The lake at `uri` pinned at `as_of` (or at its head now): a read-only `Lake`.

    Opening does not heal a lake left mid-commit (that would be a write); it reads the logged
    head, which is exactly what recovery would restore."""
    from ..lake import Lake, open_lake

    lake = open_lake(uri, as_of=as_of, heal=False)
    if lake.read_only:
        return lake
    committed = [b.batch_id for b in lake.log() if b.status in ("committed", "chunk")]
    if not committed:
        raise LakeNotFound(f"the lake at {lake.uri} has no committed batch yet")
    return Lake(lake.uri, pinned=lake.head(), as_of=None)


class Gallery:
    """The data behind the pages of one pinned lake."""

    def __init__(self, lake: Lake, *, column: str | None = None, progress: Any = None):
        if not lake.read_only:
            raise VidlakeError("the gallery serves a pinned (read-only) lake; use gallery.pin()")
        self.lake = lake
        self.listing = Listing(lake, progress=progress)
        self.head_batch = self._head_batch()
        schema = lake.dataset("prompts").schema
        vectors = [f for f in schema if is_vector_field(f)]
        if column is not None and column not in [f.name for f in vectors]:
            raise VidlakeError(f"the prompts table has no vector column {column!r} (it has "
                               f"{', '.join(f.name for f in vectors) or 'none'})")
        pick = ([f for f in vectors if f.name == column] if column
                else [f for f in vectors if f.name == "embedding"] or vectors[:1])
        self.vector_field = pick[0] if pick else None
        meta = field_meta(self.vector_field) if self.vector_field is not None else {}
        self.embed_spec = meta.get("vidlake:spec") or meta.get("vidlake:model")
        if self.embed_spec in ("unknown", ""):
            self.embed_spec = None
        self.fts_index = any(d.name for d in lake.dataset("prompts").describe_indices()
                             if "prompt" in d.field_names and "Inverted" in d.type_url)
        self.fts_note: str | None = None
        self._embed_lock = threading.Lock()
        self._embedder: Any = None
        # Search candidates per (kind, query, k): the lake is pinned, so they never go stale,
        # and the next page of the same search costs no second search.
        self._searches = _LRU(256)
        self._videos: OrderedDict[tuple[int, str], VideoRef] = OrderedDict()
        self._videos_lock = threading.Lock()
        self._thumbs = ByteLRU(THUMB_CACHE_BYTES)

    def _head_batch(self) -> str | None:
        if self.lake.as_of_batch:
            return self.lake.as_of_batch
        done = [b.batch_id for b in self.lake.log() if b.status in ("committed", "chunk")]
        return done[-1] if done else None

    # ------------------------------------------------------------------ facets
    @property
    def sources(self) -> list[str]:
        return sorted(self.listing.sources)

    @property
    def models(self) -> list[str]:
        return sorted(self.listing.videos.models)

    @property
    def semantic_text(self) -> bool:
        return self.vector_field is not None and self.embed_spec is not None

    # ------------------------------------------------------------------ lists
    def list_page(self, lq: ListQuery) -> tuple[Page, list[dict[str, Any]]]:
        """The page `lq` asks for and its display rows (`rows`)."""
        search = self._search(lq)
        if search is None:
            page = self.listing.page(lq)
        else:
            pos, scores = self._searches.get(*search)
            page = self.listing.ranked_page(lq, pos, scores)
        return page, self.rows(page.positions, page.scores)

    def search_ready(self, lq: ListQuery) -> bool:
        """Whether `list_page(lq)` is memory work only: no search, or its candidates cached."""
        search = self._search(lq)
        return search is None or search[0] in self._searches

    def run_search(self, lq: ListQuery) -> None:
        """Run and cache the search behind `lq` (the part of a page that takes a while:
        a server runs it on a worker thread, then `list_page` off the cache)."""
        search = self._search(lq)
        if search is not None:
            self._searches.get(*search)

    def _search(self, lq: ListQuery
                ) -> tuple[tuple[str, str, int], Callable[[], tuple[np.ndarray, np.ndarray]]] | None:
        """The cache key and the search behind `lq`, None when it does not search. Full text
        is Lance's BM25 search on the prompt's INVERTED index (without a usable index, a
        case-insensitive substring match through DuckDB, a bound parameter); semantic is a
        vector search by the embedded text or by a prompt's own vector."""
        if not lq.searching:
            return None
        k = self._candidates(lq)
        q = lq.q
        if lq.like is None and lq.mode != "semantic":
            return ("text", q, k), lambda: self._full_text_search(q, k)
        if self.vector_field is None:
            raise SearchUnavailable("this lake has no embeddings, so there is no semantic "
                                    "search (run `vidlake embed`); full-text search works")
        like = lq.like
        if like is not None:
            return ("like", like, k), lambda: self._semantic_search(k, None, like)
        return ("semantic", q, k), lambda: self._semantic_search(k, q, None)

    def rows(self, positions: list[int], scores: dict[int, float] | None = None
             ) -> list[dict[str, Any]]:
        """Display rows for `positions` (`Listing.display`, from memory) plus each prompt's
        models and its search score."""
        out = self.listing.display(positions)
        for row in out:
            pos = row["position"]
            row["models"] = [m for m, _ in self.listing.videos.of_prompt(pos)]
            row["score"] = (scores or {}).get(pos)
        return out

    def _candidates(self, lq: ListQuery) -> int:
        """How many matches to rank: twice what the page needs, in steps (so the next pages
        of one search reuse its cached candidates)."""
        need = 2 * (lq.offset + lq.per_page + 1)
        return next((k for k in CANDIDATE_STEPS if k >= need), MAX_CANDIDATES)

    def _full_text_search(self, q: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        uuids: list[str] | None = None
        scores: np.ndarray | None = None
        if self.fts_index:
            try:
                ds = self.lake.dataset("prompts")
                if self.listing.addressable:
                    # row addresses, not uuids: no take of k random rows (~5 ms of CPU)
                    t = ds.to_table(full_text_query=q, columns=["_score"],
                                    with_row_address=True, limit=k)
                    return (self.listing.positions_of_addresses(t.column("_rowaddr")),
                            t.column("_score").to_numpy().astype(np.float64))
                t = ds.to_table(full_text_query=q, columns=["uuid", "_score"], limit=k)
                uuids = t.column("uuid").to_pylist()
                scores = t.column("_score").to_numpy().astype(np.float64)
            except (ValueError, OSError, RuntimeError) as exc:
                # an index that cannot be read (see docs/web.md) must not take search down
                self.fts_note = f"full-text index unusable ({str(exc).splitlines()[0][:160]})"
                self.fts_index = False
        if uuids is None:
            t = self.lake.query(
                "SELECT uuid FROM prompts WHERE contains(lower(prompt), lower(?)) "
                "ORDER BY time DESC NULLS LAST LIMIT ?", [q, k])
            uuids = t.column("uuid").to_pylist()
            scores = np.zeros(len(uuids))
        pos = self.listing.positions_of(uuids, verify=False) if uuids else np.empty(0, np.int64)
        assert scores is not None
        return pos, scores

    def _semantic_search(self, k: int, text: str | None, uuid: str | None
                         ) -> tuple[np.ndarray, np.ndarray]:
        from ..index import similar

        assert self.vector_field is not None
        column = self.vector_field.name
        if uuid is not None:
            pos = self.listing.position(uuid)
            if pos is None:
                raise NotFound(f"no prompt {uuid} in this lake")
            vec = self.lake.dataset("prompts").take([pos], columns=[column]).column(0)[0].as_py()
            if vec is None:
                raise SearchUnavailable(f"prompt {uuid} has no {column} vector yet, so there "
                                        "are no prompts like it to show")
            res = similar(self.lake, vector=vec, k=k + 1, column=column, columns=["uuid"])
        else:
            assert text is not None
            res = similar(self.lake, vector=self.embed_query(text), k=k, column=column,
                          columns=["uuid"])
        uuids = res.column("uuid").to_pylist()
        sims = res.column("similarity").to_numpy().astype(np.float64)
        if uuid is not None:
            keep = np.array([u != uuid for u in uuids], bool)
            uuids = [u for u, ok in zip(uuids, keep, strict=True) if ok]
            sims = sims[keep]
        pos_arr = self.listing.positions_of(uuids, verify=False) if uuids else np.empty(0, np.int64)
        return pos_arr, sims

    def embed_query(self, text: str) -> np.ndarray:
        """The query embedded by the model that filled the vector column (loaded once)."""
        if not self.semantic_text:
            raise SearchUnavailable(
                "the embedding column does not say which model made it, so a text cannot be "
                "embedded the same way; use 'prompts like this one' on a prompt instead")
        with self._embed_lock:
            if self._embedder is None:
                from ..enrich import resolve

                assert self.embed_spec is not None and self.vector_field is not None
                enr, variant = resolve(self.embed_spec, "embedder")
                options: dict[str, Any] = {}
                dims = field_meta(self.vector_field).get("vidlake:dimensions_param")
                if dims and dims not in ("null", "None"):
                    options["dimensions"] = int(dims)
                self._embedder = enr.open(variant, **options)
            res = self._embedder.embed([text])
        if not bool(res.ok[0]):
            why = res.failures[0].error if res.failures else "no vector returned"
            raise SearchUnavailable(f"embedding the query with {self.embed_spec} failed: {why}")
        return np.asarray(res.vectors[0], np.float32)

    def close(self) -> None:
        with self._embed_lock:
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None

    # ------------------------------------------------------------------ one prompt
    def prompt(self, uuid: str) -> dict[str, Any]:
        pos = self.listing.position(uuid)
        if pos is None:
            raise NotFound(f"no prompt {uuid} in this lake")
        ds = self.lake.dataset("prompts")
        cols = [f.name for f in ds.schema if not is_vector_field(f)]
        vec = self.vector_field.name if self.vector_field is not None else None
        row = self.listing.take([pos], cols + ([vec] if vec else [])).to_pylist()[0]
        row["has_vector"] = vec is not None and row.pop(vec) is not None
        row["position"] = pos
        try:
            row["extra_parsed"] = json.loads(row["extra"]) if row.get("extra") else None
        except ValueError:
            row["extra_parsed"] = None
        flags = row.get("flags") or {}
        row["flags_set"] = {k: v for k, v in flags.items() if v is not None}
        row["videos"] = self.videos_of(pos)
        dups, ndups = self.listing.near_duplicates(pos)
        row["duplicates"] = self.rows(dups)
        row["duplicates_total"] = ndups
        kept = int(self.listing.dup_of[pos])
        row["dup_of_row"] = self.rows([kept])[0] if kept >= 0 else None
        return row

    def videos_of(self, pos: int) -> list[dict[str, Any]]:
        vids = self.listing.videos.of_prompt(pos)
        if not vids:
            return []
        ds = self.lake.dataset("videos")
        names = [c for c in ("model", "codec", "width", "height", "fps", "num_frames",
                             "duration_s", "bytes", "source") if c in ds.schema.names]
        t = ds.take([off for _, off in vids], columns=names)
        return t.to_pylist()

    # ------------------------------------------------------------------ bytes
    def _video_offset(self, uuid: str, model: str) -> tuple[int, int]:
        pos = self.listing.position(uuid)
        off = self.listing.videos.find(pos, model) if pos is not None else None
        if pos is None or off is None:
            raise NotFound(f"no {model} video for prompt {uuid} in this lake")
        return pos, off

    def cached_video(self, uuid: str, model: str) -> VideoRef | None:
        """The clip's `VideoRef` if it is in memory (no Lance read); NotFound if there is none."""
        pos, _off = self._video_offset(uuid, model)
        with self._videos_lock:
            ref = self._videos.get((pos, model))
            if ref is not None:
                self._videos.move_to_end((pos, model))
            return ref

    def video(self, uuid: str, model: str) -> VideoRef:
        """Where the clip is, its size, ETag and media type (read once, then kept)."""
        ref = self.cached_video(uuid, model)
        if ref is not None:
            return ref
        pos, off = self._video_offset(uuid, model)
        key = (pos, model)
        ds = self.lake.dataset("videos")
        meta = ds.take([off], columns=["sha256", "bytes"]).to_pylist()[0]
        blob = self.open_blob(off)
        size = blob.size()
        head = blob.read_range(0, min(64, size)) if size else b""
        sha = meta.get("sha256")
        etag = f'"{sha}"' if sha else f'"{model}-{uuid}-{size}"'
        ref = VideoRef(model, off, size, etag, sniff_video_type(head), blob)
        with self._videos_lock:
            self._videos[key] = ref
            while len(self._videos) > 4096:
                self._videos.popitem(last=False)
        return ref

    def open_blob(self, offset: int) -> Any:
        blobs = self.lake.dataset("videos").take_blobs(VIDEO_BLOB_COLUMN, indices=[offset])
        if not blobs or blobs[0] is None:
            raise NotFound("that video has no bytes stored")
        return blobs[0]

    def read_video(self, ref: VideoRef, start: int, length: int) -> bytes:
        """`length` bytes of the clip from `start` (one positioned read of its open blob)."""
        data = ref.blob.read_range(start, length) if length else b""
        if len(data) != length:
            raise OSError(f"the stored {ref.model} video at row {ref.offset} ended "
                          f"{length - len(data)} bytes early")
        return bytes(data)

    def cached_thumbnail(self, uuid: str, model: str) -> tuple[bytes, str, str] | None:
        """(bytes, media type, ETag) of the preview if it is in memory; NotFound if none."""
        pos, _off = self._video_offset(uuid, model)
        return self._thumbs.get((pos, model))

    def thumbnail(self, uuid: str, model: str) -> tuple[bytes, str, str]:
        """(bytes, media type, ETag) of the clip's stored preview image (kept in an LRU)."""
        pos, off = self._video_offset(uuid, model)
        hit = self._thumbs.get((pos, model))
        if hit is not None:
            return hit
        data = self.lake.dataset("videos").take([off], columns=["thumbnail"]).column(0)[0].as_py()
        ctype = sniff_image_type(data or b"")
        if not data or ctype is None:
            raise NotFound(f"the {model} video of {uuid} has no thumbnail")
        import hashlib

        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        value = (data, ctype, etag)
        self._thumbs.put((pos, model), value, len(data))
        return value
