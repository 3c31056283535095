"""Prompts from DiscordChatExporter exports (HTML or JSON), the way VidProM was collected.

Pipeline, per ingest call (one file, or every export in a folder, as one batch):

1. **Parse** each export as a stream of messages (`discord_html`, `discord_json`): one block of
   the file and one message in memory at a time.
2. **Extract** prompt occurrences (`Extractor`): a message by the generation bot (``--bot``,
   default ``Pika``) whose text matches the prompt pattern (``--prompt-pattern``; by default
   Pika's reply ``**<prompt> -ar 16:9 -motion 4 ...** - @user``), or a ``/create prompt: ...``
   command by anyone. A bot reply split over several messages is joined (parts joined by a
   newline); the bot's follow-up messages that only carry the video, or that reply to a command,
   add their attachments to the occurrence. The raw prompt is the matched text exactly as the
   export holds it (HTML source for HTML exports, the content string for JSON exports): that
   text is what ``uuid5(NAMESPACE_DNS, raw)`` is computed from, as in VidProM.
3. **Filter** each occurrence: image-to-video requests (an image attachment on the request or
   the reply, or an ``image:`` option) are dropped unless ``keep_image_prompts``; ``since`` /
   ``until`` bound the message time. Every drop is counted by reason.
4. **Spill** the surviving occurrences (small rows) to a temporary Parquet file, so memory does
   not grow with the number of prompts, then **aggregate** them in DuckDB by uuid: the earliest
   occurrence (time, then file order) gives the row, ``occurrences`` counts them all, and the
   same ``clean_select`` expressions as every other format compute ``prompt_clean``
   and ``flags``. Nothing is written until every file parsed cleanly.
5. **Append** the uuids the lake lacks in one `lake.batch("ingest")`.

Authors are stored as ``author_sha256``: HMAC-SHA-256 of the user's name keyed with
``author_salt`` (or ``$VIDLAKE_AUTHOR_SALT``), else plain SHA-256 of the name; never the name.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa

from ..errors import InputError, VidlakeError
from ..schema import PROMPTS_SCHEMA, TIME_TYPE
from .clean import clean_select, finish_clean, uuid5
from .pipeline import BATCH_ROWS, IngestOptions, IngestReport, LakeKeys, file_sha256

if TYPE_CHECKING:
    from ..lake import Lake

DEFAULT_BOT = "Pika"
#: Pika's reply: the prompt in bold (``**...**`` in JSON, ``<strong>...</strong>`` in HTML),
#: then `` - @user``. The prompt keeps its flags and trailers (``-ar 16:9 -motion 4``,
#: ``Message: 1 Attachment``, ``(Font: RETRO)``) and its spaces, exactly as written.
DEFAULT_PROMPT_PATTERN = (
    r"(?s)\A\s*(?:\*\*|<strong>)(?P<prompt>.+?)(?:\*\*|</strong>)"
    r"(?:\s+-\s+(?:<@!?\d+>|<span class=\"chatlog__markdown-mention\"|@).*)?\s*\Z"
)
#: A text command, by anyone: ``/create prompt: <prompt>`` (the options after it stay in the
#: prompt, as Pika echoed them; an ``image:`` option marks an image-to-video request).
COMMAND_PATTERN = r"(?s)\A\s*/(?:create|generate|animate)\s+prompt:\s?(?P<prompt>.+?)\s*\Z"
IMAGE_OPTION = re.compile(r"(?:^|\s)image:\s*\S", re.I)
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".avif")
SPLIT_WINDOW = timedelta(seconds=120)  # parts of one bot reply, and its follow-up video
SPLIT_MAX_PARTS = 16
OPEN_MAX = 4096  # occurrences still open to a later reply / attachment
OPEN_WINDOW = timedelta(minutes=30)
SPILL_ROWS = 4096
DISCORD_EPOCH_MS = 1_420_070_400_000
ENV_SALT = "VIDLAKE_AUTHOR_SALT"
FORMATS = ("discord-html", "discord-json")

REASONS = {
    "image_to_video": "image-to-video request (an image came with the prompt)",
    "before_since": "before --since",
    "after_until": "after --until",
    "empty_prompt": "empty prompt",
    "too_long": "prompt longer than --max-prompt-chars",
    "unmatched_bot_message": "bot message that does not match the prompt pattern",
}


# ---------------------------------------------------------------------------- model
@dataclass(slots=True)
class Attachment:
    url: str
    filename: str
    size: int | None
    content_type: str | None
    size_text: str | None = None  # HTML exports show sizes rounded ("1.2 MB")

    @property
    def is_image(self) -> bool:
        if self.content_type and self.content_type.startswith("image/"):
            return True
        return self.filename.lower().endswith(IMAGE_EXT)

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"url": self.url, "filename": self.filename, "size": self.size,
                             "content_type": self.content_type}
        if self.size_text is not None:
            d["size_text"] = self.size_text
        return d


@dataclass(slots=True)
class Message:
    """One exported message, the same for both formats (text in the format's own markup)."""

    id: str
    time: datetime  # UTC
    offset: str | None  # the export's UTC offset, "+02:00", when known
    time_text: str | None
    author: str
    author_full: str
    author_is_bot: bool
    content: str
    edited: bool
    attachments: list[Attachment]
    reply_to: str | None
    reply_author: str | None
    reply_deleted: bool
    interaction: str | None
    interaction_user: str | None
    mention: str | None
    system: bool


def snowflake_time(msg_id: str) -> datetime | None:
    """The UTC instant a Discord id was made (ids are snowflakes: ms since 2015 << 22)."""
    try:
        n = int(msg_id)
    except (TypeError, ValueError):
        return None
    if n < (1 << 32):
        return None
    return datetime.fromtimestamp(((n >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


@dataclass(slots=True)
class Occurrence:
    prompt: str
    msg: Message
    channel: str | None
    file: str
    author: str | None
    attachments: list[Attachment] = field(default_factory=list)
    request_attachments: list[Attachment] = field(default_factory=list)
    image_option: bool = False
    reply_id: str | None = None
    request_id: str | None = None
    command: str | None = None
    parts: list[str] = field(default_factory=list)
    edited: bool = False
    from_bot: bool = True


# ---------------------------------------------------------------------------- options
@dataclass
class Config:
    bot: str
    pattern: re.Pattern[str]
    command: re.Pattern[str]
    since: datetime | None
    until: datetime | None
    keep_images: bool
    salt: bytes | None
    max_chars: int
    skip_bad: bool
    source: str

    @classmethod
    def from_options(cls, opts: IngestOptions) -> Config:
        pat = opts.prompt_pattern or DEFAULT_PROMPT_PATTERN
        try:
            rx = re.compile(pat, re.M)
        except re.error as exc:
            raise VidlakeError(f"--prompt-pattern {pat!r} is not a valid regular expression: "
                               f"{exc}") from exc
        if "prompt" not in rx.groupindex and rx.groups == 0:
            raise VidlakeError(f"--prompt-pattern {pat!r} needs a group for the prompt: "
                               "(?P<prompt>...) or one plain (...) group")
        since = parse_when(opts.since, "--since", end=False)
        until = parse_when(opts.until, "--until", end=True)
        if since and until and since > until:
            raise VidlakeError(f"--since {opts.since} is after --until {opts.until}")
        salt = opts.author_salt if opts.author_salt is not None else os.environ.get(ENV_SALT)
        return cls(
            bot=(opts.bot if opts.bot is not None else DEFAULT_BOT).strip().lower(),
            pattern=rx, command=re.compile(COMMAND_PATTERN), since=since, until=until,
            keep_images=bool(opts.keep_image_prompts),
            salt=salt.encode() if salt else None, max_chars=opts.max_prompt_chars,
            skip_bad=opts.skip_bad, source=opts.source or "discord",
        )

    def is_bot(self, m: Message) -> bool:
        if not self.bot:
            return False
        names = (m.author, m.author_full, m.author_full.split("#")[0])
        return any(n and n.strip().lower() == self.bot for n in names)

    def author_hash(self, name: str | None) -> str | None:
        if not name:
            return None
        data = name.encode("utf-8")
        if self.salt:
            return hmac.new(self.salt, data, hashlib.sha256).hexdigest()
        return hashlib.sha256(data).hexdigest()


def parse_when(value: Any, option: str, *, end: bool) -> datetime | None:
    """A --since/--until bound as a UTC instant; a bare date covers that whole day."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
        if end:
            dt += timedelta(days=1) - timedelta(microseconds=1)
    else:
        text = str(value).strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise VidlakeError(f"{option} {text!r} is not a date or time; use YYYY-MM-DD or "
                               "YYYY-MM-DDTHH:MM[:SS][+HH:MM]") from exc
        if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            dt += timedelta(days=1) - timedelta(microseconds=1)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


# ---------------------------------------------------------------------------- report
@dataclass
class DiscordReport(IngestReport):
    files: int = 0
    messages: int = 0
    prompts: int = 0  # occurrences found, before filters
    occurrences_kept: int = 0
    unique_prompts: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, msg_id: str | None, file: str, detail: str = "") -> None:
        self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + 1
        if reason != "unmatched_bot_message":
            self.skip(None, f"{file}: message {msg_id}: {REASONS[reason]}{detail}")

    def counts(self) -> dict[str, Any]:
        d = super().counts()
        d.update({"files": self.files, "messages": self.messages, "prompts": self.prompts,
                  "occurrences_kept": self.occurrences_kept,
                  "unique_prompts": self.unique_prompts,
                  "skipped_by_reason": dict(sorted(self.skipped_by_reason.items()))})
        return d

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped_by_reason.items()))
        return (f"{self.files} file(s), {self.messages:,} messages, {self.prompts:,} prompts "
                f"({self.unique_prompts:,} unique after filters); skipped by reason: "
                f"{reasons or 'none'}")


# ---------------------------------------------------------------------------- extraction
class Extractor:
    """Turns the message stream of one export into prompt occurrences (see module doc)."""

    def __init__(self, cfg: Config, report: DiscordReport, file: str, channel: str | None,
                 emit: Callable[[Occurrence], None]):
        self.cfg = cfg
        self.report = report
        self.file = file
        self.channel = channel
        self.emit = emit
        self.open: OrderedDict[str, Occurrence] = OrderedDict()  # by message id (and reply id)
        self.pending: dict[str, list[Message]] = {}  # bot -> parts of a reply not yet matched
        self.last_bot: dict[str, Occurrence] = {}

    # -- helpers
    def _match(self, rx: re.Pattern[str], text: str) -> str | None:
        m = rx.search(text)
        if m is None:
            return None
        return m.group("prompt") if "prompt" in rx.groupindex else m.group(1)

    def _new(self, prompt: str, msg: Message, author: str | None, *, from_bot: bool) -> Occurrence:
        self.report.prompts += 1
        occ = Occurrence(prompt=prompt, msg=msg, channel=self.channel, file=self.file,
                         author=author, edited=msg.edited, from_bot=from_bot,
                         command=msg.interaction)
        if from_bot:
            occ.attachments.extend(msg.attachments)
            occ.reply_id = msg.id
            occ.request_id = msg.reply_to
        else:
            occ.request_attachments.extend(msg.attachments)
            occ.image_option = bool(IMAGE_OPTION.search(prompt))
        self.open[msg.id] = occ
        return occ

    def _expire(self, now: datetime) -> None:
        while self.open:
            key, occ = next(iter(self.open.items()))
            if len(self.open) <= OPEN_MAX and now - occ.msg.time <= OPEN_WINDOW:
                break
            self.open.popitem(last=False)
            if key == occ.msg.id:
                self._flush(occ)

    def _flush(self, occ: Occurrence) -> None:
        self.emit(occ)

    def _drop_pending(self, bot: str) -> None:
        for _ in self.pending.pop(bot, []):
            self.report.drop("unmatched_bot_message", None, self.file)

    # -- the state machine
    def feed(self, msg: Message) -> None:
        self.report.messages += 1
        if msg.system:
            return
        if self.open and (self.report.messages & 63 == 0 or len(self.open) > OPEN_MAX):
            self._expire(msg.time)
        cfg = self.cfg
        if cfg.is_bot(msg):
            self._bot_message(msg)
            return
        prompt = self._match(cfg.command, msg.content) if msg.content else None
        if prompt is not None:
            self._new(prompt, msg, msg.author_full, from_bot=False)

    def _bot_message(self, msg: Message) -> None:
        cfg = self.cfg
        bot = msg.author_full.lower()
        target = self.open.get(msg.reply_to) if msg.reply_to else None
        text = msg.content
        prompt = self._match(cfg.pattern, text) if text.strip() else None
        if target is not None and not target.from_bot:
            # the bot answers a /create command: same occurrence, its reply carries the video
            target.attachments.extend(msg.attachments)
            target.reply_id = target.reply_id or msg.id
            self.open[msg.id] = target
            return
        if prompt is not None:
            self._drop_pending(bot)
            occ = self._new(prompt, msg, self._author(msg), from_bot=True)
            self.last_bot[bot] = occ
            return
        if text.strip():
            parts = self.pending.get(bot)
            if parts and msg.time - parts[0].time <= SPLIT_WINDOW:
                parts.append(msg)
                joined = "\n".join(p.content for p in parts)
                prompt = self._match(cfg.pattern, joined)
                if prompt is not None:
                    del self.pending[bot]
                    first = parts[0]
                    occ = self._new(prompt, first, self._author(first) or self._author(msg),
                                    from_bot=True)
                    for p in parts[1:]:
                        occ.attachments.extend(p.attachments)
                        occ.edited = occ.edited or p.edited
                    occ.parts = [p.id for p in parts]
                    self.last_bot[bot] = occ
                elif len(parts) >= SPLIT_MAX_PARTS:
                    self._drop_pending(bot)
                return
            self._drop_pending(bot)
            self.pending[bot] = [msg]
            return
        # no text: a follow-up that carries the video of an earlier reply
        if not msg.attachments:
            return
        parts = self.pending.get(bot)
        if parts and msg.time - parts[0].time <= SPLIT_WINDOW:
            # the video of a reply still being assembled: keep it with the reply's last part
            parts[-1].attachments.extend(msg.attachments)
            return
        last = target or self.last_bot.get(bot)
        if last is not None and msg.time - last.msg.time <= SPLIT_WINDOW:
            last.attachments.extend(msg.attachments)
            last.parts = last.parts or [last.msg.id]
            last.parts.append(msg.id)
            return
        self.report.drop("unmatched_bot_message", msg.id, self.file)

    def _author(self, msg: Message) -> str | None:
        return msg.interaction_user or msg.mention or msg.reply_author

    def finish(self) -> None:
        for bot in list(self.pending):
            self._drop_pending(bot)
        seen: set[int] = set()
        for key, occ in list(self.open.items()):
            if key == occ.msg.id and id(occ) not in seen:
                seen.add(id(occ))
                self._flush(occ)
        self.open.clear()


# ---------------------------------------------------------------------------- spilling
SPILL_SCHEMA = pa.schema([
    ("uuid", pa.string()), ("prompt", pa.string()), ("time", TIME_TYPE), ("ord", pa.int64()),
    ("source_id", pa.string()), ("channel", pa.string()), ("author_sha256", pa.string()),
    ("extra", pa.string()),
])


class Spill:
    """Occurrences that passed the filters, written to Parquet in small row groups."""

    def __init__(self, folder: str):
        import pyarrow.parquet as pq

        self.path = os.path.join(folder, "occurrences.parquet")
        self.writer = pq.ParquetWriter(self.path, SPILL_SCHEMA, compression="zstd")
        self.buf: list[tuple[Any, ...]] = []
        self.rows = 0

    def add(self, row: tuple[Any, ...]) -> None:
        self.buf.append(row)
        self.rows += 1
        if len(self.buf) >= SPILL_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            cols = [pa.array(list(c), type=f.type)
                    for c, f in zip(zip(*self.buf, strict=True), SPILL_SCHEMA, strict=True)]
            self.writer.write_table(pa.Table.from_arrays(cols, schema=SPILL_SCHEMA))
            self.buf = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


class Collector:
    """Filters occurrences (by reason) and spills the kept ones."""

    def __init__(self, cfg: Config, report: DiscordReport, spill: Spill):
        self.cfg = cfg
        self.report = report
        self.spill = spill
        self.ord = 0

    def __call__(self, occ: Occurrence) -> None:
        cfg, report, msg = self.cfg, self.report, occ.msg
        if not cfg.keep_images:
            images = [a for a in (*occ.request_attachments, *occ.attachments) if a.is_image]
            if images or occ.image_option:
                why = f" ({images[0].filename})" if images else " (image: option)"
                report.drop("image_to_video", msg.id, occ.file, why)
                return
        if cfg.since and msg.time < cfg.since:
            report.drop("before_since", msg.id, occ.file)
            return
        if cfg.until and msg.time > cfg.until:
            report.drop("after_until", msg.id, occ.file)
            return
        if not occ.prompt.strip():
            report.drop("empty_prompt", msg.id, occ.file)
            return
        if len(occ.prompt) > cfg.max_chars:
            if not cfg.skip_bad:
                raise InputError(f"message {msg.id}: prompt of {len(occ.prompt):,} characters "
                                 f"exceeds --max-prompt-chars {cfg.max_chars:,} (use --skip-bad "
                                 "to skip it)", path=occ.file)
            report.drop("too_long", msg.id, occ.file)
            return
        extra: dict[str, Any] = {"file": os.path.basename(occ.file)}
        if msg.offset is not None:
            extra["time_offset"] = msg.offset
        if msg.time_text is not None:
            extra["time_text"] = msg.time_text
        extra["edited"] = occ.edited
        extra["reply_id"] = occ.reply_id
        if occ.request_id:
            extra["request_id"] = occ.request_id
        if occ.msg.reply_deleted:
            extra["request_deleted"] = True
        if occ.command:
            extra["command"] = occ.command
        if not occ.from_bot:
            extra["via"] = "command"
        extra["attachments"] = [a.as_json() for a in occ.attachments]
        if occ.request_attachments:
            extra["request_attachments"] = [a.as_json() for a in occ.request_attachments]
        if occ.parts:
            extra["parts"] = occ.parts
        self.ord += 1
        report.occurrences_kept += 1
        self.spill.add((uuid5(occ.prompt), occ.prompt, msg.time, self.ord, msg.id, occ.channel,
                        cfg.author_hash(occ.author), json.dumps(extra, ensure_ascii=False)))


# ---------------------------------------------------------------------------- files
class _Counting:
    """A binary file that reports progress as it is read."""

    def __init__(self, fh: BinaryIO, tick: Callable[[int], None]):
        self.fh = fh
        self.tick = tick

    def read(self, n: int = -1) -> bytes:
        b = self.fh.read(n)
        self.tick(len(b))
        return b

    def seek(self, *a: Any) -> int:
        return self.fh.seek(*a)


def sniff(path: str) -> str | None:
    """``discord-html`` / ``discord-json`` when the file is a DiscordChatExporter export."""
    from . import discord_html, discord_json

    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    name = path.lower()
    if name.endswith((".html", ".htm")) and discord_html.looks_like_export(head):
        return "discord-html"
    if name.endswith(".json") and discord_json.looks_like_export(head):
        return "discord-json"
    return None


def folder_files(path: str) -> list[str]:
    """The exports in a folder (``*.html``, ``*.htm``, ``*.json``, not recursive), sorted."""
    files = sorted(str(p) for p in Path(path).iterdir()
                   if p.is_file() and p.suffix.lower() in (".html", ".htm", ".json"))
    if not files:
        raise InputError("the folder holds no .html or .json exports", path=path)
    return files


def detect_folder(path: str) -> str:
    files = folder_files(path)
    kinds = {sniff(f) for f in files}
    if None in kinds:
        bad = next(f for f in files if sniff(f) is None)
        raise InputError("is in a folder of exports but is not a DiscordChatExporter export; "
                         "move it out or name the files to ingest", path=bad)
    return "discord-html" if "discord-html" in kinds else "discord-json"


def parse_file(path: str, fmt: str | None, cfg: Config, report: DiscordReport,
               emit: Callable[[Occurrence], None],
               progress: Callable[[int], None] | None = None) -> None:
    """Stream one export through an `Extractor`."""
    from . import discord_html, discord_json

    kind = fmt if fmt in FORMATS else sniff(path)
    if kind is None:
        raise InputError("not a DiscordChatExporter export (expected its HTML or JSON)",
                         path=path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise InputError(f"cannot read the file: {exc.strerror}", path=path) from exc
    with raw:
        fh: Any = _Counting(raw, progress) if progress else raw
        export: Any = (discord_html.HtmlExport(path, fh) if kind == "discord-html"
                       else discord_json.JsonExport(path, fh))
        ex: Extractor | None = None
        for msg in export.messages():
            if ex is None:
                ex = Extractor(cfg, report, path, export.channel, emit)
            ex.feed(msg)
        if ex is not None:
            ex.finish()
    report.files += 1


# ---------------------------------------------------------------------------- aggregation
def _aggregate_sql(spill_path: str) -> str:
    lit = "'" + spill_path.replace("'", "''") + "'"
    return clean_select(
        "SELECT uuid, prompt, time, occurrences, source_id, channel, "
        "author_sha256, extra, first FROM ("
        " SELECT uuid, arg_min(prompt, k) AS prompt, min(time) AS time, "
        " count(*)::BIGINT AS occurrences, arg_min(source_id, k) AS source_id, "
        " arg_min(channel, k) AS channel, arg_min(author_sha256, k) AS author_sha256, "
        " arg_min(extra, k) AS extra, min(k) AS first"
        f" FROM (SELECT *, (time, ord) AS k FROM read_parquet({lit})) GROUP BY uuid"
        ") ORDER BY first"
    ) + " ORDER BY first"


def _rows(con: Any, spill_path: str, seen: LakeKeys, report: DiscordReport,
          source: str, batch_id: str) -> Iterator[pa.RecordBatch]:
    reader = con.execute(_aggregate_sql(spill_path)).to_arrow_reader(BATCH_ROWS)
    for batch in reader:
        n = batch.num_rows
        report.unique_prompts += n
        cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        occ = cols["occurrences"].to_numpy()
        report.duplicates_in_file += int(occ.sum()) - n
        known = seen.in_lake(cols["uuid"])
        report.already_in_lake += int(known.sum())
        if known.any():
            batch = batch.filter(pa.array(~known))
            cols = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        n = batch.num_rows
        if not n:
            continue
        clean = cols["prompt_clean"]
        if "&" in "".join(v for v in clean.to_pylist() if v and "&" in v):
            clean = pa.array([finish_clean(v) for v in clean.to_pylist()], pa.string())
        out = {
            "uuid": cols["uuid"], "prompt": cols["prompt"], "prompt_clean": clean,
            "time": cols["time"], "source": pa.array([source] * n, pa.string()),
            "source_id": cols["source_id"], "channel": cols["channel"],
            "author_sha256": cols["author_sha256"], "occurrences": cols["occurrences"],
            "uuid_mismatch": pa.array([False] * n, pa.bool_()), "flags": cols["flags"],
            "extra": cols["extra"], "batch_id": pa.array([batch_id] * n, pa.string()),
        }
        arrays = []
        for f in PROMPTS_SCHEMA:
            col = out.get(f.name)
            if col is None:
                arrays.append(pa.nulls(n, f.type))
                continue
            if f.name == "time" and pa.types.is_timestamp(col.type) and col.type.tz is None:
                import pyarrow.compute as pc

                col = pc.assume_timezone(col, "UTC")
            arrays.append(col.cast(f.type))
        report.rows_added += n
        yield pa.RecordBatch.from_arrays(arrays, schema=PROMPTS_SCHEMA)


# ---------------------------------------------------------------------------- the reader
def read_exports(lake: Lake, path: str, opts: IngestOptions, report: IngestReport) -> IngestReport:
    """Ingest one DiscordChatExporter export, or every export in a folder, as one batch."""
    import duckdb

    t0 = time.perf_counter()
    cfg = Config.from_options(opts)
    rep = DiscordReport(path=report.path, format=report.format)
    files = folder_files(path) if Path(path).is_dir() else [path]
    forced = report.format if report.format in FORMATS else None
    total = sum(os.path.getsize(f) for f in files)
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if opts.progress:
            opts.progress(done[0], total)

    with tempfile.TemporaryDirectory(prefix="vidlake-discord-") as tmp:
        spill = Spill(tmp)
        collect = Collector(cfg, rep, spill)
        try:
            for f in files:
                parse_file(f, forced if len(files) == 1 else None, cfg, rep, collect,
                           tick if opts.progress else None)
        finally:
            spill.close()
        rep.rows_read = rep.messages
        con = duckdb.connect(":memory:")
        con.execute(f"SET temp_directory = '{tmp}'")
        con.execute("SET memory_limit = '256MB'")
        con.execute("SET preserve_insertion_order = false")
        seen = LakeKeys(lake)
        params = {"format": report.format, "source": cfg.source, "files": len(files),
                  "bot": cfg.bot, "prompt_pattern": opts.prompt_pattern,
                  "since": cfg.since.isoformat() if cfg.since else None,
                  "until": cfg.until.isoformat() if cfg.until else None,
                  "keep_image_prompts": cfg.keep_images,
                  "author_hash": "hmac-sha256 (salted)" if cfg.salt else "sha256",
                  "skip_bad": cfg.skip_bad, "max_prompt_chars": cfg.max_chars}
        if opts.dry_run:
            for _ in _rows(con, spill.path, seen, rep, cfg.source, "dry-run"):
                pass
            rep.dry_run = True
        else:
            sha = _sources_sha256(files)
            with lake.batch("ingest", source=path, source_sha256=sha,
                            params={k: v for k, v in params.items() if v is not None}) as b:
                rep.batch_id = b.batch_id
                b.append("prompts", _rows(con, spill.path, seen, rep, cfg.source,
                                          b.batch_id))
                b.counts.update(rep.counts())
                if rep.rows_added:  # the uuid index covers the new rows, in the same commit
                    b.index_keys_at_commit("prompts", "uuid")
        with contextlib.suppress(Exception):
            con.close()
    rep.notes.insert(0, rep.summary())
    rep.seconds = time.perf_counter() - t0
    return rep


def _sources_sha256(files: list[str]) -> str:
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{os.path.basename(f)}\0{file_sha256(f)}\n".encode())
    return h.hexdigest()


__all__ = [
    "COMMAND_PATTERN", "DEFAULT_BOT", "DEFAULT_PROMPT_PATTERN", "Attachment", "Config",
    "DiscordReport", "Extractor", "Message", "detect_folder", "folder_files", "parse_file",
    "read_exports", "sniff", "snowflake_time",
]
