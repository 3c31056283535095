"""Streaming reader of DiscordChatExporter HTML exports (one channel per file).

DiscordChatExporter (2.34 and later, the version VidProM's exports came from) writes a preamble,
then one ``<div class="chatlog__message-group">`` per run of messages by one author, each message
a ``<div id="chatlog__message-container-{id}" class="chatlog__message-container" ...>`` holding
the header (author, BOT tag, timestamp: first message of a group only), an optional reply block,
the content (``<span class="chatlog__markdown-preserve">``), the ``(edited)`` mark and the
attachments, then a postamble (``<div class="postamble">``).

The file is read in blocks and cut at those container markers, so memory holds one block and one
message at a time, never the document. The exporter HTML-encodes every user string, so a marker
can never occur inside message text; within one message the fields are found by the template's
class names, and the content span is cut by counting nested ``<span>`` tags. The content is kept
as the exact HTML source (entities, emoji ``<img>`` tags and mention spans included): VidProM's
prompts are that source text, which is why its CSV carries ``&quot;`` and ``&#39;``.

Times: the message id is a Discord snowflake, which encodes the UTC instant to the millisecond;
the displayed timestamp (the exporter's local time, minute precision) gives the offset when it
parses.
"""

from __future__ import annotations

import contextlib
import functools
import html
import mimetypes
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

from ..errors import InputError
from .discord import Attachment, Message, snowflake_time

BLOCK = 1 << 20
_MARK = re.compile(
    rb'<div (?:class="chatlog__message-group"|id="chatlog__message-container-(\d+)"|'
    rb'class="postamble")'
)
_AUTHOR = re.compile(rb'<span class="chatlog__author"[^>]*?(?: title="([^"]*)")?'
                     rb'(?:[^>]*? data-user-id="(\d+)")?[^>]*>(.*?)</span>', re.S)
_BOT_TAG = re.compile(rb'<span class="chatlog__author-tag">(BOT|SERVER)</span>')
# The header in one pass: author (title = full name, data-user-id), BOT tag, timestamp title.
_HEADER = re.compile(
    rb'<div class="chatlog__header">\s*<span class="chatlog__author"[^>]*?(?: title="([^"]*)")?'
    rb'(?:[^>]*? data-user-id="(\d+)")?[^>]*>(.*?)</span>\s*'
    rb'(<span class="chatlog__author-tag">(?:BOT|SERVER)</span>\s*)?'
    rb'(?:<span class="chatlog__timestamp" title="([^"]*)")?', re.S)
_TIMESTAMP = re.compile(
    rb'class="chatlog__(?:timestamp|short-timestamp|system-notification-timestamp)" title="([^"]*)"'
)
_REPLY_AUTHOR = re.compile(rb'<div class="chatlog__reply-author"[^>]*? title="([^"]*)"')
_REPLY_TARGET = re.compile(rb"scrollToMessage\(event, '(\d+)'\)")
_REPLY_USED = re.compile(rb'<div class="chatlog__reply-content">\s*used /([^\s<]+)')
_CONTENT = re.compile(rb'<div class="chatlog__content chatlog__markdown">\s*'
                      rb'(?:<span class="chatlog__markdown-preserve">)?')
