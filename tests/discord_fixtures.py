"""Builders of small DiscordChatExporter exports (HTML and JSON) shaped like its templates.

The HTML follows DiscordChatExporter's MessageGroupTemplate / Preamble / Postamble (2.34+):
message groups, message containers with ``data-message-id``, a header on the first message of
a group, reply blocks, ``chatlog__markdown-preserve`` content with ``<!--wmm:ignore-->``
markers, ``(edited)`` marks and attachment blocks; text is encoded the way .NET's
``WebUtility.HtmlEncode`` does (``&quot;``, ``&#39;``, ``&#NNN;`` for U+00A0..U+00FF and for
characters beyond the BMP). The JSON follows its JsonMessageWriter.

Message text uses a tiny markdown: ``**bold**``, ``*italic*``, ``<@user>`` mentions of a user
key of `USERS`, and emoji characters from `EMOJI`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

EPOCH_MS = 1_420_070_400_000

# key -> (user id, name, discriminator, display name, is bot)
USERS: dict[str, tuple[str, str, str, str, bool]] = {
    "pika": ("1123000000000000001", "Pika", "0000", "Pika", True),
    "alice": ("1123000000000000002", "alice", "0000", "Alice ✨", False),
    "bob": ("1123000000000000003", "bob", "4242", "Bob", False),
    "carol": ("1123000000000000004", "carol", "0000", "Carol", False),
    "helper": ("1123000000000000005", "HelperBot", "0000", "HelperBot", True),
}
EMOJI = {"🔥": "fire", "🐱": "cat", "😀": "grinning"}


def snowflake(t: datetime, seq: int = 0) -> int:
    ms = int(t.timestamp() * 1000)
    return ((ms - EPOCH_MS) << 22) | (seq & 0x3FFFFF)


def full_name(key: str) -> str:
    _, name, disc, _, _ = USERS[key]
    return name if disc == "0000" else f"{name}#{disc}"


def html_encode(text: str) -> str:
    """.NET WebUtility.HtmlEncode."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == '"':
            out.append("&quot;")
        elif ch == "'":
            out.append("&#39;")
        elif ch == "&":
            out.append("&amp;")
        elif 160 <= o < 256 or o > 0xFFFF:
            out.append(f"&#{o};")
        else:
            out.append(ch)
    return "".join(out)


_TOKEN = re.compile(r"\*\*(.+?)\*\*|\*(.+?)\*|<@(\w+)>|(" + "|".join(map(re.escape, EMOJI)) + ")",
                    re.S)


def render_html(md: str) -> str:
    out, pos = [], 0
    for m in _TOKEN.finditer(md):
        out.append(html_encode(md[pos:m.start()]))
        if m.group(1) is not None:
            out.append(f"<strong>{render_html(m.group(1))}</strong>")
        elif m.group(2) is not None:
            out.append(f"<em>{render_html(m.group(2))}</em>")
        elif m.group(3) is not None:
            key = m.group(3)
            out.append(f'<span class="chatlog__markdown-mention" title="{html_encode(full_name(key))}">'
                       f"@{html_encode(USERS[key][3])}</span>")
        else:
            e = m.group(4)
            code = "-".join(f"{ord(c):x}" for c in e)
            out.append(f'<img loading="lazy" class="chatlog__emoji " alt="{e}" title="{EMOJI[e]}" '
                       f'src="https://cdn.jsdelivr.net/gh/twitter/twemoji@latest/assets/svg/{code}.svg">')
        pos = m.end()
    out.append(html_encode(md[pos:]))
    return "".join(out)


def render_plain(md: str) -> str:
    """What the JSON export holds: markdown kept, mentions as @display name."""
    return re.sub(r"<@(\w+)>", lambda m: "@" + USERS[m.group(1)][3], md)


