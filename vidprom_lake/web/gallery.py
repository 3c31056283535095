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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import LakeNotFound, VidlakeError
from ..schema import NSFW_LABELS, VIDEO_BLOB_COLUMN, field_meta, is_vector_field
from .listing import _LRU, Listing, Page
from .params import ListQuery
from .ranges import sniff_image_type, sniff_video_type

if TYPE_CHECKING:
    from ..lake import Lake

LIST_COLUMNS = ["uuid", "prompt", "time", "source", *NSFW_LABELS, "unique_semantic", "dup_of"]
PREVIEW_CHARS = 400
#: Search candidates ranked before filtering: at least this many, more on later pages.
MIN_CANDIDATES = 200
MAX_CANDIDATES = 2000


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
        if lq.like is not None:
            page = self._semantic(lq, uuid=lq.like)
        elif lq.q and lq.mode == "semantic":
            page = self._semantic(lq, text=lq.q)
        elif lq.q:
            page = self._full_text(lq)
        else:
            page = self.listing.page(lq)
        return page, self.rows(page.positions, page.scores)

    def rows(self, positions: list[int], scores: dict[int, float] | None = None
             ) -> list[dict[str, Any]]:
        """Display rows for `positions`: the listing columns plus models, preview, score."""
        if not positions:
            return []
        names = set(self.lake.dataset("prompts").schema.names)
        t = self.listing.take(positions, [c for c in LIST_COLUMNS if c in names])
        out = []
        for pos, row in zip(positions, t.to_pylist(), strict=True):
            text = row["prompt"] or ""
            row["preview"] = text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
            row["chars"] = len(text)
            row["models"] = [m for m, _ in self.listing.videos.of_prompt(pos)]
            row["nsfw_top"] = max(((k, row.get(k) or 0.0) for k in NSFW_LABELS),
                                  key=lambda kv: kv[1])
            row["score"] = (scores or {}).get(pos)
            row["position"] = pos
            out.append(row)
        return out

    def _candidates(self, lq: ListQuery) -> int:
        """How many matches to rank: twice what the page needs, in steps (so the next pages
        of one search reuse its cached candidates)."""
        need = 2 * (lq.offset + lq.per_page + 1)
        step = 500
        return int(min(MAX_CANDIDATES, max(MIN_CANDIDATES, -(-need // step) * step)))

    def _full_text(self, lq: ListQuery) -> Page:
        """Lance's full-text (BM25) search on the prompt's INVERTED index; without a usable
        index, a case-insensitive substring match through DuckDB (a bound parameter)."""
        k = self._candidates(lq)
        pos, scores = self._searches.get(("text", lq.q, k), lambda: self._full_text_search(lq.q, k))
        return self.listing.ranked_page(lq, pos, scores)

    def _full_text_search(self, q: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        uuids: list[str] | None = None
        scores: np.ndarray | None = None
        if self.fts_index:
            try:
                t = self.lake.dataset("prompts").to_table(
                    full_text_query=q, columns=["uuid", "_score"], limit=k)
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

    def _semantic(self, lq: ListQuery, *, text: str | None = None, uuid: str | None = None
                  ) -> Page:
        if self.vector_field is None:
            raise SearchUnavailable("this lake has no embeddings, so there is no semantic "
                                    "search (run `vidlake embed`); full-text search works")
        k = self._candidates(lq)
        key = ("like", uuid, k) if uuid is not None else ("semantic", text, k)
        pos_arr, sims = self._searches.get(key, lambda: self._semantic_search(k, text, uuid))
        return self.listing.ranked_page(lq, pos_arr, sims)

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
        row = self.listing.take([pos], cols).to_pylist()[0]
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
        row["has_vector"] = False
        if self.vector_field is not None:
            v = ds.take([pos], columns=[self.vector_field.name]).column(0)[0]
            row["has_vector"] = v.is_valid
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
    def video(self, uuid: str, model: str) -> VideoRef:
        pos = self.listing.position(uuid)
        off = self.listing.videos.find(pos, model) if pos is not None else None
        if pos is None or off is None:
            raise NotFound(f"no {model} video for prompt {uuid} in this lake")
        key = (pos, model)
        with self._videos_lock:
            ref = self._videos.get(key)
            if ref is not None:
                self._videos.move_to_end(key)
                return ref
        ds = self.lake.dataset("videos")
        meta = ds.take([off], columns=["sha256", "bytes"]).to_pylist()[0]
        blob = self.open_blob(off)
        try:
            size = blob.size()
            head = blob.read_range(0, min(64, size)) if size else b""
        finally:
            blob.close()
        sha = meta.get("sha256")
        etag = f'"{sha}"' if sha else f'"{model}-{uuid}-{size}"'
        ref = VideoRef(model, off, size, etag, sniff_video_type(head))
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

    def thumbnail(self, uuid: str, model: str) -> tuple[bytes, str]:
        pos = self.listing.position(uuid)
        off = self.listing.videos.find(pos, model) if pos is not None else None
        if pos is None or off is None:
            raise NotFound(f"no {model} video for prompt {uuid} in this lake")
        data = self.lake.dataset("videos").take([off], columns=["thumbnail"]).column(0)[0].as_py()
        ctype = sniff_image_type(data or b"")
        if not data or ctype is None:
            raise NotFound(f"the {model} video of {uuid} has no thumbnail")
        return data, ctype
