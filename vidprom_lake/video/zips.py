"""Zip archives for video import, streamed member by member, never extracted to disk.

OpenVid-1M ships its clips in ``OpenVid_part{N}.zip``; the largest parts are cut into pieces
``OpenVid_part{N}_partaa``, ``..._partab`` (``split -b``) that concatenate into one zip. Those
pieces are read as one archive through `ConcatFile`, a seekable view over the pieces in name
order, so nothing is joined on disk. VidGen-1M ships ``VidGen_video_{N}.zip``.

`source_mapping` matches members to prompt rows of a seed dataset (``--source openvid``): the
member's base name (``---_iRTHryQ_13_0to241.mp4``), or that name without its extension
(VidGen's ``Eep9uvenxAo-Scene-0030.mp4``), is looked up as the ``source_id`` of that source's
rows, which gives the uuid. The video's ``model`` column is the source name.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..lake import Lake

PART_RE = re.compile(r"^(?P<stem>.+)_part(?P<piece>[a-z]{2,3})$")
SEED_SOURCES = ("openvid", "vidgen", "miradata")


class ConcatFile(io.RawIOBase):
    """A read-only, seekable file over several files laid end to end."""

    def __init__(self, paths: list[str]):
        super().__init__()
        self.paths = paths
        self.sizes = [os.path.getsize(p) for p in paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(paths))]
        self.size = sum(self.sizes)
        self.pos = 0
        self._fh: list[Any] = [None] * len(paths)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _piece(self, pos: int) -> int:
        i = len(self.starts) - 1
        while i > 0 and self.starts[i] > pos:
            i -= 1
        return i

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        done = 0
        while done < len(mv) and self.pos < self.size:
            i = self._piece(self.pos)
            fh = self._fh[i]
            if fh is None:
                fh = self._fh[i] = open(self.paths[i], "rb")  # noqa: SIM115 (closed in close())
            off = self.pos - self.starts[i]
            fh.seek(off)
            want = min(len(mv) - done, self.sizes[i] - off)
            n = fh.readinto(mv[done:done + want])
            if not n:
                break
            done += n
            self.pos += n
        return done

    def close(self) -> None:
        for fh in self._fh:
            if fh is not None:
                fh.close()
        self._fh = [None] * len(self.paths)
        super().close()


@dataclass
class ZipSource:
    """One zip archive: a single file, or the ordered pieces of a split one."""

    parts: list[str]

    @property
    def label(self) -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        stem = PART_RE.match(os.path.basename(self.parts[0]))
        name = stem.group("stem") if stem else os.path.basename(self.parts[0])
        return os.path.join(os.path.dirname(self.parts[0]), f"{name}.zip "
                            f"({len(self.parts)} pieces)")

    def open(self) -> zipfile.ZipFile:
        fobj: Any = (ConcatFile(self.parts) if len(self.parts) > 1 else open(self.parts[0], "rb"))  # noqa: SIM115
        try:
            return zipfile.ZipFile(io.BufferedReader(fobj, 1 << 20)
                                   if isinstance(fobj, ConcatFile) else fobj)
        except (zipfile.BadZipFile, OSError) as exc:
            fobj.close()
            what = ("the pieces " + ", ".join(os.path.basename(p) for p in self.parts)
                    + " do not form a zip archive (a piece missing or out of order?)"
                    if len(self.parts) > 1 else "not a readable zip archive")
            raise InputError(f"{what}: {exc}", path=self.parts[0]) from None

    def raw(self) -> Any:
        """A plain seekable file over the archive's bytes (the pieces laid end to end)."""
        return ConcatFile(self.parts) if len(self.parts) > 1 else open(self.parts[0], "rb")  # noqa: SIM115

    def members(self) -> Iterator[tuple[str, str, Callable[[], bytes] | None, str, int | None,
                                        Callable[[memoryview], None] | None]]:
        """(container, member name, reader or None, kind, size, readinto) in archive order.

        Stored (uncompressed) members, as OpenVid's and VidGen's are, also come with their
        size and a `readinto` that reads them straight from the archive into a caller's
        buffer and checks their CRC-32; deflated members are read by `zipfile`.
        """
        zf = self.open()
        container = self.label
        with zf, self.raw() as raw:
            infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
            for info in infos:
                if info.is_dir():
                    continue
                mode = info.external_attr >> 16
                if mode and stat.S_ISLNK(mode):
                    yield container, info.filename, None, "symlink", None, None
                elif mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
                    yield container, info.filename, None, "special file", None, None
                elif info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                    yield (container, info.filename, _reader(zf, info), "file", info.file_size,
                           functools.partial(_stored_into, raw, info))
                else:
                    yield container, info.filename, _reader(zf, info), "file", None, None