@dataclass
class Msg:
    author: str
    content: str = ""
    time: datetime | None = None
    edited: bool = False
    attachments: list[tuple[str, int]] = field(default_factory=list)  # (file name, bytes)
    reply_to: int | None = None  # index of the referenced message in the list
    reply_deleted: bool = False
    interaction: tuple[str, str] | None = None  # (command name, user key)
    html: str | None = None  # the content's HTML source, when not rendered from `content`
    system: bool = False
    id: int | None = None


def _ids(msgs: list[Msg], start: datetime) -> list[tuple[int, datetime]]:
    out = []
    t = start
    for i, m in enumerate(msgs):
        t = m.time or (t + timedelta(seconds=20))
        out.append((m.id or snowflake(t, i), t))
    return out


def _size_text(n: int) -> str:
    for unit, f in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= f:
            return f"{n / f:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} bytes"


def _fmt_f(t: datetime) -> str:
    return f"{t:%A}, {t:%B} {t.day}, {t.year} {(t.hour % 12) or 12}:{t:%M} {'AM' if t.hour < 12 else 'PM'}"


def _fmt_g(t: datetime) -> str:
    return f"{t.month}/{t.day}/{t.year} {(t.hour % 12) or 12}:{t:%M} {'AM' if t.hour < 12 else 'PM'}"


def _fmt_t(t: datetime) -> str:
    return f"{(t.hour % 12) or 12}:{t:%M} {'AM' if t.hour < 12 else 'PM'}"


def att_url(msg_id: int, k: int, name: str) -> str:
    return f"https://cdn.discordapp.com/attachments/1100000000000000000/{msg_id + k}/{name}"


PREAMBLE = """<!DOCTYPE html>
<html lang="en">
<head>
    <title>{guild} - {channel}</title>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width">
    <style>
        .chatlog__message-group {{ display: grid; margin: 0 0.6em; padding: 0.9em 0; border-top: 1px solid rgba(255, 255, 255, 0.1); }}
        .chatlog__message-container {{ background-color: transparent; transition: background-color 1s ease; }}
        .chatlog__markdown-preserve {{ white-space: pre-wrap; }}
    </style>
</head>
<body>

<div class="preamble">
    <div class="preamble__guild-icon-container">
        <img class="preamble__guild-icon" src="https://cdn.discordapp.com/icons/1/a.png" alt="Guild icon" loading="lazy">
    </div>
    <div class="preamble__entries-container">
        <div class="preamble__entry">{guild}</div>
        <div class="preamble__entry">{category} / {channel}</div>
    </div>
</div>

<!--wmm:ignore-->
<div class="chatlog">
<!--/wmm:ignore-->
"""

POSTAMBLE = """<!--wmm:ignore-->
</div>
<!--/wmm:ignore-->

<div class="postamble">
    <div class="postamble__entry">Exported {n} message(s)</div>
</div>

</body>
</html>
"""