_SPAN_TAG = re.compile(rb"<span\b|</span>")
_MEDIA = re.compile(
    rb'(?:<img class="chatlog__attachment-media"|<source) src="([^"]*)"[^>]*?'
    rb'title="(Image|Video|Audio): ([^"]*) \(([^()"]*)\)"'
)
_GENERIC = re.compile(
    rb'<div class="chatlog__attachment-generic-name">\s*<a href="([^"]*)">\s*(.*?)\s*</a>\s*'
    rb'</div>\s*<div class="chatlog__attachment-generic-size">\s*(.*?)\s*</div>', re.S
)
_MENTION = re.compile(rb'<span class="chatlog__markdown-mention" title="([^"]*)"')
_PREAMBLE_ENTRY = re.compile(rb'<div class="preamble__entry">(.*?)</div>', re.S)
_TITLE = re.compile(rb"<title>(.*?)</title>", re.S)
_SIZE = re.compile(r"([\d.,]+)\s*(bytes|B|KB|MB|GB|TB)", re.I)
_UNITS = {"bytes": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
WMM_OPEN, WMM_CLOSE = "<!--wmm:ignore-->", "<!--/wmm:ignore-->"
# The exporter's "f" date format in the cultures users run it with most; others keep no offset.
_DATE_FORMATS = ("%A, %B %d, %Y %I:%M %p", "%A, %d %B %Y %H:%M", "%m/%d/%Y %I:%M %p",
                 "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M", "%d-%b-%y %I:%M %p", "%A, %B %d, %Y %H:%M")


def looks_like_export(head: bytes) -> bool:
    return b"chatlog__" in head or b'class="preamble' in head


def size_bytes(text: str) -> int | None:
    """The byte count of an exporter size string such as ``1.23 MB`` (an estimate)."""
    m = _SIZE.search(text)
    if not m:
        return None
    try:
        value = float(m.group(1).replace(",", ""))
    except ValueError:
        return None
    return int(round(value * _UNITS[m.group(2).lower()]))


def _text(raw: bytes) -> str:
    """Decoded, entity-decoded text of an attribute value or a text node."""
    s = raw.decode("utf-8")
    return html.unescape(s) if "&" in s else s


_EN_US_F = re.compile(r"\A\w+, (\w+) (\d{1,2}), (\d{4}) (\d{1,2}):(\d{2}) ([AP]M)\Z")
_MONTHS = {m: i for i, m in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"), 1)}


@functools.lru_cache(maxsize=4096)
def _local(text: str) -> datetime | None:
    """The displayed local time (naive), in the exporter's common formats."""
    m = _EN_US_F.match(text)  # en-US "f", the default: one regex instead of strptime
    if m and m.group(1) in _MONTHS:
        hour = int(m.group(4)) % 12 + (12 if m.group(6) == "PM" else 0)
        with contextlib.suppress(ValueError):
            return datetime(int(m.group(3)), _MONTHS[m.group(1)], int(m.group(2)), hour,
                            int(m.group(5)))
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _offset(text: str | None, utc: datetime) -> str | None:
    """The exporter's UTC offset, from its displayed local time (minute precision)."""
    local = _local(text.strip()) if text else None
    if local is None:
        return None
    naive = utc.replace(tzinfo=None, second=0, microsecond=0)
    minutes = round((local - naive).total_seconds() / 60 / 15) * 15
    if abs(minutes) > 14 * 60:
        return None
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _mime(name: str) -> str | None:
    return _mime_ext(name[name.rfind("."):].lower() if "." in name else "")


@functools.lru_cache(maxsize=256)
def _mime_ext(ext: str) -> str | None:
    return mimetypes.guess_type("x" + ext)[0]


def _content(seg: bytes) -> bytes | None:
    """The HTML source inside the content span, nested spans included."""
    m = _CONTENT.search(seg)
    if not m:
        return b""  # no text (attachments only)
    start = m.end()
    if not m.group(0).endswith(b'preserve">'):
        return b""  # an edited message with no text keeps only its "(edited)" mark
    depth = 1
    for t in _SPAN_TAG.finditer(seg, start):
        depth += 1 if t.group(0) == b"<span" else -1
        if depth == 0:
            return seg[start:t.start()]
    return None  # no closing tag: the message is cut


def _attachments(seg: bytes) -> list[Attachment]:
    out: list[Attachment] = []
    if b'<div class="chatlog__attachment' not in seg:
        return out
    for url, kind, name, size in _MEDIA.findall(seg):
        fname = _text(name)
        stext = size.decode("utf-8", "replace")
        ctype = _mime(fname) or f"{kind.decode().lower()}/*"
        out.append(Attachment(_text(url), fname, size_bytes(stext), ctype, stext))
    for url, name, size in _GENERIC.findall(seg):
        fname = _text(name).strip()
        stext = _text(size).strip()
        out.append(Attachment(_text(url), fname, size_bytes(stext), _mime(fname), stext))
    return out


class HtmlExport:
    """Iterate the messages of one export; `channel`/`guild` are known after the first message."""

    def __init__(self, path: str, fh: BinaryIO):
        self.path = path
        self.fh = fh
        self.channel: str | None = None
        self.guild: str | None = None
        self.bytes_read = 0
        self._offset_key: tuple[str | None, datetime] | None = None
        self._offset_val: str | None = None

    def _offset(self, text: str | None, utc: datetime) -> str | None:
        # messages of one displayed minute share it: compute once per minute shown
        key = (text, utc.replace(second=0, microsecond=0))
        if key != self._offset_key:
            self._offset_key, self._offset_val = key, _offset(text, utc)
        return self._offset_val

    def _preamble(self, head: bytes) -> None:
        entries = [html.unescape(e.decode("utf-8", "replace")).strip()
                   for e in _PREAMBLE_ENTRY.findall(head)]
        if len(entries) >= 2:
            self.guild = entries[0]
            self.channel = entries[1].split(" / ")[-1].strip()
        else:
            t = _TITLE.search(head)
            if t:
                title = html.unescape(t.group(1).decode("utf-8", "replace"))
                self.guild, _, self.channel = title.rpartition(" - ")

    def messages(self) -> Iterator[Message]:
        path = self.path
        buf = b""
        eof = False
        seen_marker = False
        postamble = False
        author: tuple[str, str, bool, str | None] | None = None  # display, full, bot, user id
        last_id = None
        offset_base = 0  # file offset of buf[0]
        while not postamble:
            if not eof:
                block = self.fh.read(BLOCK)
                self.bytes_read += len(block)
                if not block:
                    eof = True
                buf += block
            marks = list(_MARK.finditer(buf))
            if not seen_marker:
                if not marks:
                    if eof or len(buf) > (8 << 20):
                        if not looks_like_export(buf[:1 << 20]):
                            raise InputError("not a DiscordChatExporter HTML export (no chatlog "
                                             "markup)", path=path)
                        if eof:
                            raise InputError("the export is truncated: it ends before its first "
                                             "message or its closing postamble", path=path)
                    continue
                if not looks_like_export(buf[:marks[0].start()] or buf[:4096]):
                    raise InputError("not a DiscordChatExporter HTML export", path=path)
                self._preamble(buf[:marks[0].start()])
                seen_marker = True
            # every segment but the last is complete (the last, too, at end of file)
            complete = len(marks) - 1
            if eof and marks and buf.startswith(b'<div class="postamble"', marks[-1].start()):
                complete = len(marks)  # else the last message is cut: reported below
            for i in range(complete):
                m = marks[i]
                end = marks[i + 1].start() if i + 1 < len(marks) else len(buf)
                seg = buf[m.start():end]
                if seg.startswith(b'<div class="chatlog__message-group"'):
                    author = None
                    continue
                if seg.startswith(b'<div class="postamble"'):
                    postamble = True
                    tail = seg + self.fh.read()
                    if b"</html>" not in tail[-4096:]:
                        raise InputError("the export is truncated inside its postamble",
                                         path=path)
                    break
                msg, author = self._message(m.group(1), seg, author, offset_base + m.start())
                last_id = msg.id
                yield msg
            if postamble:
                break
            if eof:
                where = f"after message {last_id}" if last_id else "before its first message"
                raise InputError(f"the export is truncated {where} (no closing postamble); "
                                 "re-export the channel", path=path)
            cut = marks[-1].start() if marks else len(buf)
            if marks:
                offset_base += cut
                buf = buf[cut:]

    def _message(self, mid: bytes, seg: bytes, author: tuple[str, str, bool, str | None] | None,
                 at: int) -> tuple[Message, tuple[str, str, bool, str | None] | None]:
        path = self.path
        msg_id = mid.decode()
        try:
            system = b"chatlog__system-notification" in seg[:2000]
            h = _HEADER.search(seg) if b'<div class="chatlog__header">' in seg else None
            ts = None
            if h:
                display = _text(h.group(3))
                full = _text(h.group(1)) if h.group(1) is not None else display
                author = (display, full, h.group(4) is not None,
                          h.group(2).decode() if h.group(2) else None)
                ts = h.group(5)
            else:
                a = _AUTHOR.search(seg) if b'<span class="chatlog__author"' in seg else None
                if a:  # a header laid out otherwise than the template's
                    display = _text(a.group(3))
                    full = _text(a.group(1)) if a.group(1) is not None else display
                    author = (display, full,
                              bool(_BOT_TAG.search(seg, a.end(), a.end() + 300)),
                              a.group(2).decode() if a.group(2) else None)
            if author is None and not system:
                raise InputError(f"message {msg_id} has no author (its group has no header)",
                                 path=path)
            utc = snowflake_time(msg_id)
            if ts is None:
                t = _TIMESTAMP.search(seg)
                ts = t.group(1) if t else None
            ts_text = _text(ts) if ts is not None else None
            if utc is None:
                utc = _parse_local(ts_text)
                if utc is None:
                    raise InputError(f"message {msg_id}: no usable time (the id is not a Discord "
                                     f"snowflake and {ts_text!r} does not parse)", path=path)
            reply_to = interaction = interaction_user = reply_author = None
            reply_deleted = False
            r = seg.find(b'<div class="chatlog__reply">')
            if r >= 0:
                end = seg.find(b'<div class="chatlog__header"', r)
                if end < 0:
                    end = seg.find(b'<div class="chatlog__content', r)
                block = seg[r:end] if end >= 0 else seg[r:]
                ra = _REPLY_AUTHOR.search(block)
                if ra:
                    reply_author = _text(ra.group(1))
                rt = _REPLY_TARGET.search(block)
                if rt:
                    reply_to = rt.group(1).decode()
                used = _REPLY_USED.search(block)
                if used:
                    interaction = _text(used.group(1))
                    interaction_user, reply_author = reply_author, None
                reply_deleted = b"chatlog__reply-unknown" in block
            content_b = b"" if system else _content(seg)
            if content_b is None:
                raise InputError(f"message {msg_id}: the content is not closed (truncated or "
                                 "damaged export)", path=path)
            content = content_b.decode("utf-8")
            if content.startswith(WMM_OPEN) and content.endswith(WMM_CLOSE):
                content = content[len(WMM_OPEN):-len(WMM_CLOSE)]
            # the requester is the last mention: Pika writes "**prompt** - @user"
            mention = (list(_MENTION.finditer(content_b))[-1]
                       if b"chatlog__markdown-mention" in content_b else None)
        except UnicodeDecodeError as exc:
            raise InputError(f"message {msg_id} is not valid UTF-8 ({exc.reason})",
                             path=path) from exc
        display, full, is_bot, user_id = author or ("", "", False, None)
        msg = Message(
            id=msg_id, time=utc, offset=self._offset(ts_text, utc), time_text=ts_text,
            author=display, author_full=full, author_is_bot=is_bot, content=content,
            edited=b'<span class="chatlog__edited-timestamp"' in seg, attachments=_attachments(seg), reply_to=reply_to,
            reply_author=reply_author, reply_deleted=reply_deleted, interaction=interaction,
            interaction_user=interaction_user,
            mention=_text(mention.group(1)) if mention else None,
            system=system,
        )
        return msg, author


def _parse_local(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


__all__ = ["HtmlExport", "looks_like_export", "size_bytes"]