def _reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        from .importer import DamagedMember

        try:
            return zf.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error) as exc:
            raise DamagedMember(f"damaged in the zip: {exc}") from None

    return read


def _stored_into(raw: Any, info: zipfile.ZipInfo, view: memoryview) -> None:
    """Read a stored member's bytes into `view` (its exact length) and check its CRC-32."""
    from .importer import DamagedMember

    raw.seek(info.header_offset)
    head = raw.read(30)
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise DamagedMember("damaged in the zip: bad local file header")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    raw.seek(info.header_offset + 30 + name_len + extra_len)
    done, size = 0, info.file_size
    while done < size:
        n = raw.readinto(view[done:size])
        if not n:
            raise DamagedMember(f"cut off in the zip: {done:,} of {size:,} bytes present")
        done += n
    if zlib.crc32(view) != info.CRC:
        raise DamagedMember("damaged in the zip: CRC-32 does not match")


def is_zip_name(path: str) -> bool:
    return path.lower().endswith(".zip") or bool(PART_RE.match(os.path.basename(path)))


def _is_zip(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    if is_zip_name(path):
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def expand(paths: Iterable[str | os.PathLike[str]]) -> list[str | ZipSource]:
    """The paths with zips (and split-zip pieces, grouped in name order) as `ZipSource`s."""
    out: list[str | ZipSource] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    for p in paths:
        path = os.fspath(p)
        m = PART_RE.match(os.path.basename(path)) if os.path.isfile(path) else None
        if m:
            key = os.path.join(os.path.dirname(path), m.group("stem"))
            if key not in groups:
                groups[key] = []
                out.append(key)  # placeholder, replaced below
            groups[key].append((m.group("piece"), path))
        elif _is_zip(path):
            out.append(ZipSource([path]))
        else:
            out.append(path)
    for i, item in enumerate(out):
        if isinstance(item, str) and item in groups:
            pieces = sorted(groups[item])
            names = [pc for pc, _ in pieces]
            expected = [_piece_name(k, len(names[0])) for k in range(len(names))]
            if names != expected:
                missing = sorted(set(expected) - set(names))
                raise InputError(
                    f"split zip pieces {', '.join(names)} are not consecutive"
                    + (f" (missing {', '.join(missing)})" if missing else "")
                    + "; pass every piece", path=pieces[0][1])
            out[i] = ZipSource([p for _, p in pieces])
    return out


def _piece_name(k: int, width: int) -> str:
    s = ""
    for _ in range(width):
        s = chr(ord("a") + k % 26) + s
        k //= 26
    return s


# ---------------------------------------------------------------------- seed-dataset matching
@dataclass
class SourceMapping:
    """Member name -> (uuid, model) through the source_id of a seed dataset's prompt rows.

    Quacks like `importer.Mapping` (``get``, ``path``, ``rejected``, ``by_name``, ``used``);
    its ``by_name`` is empty so the importer does not list every row without a video as a
    rejected file: `rows_without_videos` counts those instead.
    """

    source: str
    ids: dict[str, str]
    path: str = ""
    rejected: list[Any] = field(default_factory=list)
    by_name: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    matched: int = 0

    def get(self, name: str) -> tuple[str, str | None] | None:
        base = PurePosixPath(name.replace("\\", "/")).name
        uuid = self.ids.get(base)
        if uuid is None:
            stem, dot, _ = base.rpartition(".")
            uuid = self.ids.get(stem) if dot else None
        if uuid is None:
            return None
        self.matched += 1
        return uuid, None


@dataclass
class SortedSourceMapping:
    """A `SourceMapping` as two sorted numpy arrays (clip id, uuid): what Ray workers get.

    Ray's object store hands numpy arrays to every actor of a node without a copy, so a
    1M-clip source costs one shared copy per node instead of a 1M-entry dict in each actor.
    Same lookups as `SourceMapping.get`.
    """

    source: str
    keys: Any  # np.ndarray of str, sorted
    uuids: Any  # np.ndarray of str, uuid of keys[i]
    path: str = ""
    rejected: list[Any] = field(default_factory=list)
    by_name: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    matched: int = 0

    @classmethod
    def of(cls, mp: SourceMapping) -> SortedSourceMapping:
        import numpy as np

        keys = np.array(sorted(mp.ids), dtype=str) if mp.ids else np.array([], dtype="U1")
        uuids = np.array([mp.ids[k] for k in keys.tolist()], dtype="U36")
        return cls(mp.source, keys, uuids, path=mp.path)

    def _find(self, key: str) -> str | None:
        import numpy as np

        i = int(np.searchsorted(self.keys, key))
        return str(self.uuids[i]) if i < len(self.keys) and self.keys[i] == key else None

    def get(self, name: str) -> tuple[str, str | None] | None:
        base = PurePosixPath(name.replace("\\", "/")).name
        uuid = self._find(base)
        if uuid is None:
            stem, dot, _ = base.rpartition(".")
            uuid = self._find(stem) if dot else None
        if uuid is None:
            return None
        self.matched += 1
        return uuid, None


def source_mapping(lake: Lake, source: str,
                   paths: Iterable[str | os.PathLike[str]] | None = None) -> SourceMapping:
    """source_id -> uuid of the prompt rows of `source` that the import can meet.

    When every path is a zip (or split zip), the member names are read from the central
    directories first and only the rows whose clip id is one of them are loaded, so a
    1M-row source costs one columnar scan of its ids, not a 1M-entry dictionary.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    ds = lake.dataset("prompts")
    flt = (f"source = '{source.replace(chr(39), chr(39) * 2)}' AND source_id IS NOT NULL")
    t = ds.to_table(columns=["source_id", "uuid"], filter=flt)
    if not t.num_rows:
        raise InputError(f"the lake has no {source} rows with a clip id; ingest the {source} "
                         f"metadata first (vidlake ingest ... --format {source})")
    items = expand(paths) if paths is not None else []
    if items and all(isinstance(i, ZipSource) for i in items):
        keys: set[str] = set()
        for item in items:
            assert isinstance(item, ZipSource)
            with item.open() as zf:
                for name in zf.namelist():
                    base = PurePosixPath(name.replace("\\", "/")).name
                    keys.add(base)
                    stem, dot, _ = base.rpartition(".")
                    if dot:
                        keys.add(stem)
        t = t.filter(pc.is_in(t.column("source_id"), value_set=pa.array(sorted(keys), pa.string())))
    return SourceMapping(source, dict(zip(t.column("source_id").to_pylist(),
                                          t.column("uuid").to_pylist(), strict=True)),
                         path=f"{source} rows in the lake")


def rows_without_videos(lake: Lake, source: str, model: str | None = None) -> int:
    """Rows of `source` that have no video (of `model`, default the source name) in the lake."""
    import pyarrow.compute as pc

    model = model or source
    pu = lake.dataset("prompts").to_table(
        columns=["uuid"], filter=f"source = '{source.replace(chr(39), chr(39) * 2)}'").column("uuid")
    vu = lake.dataset("videos").to_table(
        columns=["uuid"], filter=f"model = '{model.replace(chr(39), chr(39) * 2)}'").column("uuid")
    if not len(vu):
        return len(pu)
    have = pc.is_in(pu, value_set=pc.unique(vu.combine_chunks()))
    return len(pu) - int(pc.sum(have).as_py() or 0)