def _container(m: Msg, mid: int, t: datetime, first: bool, ref: tuple[Msg, int] | None,
               tz: timezone) -> str:
    local = t.astimezone(tz)
    key = m.author
    uid, _, _, display, is_bot = USERS[key]
    p = [f'<div id="chatlog__message-container-{mid}" class="chatlog__message-container " '
         f'data-message-id="{mid}">\n        <div class="chatlog__message">\n']
    replyish = m.reply_to is not None or m.reply_deleted or m.interaction is not None
    p.append('            <div class="chatlog__message-aside">\n')
    if first:
        if replyish:
            p.append('                <div class="chatlog__reply-symbol"></div>\n')
        p.append(f'                <img class="chatlog__avatar" src="https://cdn.discordapp.com/avatars/{uid}/a.png" alt="Avatar" loading="lazy">\n')
    else:
        p.append(f'                <div class="chatlog__short-timestamp" title="{_fmt_f(local)}">{_fmt_t(local)}</div>\n')
    p.append('            </div>\n\n            <div class="chatlog__message-primary">\n')
    if first and replyish:
        p.append('                <div class="chatlog__reply">\n')
        if ref is not None:
            rm, rid = ref
            ruid, _, _, rdisp, _ = USERS[rm.author]
            rhtml = rm.html if rm.html is not None else render_html(rm.content)
            p.append(f'                    <img class="chatlog__reply-avatar" src="https://cdn.discordapp.com/avatars/{ruid}/a.png" alt="Avatar" loading="lazy">\n'
                     f'                    <div class="chatlog__reply-author" title="{html_encode(full_name(rm.author))}">{html_encode(rdisp)}</div>\n'
                     f'                    <div class="chatlog__reply-content">\n'
                     f"                        <span class=\"chatlog__reply-link\" onclick=\"scrollToMessage(event, '{rid}')\">\n")
            if rm.content or rm.html:
                p.append(f"                                <!--wmm:ignore-->{rhtml}<!--/wmm:ignore-->\n")
            else:
                p.append("                                <em>Click to see attachment</em>\n                                <span>🖼️</span>\n")
            p.append("                        </span>\n                    </div>\n")
        elif m.interaction is not None:
            name, ukey = m.interaction
            iuid, _, _, idisp, _ = USERS[ukey]
            p.append(f'                    <img class="chatlog__reply-avatar" src="https://cdn.discordapp.com/avatars/{iuid}/a.png" alt="Avatar" loading="lazy">\n'
                     f'                    <div class="chatlog__reply-author" title="{html_encode(full_name(ukey))}">{html_encode(idisp)}</div>\n'
                     f'                    <div class="chatlog__reply-content">\n                        used /{name}\n                    </div>\n')
        else:
            p.append('                    <div class="chatlog__reply-unknown">\n'
                     '                        Original message was deleted or could not be loaded.\n'
                     '                    </div>\n')
        p.append("                </div>\n")
    if first:
        p.append(f'                <div class="chatlog__header">\n'
                 f'                    <span class="chatlog__author" title="{html_encode(full_name(key))}" data-user-id="{uid}">{html_encode(display)}</span>\n')
        if is_bot:
            p.append('                    <span class="chatlog__author-tag">BOT</span>\n')
        p.append(f'                    <span class="chatlog__timestamp" title="{_fmt_f(local)}"><a href="#chatlog__message-container-{mid}">{_fmt_g(local)}</a></span>\n'
                 "                </div>\n")
    body = m.html if m.html is not None else render_html(m.content)
    if body or m.edited:
        p.append('                <div class="chatlog__content chatlog__markdown">\n')
        if body:
            p.append(f'                    <span class="chatlog__markdown-preserve"><!--wmm:ignore-->{body}<!--/wmm:ignore--></span>\n')
        if m.edited:
            p.append(f'                    <span class="chatlog__edited-timestamp" title="{_fmt_f(local)}">(edited)</span>\n')
        p.append("                </div>\n")
    for k, (name, size) in enumerate(m.attachments):
        url = html_encode(att_url(mid, k, name))
        title = f"{html_encode(name)} ({_size_text(size)})"
        low = name.lower()
        p.append('                <div class="chatlog__attachment ">\n')
        if low.endswith((".png", ".jpg", ".jpeg", ".gif", ".webp")):
            p.append(f'                    <a href="{url}">\n                        <img class="chatlog__attachment-media" src="{url}" alt="Image attachment" title="Image: {title}" loading="lazy">\n                    </a>\n')
        elif low.endswith((".mp4", ".webm", ".mov")):
            p.append(f'                    <video class="chatlog__attachment-media" controls>\n                        <source src="{url}" alt="Video attachment" title="Video: {title}">\n                    </video>\n')
        else:
            p.append(f'                    <div class="chatlog__attachment-generic">\n                        <svg class="chatlog__attachment-generic-icon">\n                            <use href="#attachment-icon"/>\n                        </svg>\n'
                     f'                        <div class="chatlog__attachment-generic-name">\n                            <a href="{url}">\n                                {html_encode(name)}\n                            </a>\n                        </div>\n'
                     f'                        <div class="chatlog__attachment-generic-size">\n                            {_size_text(size)}\n                        </div>\n                    </div>\n')
        p.append("                </div>\n")
    p.append("            </div>\n        </div>\n    </div>\n")
    return "".join(p)


