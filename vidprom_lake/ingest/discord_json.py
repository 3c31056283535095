"""Streaming reader of DiscordChatExporter JSON exports (one channel per file).

The export is one object: ``guild``, ``channel``, ``dateRange``, ``exportedAt``, then the
``messages`` array and ``messageCount``. ijson (its C backend) yields one message object at a
time, so memory holds one message, not the array. A file cut in the middle ends the iteration
with ijson's IncompleteJSONError, which becomes an error naming the file and the last message
read; a ``messageCount`` that disagrees with the messages read is an error too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

from ..errors import InputError
from .discord import Attachment, Message, snowflake_time

#: DiscordChatExporter's MessageKind names that are system notifications (no user content).
SYSTEM_KINDS = frozenset({
    "RecipientAdd", "RecipientRemove", "Call", "ChannelNameChange", "ChannelIconChange",
    "ChannelPinnedMessage", "GuildMemberJoin", "ThreadCreated",
})
_COUNT = re.compile(rb'"messageCount"\s*:\s*(\d+)')


def looks_like_export(head: bytes) -> bool:
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return h.startswith(b"{") and b'"guild"' in h and b'"channel"' in h


def full_name(user: dict[str, Any] | None) -> str | None:
    """The user's name as the exporter shows it: ``name`` or ``name#1234`` (old discriminators)."""
    if not user:
        return None
    name = user.get("name") or ""
    disc = user.get("discriminator")
    return name if disc in (None, "", "0", "0000") else f"{name}#{disc}"


def _offset(ts: datetime) -> str:
    off = ts.utcoffset()
    minutes = int(off.total_seconds() // 60) if off is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _last_mention(content: str, mentions: list[dict[str, Any]]) -> str | None:
    """The user mentioned last in the text (Pika writes "**prompt** - @user")."""
    if not mentions:
        return None
    best, where = mentions[0], -1
    for u in mentions:
        for name in (u.get("nickname"), u.get("name")):
            at = content.rfind("@" + name) if name else -1
            if at > where:
                best, where = u, at
    return full_name(best)


class JsonExport:
    def __init__(self, path: str, fh: BinaryIO):
        self.path = path
        self.fh = fh
        self.channel: str | None = None
        self.guild: str | None = None
        self.channel_id: str | None = None

    def _header(self) -> None:
        import ijson

        head = self.fh.read(1 << 16)
        if not looks_like_export(head):
            raise InputError("not a DiscordChatExporter JSON export (expected an object with "
                             "guild, channel and messages)", path=self.path)
        self.fh.seek(0)
        try:
            for prefix, event, value in ijson.parse(self.fh):
                if prefix == "guild.name" and event == "string":
                    self.guild = value
                elif prefix == "channel.name" and event == "string":
                    self.channel = value
                elif prefix == "channel.id" and event == "string":
                    self.channel_id = value
                elif prefix == "messages" and event == "start_array":
                    break
        except ijson.JSONError as exc:
            raise InputError(f"not valid JSON before the messages ({exc})", path=self.path) from exc
        self.fh.seek(0)

    def messages(self) -> Iterator[Message]:
        import ijson

        self._header()
        n = 0
        last = None
        try:
            for obj in ijson.items(self.fh, "messages.item", use_float=True):
                n += 1
                msg = self._message(obj, n)
                last = msg.id
                yield msg
        except ijson.JSONError as exc:
            where = f"after message {last} (#{n})" if last else "before its first message"
            kind = ("cut in the middle" if isinstance(exc, ijson.IncompleteJSONError)
                    else "not valid JSON")
            raise InputError(f"the export is {kind} {where}: {exc}", path=self.path) from exc
        if n == 0 and self.channel is None:
            raise InputError("not a DiscordChatExporter JSON export (no channel, no messages)",
                             path=self.path)
        self.fh.seek(max(0, self.fh.seek(0, 2) - 256))
        m = _COUNT.search(self.fh.read())
        if m is None:
            raise InputError("the export has no messageCount at its end (truncated?)",
                             path=self.path)
        if int(m.group(1)) != n:
            raise InputError(f"the export says messageCount {int(m.group(1)):,} but holds {n:,} "
                             "messages (damaged export?)", path=self.path)

    def _message(self, obj: dict[str, Any], n: int) -> Message:
        path = self.path
        if not isinstance(obj, dict) or "id" not in obj:
            raise InputError(f"message #{n} is not a message object", path=path)
        msg_id = str(obj["id"])
        ts_text = obj.get("timestamp")
        try:
            ts = datetime.fromisoformat(ts_text) if ts_text else None
        except (TypeError, ValueError) as exc:
            raise InputError(f"message {msg_id}: bad timestamp {ts_text!r}", path=path) from exc
        if ts is None:
            utc = snowflake_time(msg_id)
            if utc is None:
                raise InputError(f"message {msg_id} has no timestamp", path=path)
            offset = None
        else:
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            utc, offset = ts.astimezone(UTC), _offset(ts)
        author = obj.get("author") or {}
        inter = obj.get("interaction") or None
        ref = obj.get("reference") or None
        mentions = obj.get("mentions") or []
        atts = []
        for a in obj.get("attachments") or []:
            import mimetypes

            fname = a.get("fileName") or ""
            size = a.get("fileSizeBytes")
            atts.append(Attachment(a.get("url") or "", fname,
                                   int(size) if size is not None else None,
                                   mimetypes.guess_type(fname)[0], None))
        return Message(
            id=msg_id, time=utc, offset=offset, time_text=ts_text,
            author=author.get("nickname") or author.get("name") or "",
            author_full=full_name(author) or "", author_is_bot=bool(author.get("isBot")),
            content=obj.get("content") or "", edited=obj.get("timestampEdited") is not None,
            attachments=atts, reply_to=(ref or {}).get("messageId"), reply_author=None,
            reply_deleted=False, interaction=(inter or {}).get("name"),
            interaction_user=full_name((inter or {}).get("user")),
            mention=_last_mention(obj.get("content") or "", mentions),
            system=obj.get("type") in SYSTEM_KINDS,
        )


__all__ = ["JsonExport", "full_name", "looks_like_export"]
