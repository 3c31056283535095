"""Ingest: one registered reader per source format, detected from the file when not named.

Built-in formats register through the same table third-party packages use (the
``vidprom_lake.ingest`` entry-point group: a callable ``(lake, path, options, report) ->
IngestReport``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, VidlakeError
from .pipeline import IngestOptions, IngestReport

if TYPE_CHECKING:
    from ..lake import Lake

Reader = Callable[["Lake", str, IngestOptions, IngestReport], IngestReport]


@dataclass(frozen=True)
class Format:
    name: str
    reader: Reader
    description: str


_FORMATS: dict[str, Format] = {}


def register(name: str, description: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        _FORMATS[name] = Format(name, fn, description)
        return fn

    return deco


def formats() -> dict[str, Format]:
    _load_entry_points()
    return dict(_FORMATS)


_EP_LOADED = False


def _load_entry_points() -> None:
    global _EP_LOADED
    if _EP_LOADED:
        return
    _EP_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="vidprom_lake.ingest"):
        if ep.name in _FORMATS:
            continue
        fn = ep.load()
        _FORMATS[ep.name] = Format(ep.name, fn, (fn.__doc__ or "").strip().split("\n")[0])


def _prompts(kind: str | None) -> Reader:
    def reader(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
        from . import sources as f
        from .pipeline import run

        if kind == "vidprom":
            q = f.vidprom_csv(path, opts, report)
        elif kind == "diffusiondb":
            q = f.diffusiondb(path, opts, report)
        else:
            assert kind is not None
            q = f.generic(path, opts, report, kind)
        return run(lake, q, path, report.format, opts, report)

    return reader


def _hdf5(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
    from .hdf5 import attach

    if opts.dry_run:
        raise VidlakeError("--dry-run is not supported for HDF5 embeddings yet")
    return attach(lake, path, opts, report)


register("vidprom", "VidProM prompts CSV (uuid, prompt, time, six NSFW scores)")(_prompts("vidprom"))
register("vidprom-embed", "HDF5 embeddings (datasets uuid, embeddings) attached by uuid")(_hdf5)
register("diffusiondb", "DiffusionDB metadata.parquet (one row per image; unique prompts kept)")(
    _prompts("diffusiondb"))
register("csv", "any CSV with a prompt column (--prompt-column, --time-column ...)")(_prompts("csv"))
register("jsonl", "JSON lines with a prompt field")(_prompts("jsonl"))
register("json", "a JSON array of records with a prompt field")(_prompts("json"))
register("parquet", "any Parquet file with a prompt column")(_prompts("parquet"))


def _discord(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
    from .discord import read_exports

    return read_exports(lake, path, opts, report)


register("discord-html", "DiscordChatExporter HTML export(s): bot-reply and /create prompts")(
    _discord)
register("discord-json", "DiscordChatExporter JSON export(s): bot-reply and /create prompts")(
    _discord)


def _seed(kind: str) -> Reader:
    def reader(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
        from .seed_datasets import reader as seed_reader

        return seed_reader(kind)(lake, path, opts, report)

    return reader


register("openvid", "OpenVid-1M.csv / OpenVidHD.csv video captions (uuid5 of openvid:<video>)")(
    _seed("openvid"))
register("vidgen", "VidGen_1M_video_caption.json [{vid, caption}] (uuid5 of vidgen:<vid>)")(
    _seed("vidgen"))
register("miradata", "MiraData CSV: dense caption, six captions, frame range (uuid5 of miradata:<clip>)")(
    _seed("miradata"))


def detect(path: str) -> str:
    """Guess the format from the name and the first bytes."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        from .discord import detect_folder

        return detect_folder(path)
    if name.endswith((".html", ".htm", ".json")):
        from .discord import sniff

        found = sniff(path)
        if found:
            return found
        if name.endswith((".html", ".htm")):
            raise InputError("not a DiscordChatExporter HTML export (no chatlog markup)",
                             path=path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", path=path) from exc
    if head.startswith(b"\x89HDF\r\n\x1a\n") or name.endswith((".h5", ".hdf5")):
        return "vidprom-embed"
    if head.startswith(b"PAR1") or name.endswith(".parquet"):
        if b"image_name" in head or "diffusiondb" in name or name == "metadata.parquet":
            return "diffusiondb"
        try:
            import pyarrow.parquet as pq

            names = set(pq.read_schema(path).names)
            if {"image_name", "prompt", "timestamp", "cfg"} <= names:
                return "diffusiondb"
        except Exception:
            pass
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        if head.lstrip().startswith(b"["):
            # VidGen-1M: a list of {"vid": ..., "caption": ...}
            start = head.lstrip()[1:].lstrip()
            if start.startswith(b"{") and b'"vid"' in head and b'"caption"' in head:
                return "vidgen"
            return "json"
        return "jsonl"
    if name.endswith((".csv", ".tsv")) or b"," in head.split(b"\n", 1)[0]:
        first = head.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").lower()
        cols = [c.strip().strip('"') for c in first.split(",")]
        if cols[:3] == ["uuid", "prompt", "time"]:
            return "vidprom"
        names = {re.sub(r"[^0-9a-z]+", "_", c).strip("_") for c in cols}
        if {"video", "caption"} <= names and names & {"aesthetic_score", "motion_score",
                                                     "temporal_consistency_score"}:
            return "openvid"
        if {"video_id", "dense_caption"} <= names and names & {"start_frame", "short_caption"}:
            return "miradata"
        return "csv"
    raise InputError(
        f"cannot tell the format; pass --format ({', '.join(sorted(formats()))})", path=path)


def ingest(
    lake: Lake, path: str | os.PathLike[str], *, format: str | None = None, **options: Any
) -> IngestReport:
    """Ingest one file into `lake` as one batch and return what happened."""
    path = str(path)
    if not Path(path).exists():
        raise InputError("no such file", path=path)
    fmt = format or detect(path)
    if Path(path).is_dir() and fmt not in ("discord-html", "discord-json"):
        raise InputError("is a folder; only folders of Discord exports can be ingested whole; "
                         "name the files to ingest", path=path)
    # a built-in format wins over a plug-in of the same name, so the plug-ins (scanning the
    # installed packages' entry points costs ~70 ms) are looked up only for another name
    table = _FORMATS if fmt in _FORMATS else formats()
    if fmt not in table:
        raise VidlakeError(f"unknown format {fmt!r}; known formats: {', '.join(sorted(table))}")
    unknown = set(options) - set(IngestOptions.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown ingest option(s): {', '.join(sorted(unknown))}")
    opts = IngestOptions(**options)
    report = IngestReport(path=path, format=fmt)
    return table[fmt].reader(lake, path, opts, report)


__all__ = ["IngestOptions", "IngestReport", "detect", "formats", "ingest", "register"]