def _system(m: Msg, mid: int, t: datetime, tz: timezone) -> str:
    local = t.astimezone(tz)
    _, _, _, display, _ = USERS[m.author]
    return (f'<div id="chatlog__message-container-{mid}" class="chatlog__message-container " data-message-id="{mid}">\n'
            f'        <div class="chatlog__message">\n            <div class="chatlog__message-aside">\n'
            f'                <svg class="chatlog__system-notification-icon"><use href="#pin-icon"></use></svg>\n            </div>\n'
            f'            <div class="chatlog__message-primary">\n'
            f'                <span class="chatlog__system-notification-author" title="{html_encode(full_name(m.author))}">{html_encode(display)}</span>\n'
            f'                <span> </span>\n                <span class="chatlog__system-notification-content">\n'
            f'                    <span>pinned </span>\n                    <a class="chatlog__system-notification-link" href="#">a message</a>\n'
            f'                    <span> to this channel.</span>\n                </span>\n'
            f'                <span class="chatlog__system-notification-timestamp" title="{_fmt_f(local)}">\n'
            f'                    <a href="#chatlog__message-container-{mid}">{_fmt_g(local)}</a>\n                </span>\n'
            f'            </div>\n        </div>\n    </div>\n')


def html_export(msgs: list[Msg], *, channel: str = "generate-1", guild: str = "Pika",
                start: datetime = datetime(2023, 9, 3, 12, 0, tzinfo=UTC),
                tz: timezone = UTC) -> str:
    ids = _ids(msgs, start)
    out = [PREAMBLE.format(guild=html_encode(guild), channel=html_encode(channel),
                           category="GENERATE")]
    prev: tuple[str, datetime] | None = None
    open_group = False
    for i, m in enumerate(msgs):
        mid, t = ids[i]
        replyish = m.reply_to is not None or m.reply_deleted or m.interaction is not None
        new_group = (prev is None or prev[0] != m.author or t - prev[1] > timedelta(minutes=7)
                     or replyish or m.system)
        if new_group:
            if open_group:
                out.append("</div>\n")
            out.append('<div class="chatlog__message-group">\n    ')
            open_group = True
        ref = (msgs[m.reply_to], ids[m.reply_to][0]) if m.reply_to is not None else None
        out.append(_system(m, mid, t, tz) if m.system else
                   _container(m, mid, t, new_group, ref, tz))
        prev = (m.author, t)
    if open_group:
        out.append("</div>\n")
    out.append(POSTAMBLE.format(n=len(msgs)))
    return "".join(out)


def _user_json(key: str) -> dict[str, Any]:
    uid, name, disc, display, bot = USERS[key]
    return {"id": uid, "name": name, "discriminator": disc, "nickname": display, "color": None,
            "isBot": bot, "roles": [], "avatarUrl": f"https://cdn.discordapp.com/avatars/{uid}/a.png"}


def _iso(t: datetime, tz: timezone) -> str:
    s = t.astimezone(tz).isoformat(timespec="milliseconds")
    return s


def json_export(msgs: list[Msg], *, channel: str = "generate-1", guild: str = "Pika",
                start: datetime = datetime(2023, 9, 3, 12, 0, tzinfo=UTC),
                tz: timezone = UTC) -> str:
    ids = _ids(msgs, start)
    out = []
    for i, m in enumerate(msgs):
        mid, t = ids[i]
        mentions = [_user_json(k) for k in re.findall(r"<@(\w+)>", m.content)]
        d: dict[str, Any] = {
            "id": str(mid), "type": "ChannelPinnedMessage" if m.system else
            ("Reply" if m.reply_to is not None or m.reply_deleted else "Default"),
            "timestamp": _iso(t, tz),
            "timestampEdited": _iso(t + timedelta(seconds=30), tz) if m.edited else None,
            "callEndedTimestamp": None, "isPinned": False,
            "content": "Pinned a message." if m.system else render_plain(m.content),
            "author": _user_json(m.author),
            "attachments": [{"id": str(mid + k), "url": att_url(mid, k, name), "fileName": name,
                             "fileSizeBytes": size} for k, (name, size) in enumerate(m.attachments)],
            "components": [], "embeds": [], "stickers": [], "reactions": [], "mentions": mentions,
        }
        if m.reply_to is not None or m.reply_deleted:
            rid = str(ids[m.reply_to][0]) if m.reply_to is not None else str(mid - 12345)
            d["reference"] = {"type": "Default", "messageId": rid,
                              "channelId": "1100000000000000000", "guildId": "1000000000000000000"}
        if m.interaction is not None:
            d["interaction"] = {"id": str(mid + 7), "name": m.interaction[0],
                                "user": _user_json(m.interaction[1])}
        d["inlineEmojis"] = []
        out.append(d)
    doc = {
        "guild": {"id": "1000000000000000000", "name": guild, "iconUrl": "https://x/icon.png"},
        "channel": {"id": "1100000000000000000", "type": "GuildTextChat", "categoryId": "1",
                    "category": "GENERATE", "name": channel, "topic": None},
        "dateRange": {"after": None, "before": None},
        "exportedAt": _iso(datetime(2024, 3, 1, tzinfo=UTC), tz),
        "messages": out,
        "messageCount": len(out),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------ large exports
def big_messages(n_prompts: int, seed: int = 0) -> list[Msg]:
    """Busy-channel traffic: Pika replies with videos, chatter, image-to-video requests."""
    import numpy as np

    from vidprom_lake import synth

    rng = np.random.default_rng(seed)
    msgs: list[Msg] = []
    t = datetime(2023, 7, 1, tzinfo=UTC)
    users = ["alice", "bob", "carol"]
    for i in range(n_prompts):
        t += timedelta(seconds=int(rng.integers(1, 30)))
        user = users[int(rng.integers(3))]
        raw = synth.prompt_text(rng)
        r = rng.random()
        if r < 0.15:
            msgs.append(Msg(user, "wow 🔥 how do I get -motion to work?", time=t))
            t += timedelta(seconds=2)
        atts = [(f"{i}_video.mp4", int(rng.integers(200_000, 900_000)))]
        if r > 0.9:
            atts.insert(0, (f"input_{i}.png", 123_456))
        msgs.append(Msg("pika", time=t, html=f"<strong>{raw}</strong> - "
                        f'<span class="chatlog__markdown-mention" title="{full_name(user)}">@{html_encode(USERS[user][3])}</span>',
                        content=f"**{raw}** - <@{user}>", attachments=atts,
                        interaction=("create", user)))
    return msgs


def write_big_html(path: Path, target_bytes: int, seed: int = 0) -> dict[str, int]:
    """An HTML export of about `target_bytes`, written in chunks; returns what it holds."""
    per = 2000  # messages per chunk
    written = 0
    counts = {"messages": 0, "bot_prompts": 0, "image": 0}
    start = datetime(2023, 7, 1, tzinfo=UTC)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(PREAMBLE.format(guild="Pika", channel="generate-1", category="GENERATE"))
        k = 0
        while written < target_bytes:
            msgs = big_messages(per, seed + k)
            for m in msgs:
                if m.time is not None:
                    m.time = m.time.replace(tzinfo=UTC) + timedelta(days=k)
            ids = _ids(msgs, start)
            parts = []
            for i, m in enumerate(msgs):
                mid, t = ids[i]
                parts.append('<div class="chatlog__message-group">\n    ')
                parts.append(_container(m, mid, t, True, None, UTC))
                parts.append("</div>\n")
                counts["messages"] += 1
                if m.author == "pika":
                    counts["bot_prompts"] += 1
                    counts["image"] += any(a[0].endswith(".png") for a in m.attachments)
            chunk = "".join(parts)
            fh.write(chunk)
            written += len(chunk.encode("utf-8"))
            k += 1
        fh.write(POSTAMBLE.format(n=counts["messages"]))
    return counts
