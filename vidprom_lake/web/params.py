"""Query parameters of the gallery pages, parsed and validated before anything touches the lake.

Every value a browser sends is untrusted. Here each one becomes a typed value (an int, a
float in [0, 1], a date, one of a fixed set of words, a value the lake is known to hold) or
the request ends with 400 and a message naming the parameter and what it accepts. The SQL
built from a `ListQuery` (see `gallery.py`) takes these typed values as bound ``?``
parameters only; column names come from constants in this package, never from a request.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import urlencode

from ..schema import NSFW_LABELS

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Model names as the video importer accepts them (`video.importer.MODEL_RE`).
MODEL_RE = re.compile(r"^[A-Za-z0-9_.+:/-]{1,128}$")

SORTS = ("newest", "oldest", "longest", "shortest", "random")
MODES = ("text", "semantic")
DEDUP = ("all", "unique", "duplicate", "unscored")
PER_PAGE = (24, 48, 96, 192)
DEFAULT_PER_PAGE = 48
MAX_PAGE = 10_000
MAX_QUERY_CHARS = 500
#: Prompts scoring above this in any NSFW category are hidden unless the switch says show.
DEFAULT_NSFW_MAX = 0.5


class BadParam(ValueError):
    """A query parameter the gallery cannot accept (becomes HTTP 400)."""

    def __init__(self, name: str, value: Any, accepted: str):
        shown = str(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"bad value {shown!r} for {name!r}: expected {accepted}")
        self.name = name


@dataclass(frozen=True)
class ListQuery:
    """What the prompt list (and the thumbnail grid) shows: search, filters, order, page."""

    q: str = ""
    mode: str = "text"
    like: str | None = None
    sort: str = "newest"
    seed: int = 0
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    source: str | None = None
    model: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    dedup: str = "all"
    show_nsfw: bool = False
    nsfw_max: dict[str, float] = field(default_factory=lambda: dict.fromkeys(NSFW_LABELS,
                                                                             DEFAULT_NSFW_MAX))

    @property
    def searching(self) -> bool:
        return bool(self.q) or self.like is not None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def nsfw_filters(self) -> dict[str, float]:
        """Per category, the highest score shown; empty when the switch shows everything.

        A slider at 1.0 filters nothing, so it is left out of the SQL."""
        if self.show_nsfw:
            return {}
        return {k: v for k, v in self.nsfw_max.items() if v < 1.0}

    def to_params(self, **changes: Any) -> dict[str, str]:
        """The query string of this query (with `changes`), leaving defaults out."""
        lq = replace(self, **changes) if changes else self
        out: dict[str, str] = {}
        if lq.q:
            out["q"] = lq.q
            if lq.mode != "text":
                out["mode"] = lq.mode
        if lq.like:
            out["like"] = lq.like
        if lq.sort != "newest" and not lq.searching:
            out["sort"] = lq.sort
        if lq.sort == "random" and not lq.searching:
            out["seed"] = str(lq.seed)
        if lq.page != 1:
            out["page"] = str(lq.page)
        if lq.per_page != DEFAULT_PER_PAGE:
            out["per_page"] = str(lq.per_page)
        if lq.source:
            out["source"] = lq.source
        if lq.model:
            out["model"] = lq.model
        if lq.date_from:
            out["from"] = lq.date_from.isoformat()
        if lq.date_to:
            out["to"] = lq.date_to.isoformat()
        if lq.dedup != "all":
            out["dedup"] = lq.dedup
        if lq.show_nsfw:
            out["show_nsfw"] = "1"
        for k in NSFW_LABELS:
            if lq.nsfw_max[k] != DEFAULT_NSFW_MAX:
                out[f"max_{k}"] = _fmt_float(lq.nsfw_max[k])
        return out

    def url(self, path: str = "/", **changes: Any) -> str:
        qs = urlencode(self.to_params(**changes))
        return f"{path}?{qs}" if qs else path


def _fmt_float(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") or "0"


def _one(params: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, stripped; an empty value counts as absent (HTML forms send them)."""
    v = params.get(name)
    if v is None:
        return None
    v = v.strip()
    return v or None


def parse_int(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    v = _one(params, name)
    if v is None:
        return default
    if not re.fullmatch(r"\d{1,9}", v):
        raise BadParam(name, v, f"a whole number from {lo} to {hi}")
    n = int(v)
    if not lo <= n <= hi:
        raise BadParam(name, v, f"a whole number from {lo} to {hi}")
    return n


def parse_choice(params: Mapping[str, str], name: str, choices: tuple[str, ...],
                 default: str) -> str:
    v = _one(params, name)
    if v is None:
        return default
    if v not in choices:
        raise BadParam(name, v, "one of " + ", ".join(choices))
    return v


def parse_unit_float(params: Mapping[str, str], name: str, default: float) -> float:
    v = _one(params, name)
    if v is None:
        return default
    try:
        x = float(v)
    except ValueError:
        raise BadParam(name, v, "a number from 0 to 1") from None
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise BadParam(name, v, "a number from 0 to 1")
    return x


def parse_date(params: Mapping[str, str], name: str) -> date | None:
    v = _one(params, name)
    if v is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
            raise ValueError
        return date.fromisoformat(v)
    except ValueError:
        raise BadParam(name, v, "a date as YYYY-MM-DD") from None


def parse_bool(params: Mapping[str, str], name: str) -> bool:
    v = _one(params, name)
    if v is None:
        return False
    if v.lower() in ("1", "true", "on", "yes"):
        return True
    if v.lower() in ("0", "false", "off", "no"):
        return False
    raise BadParam(name, v, "1 or 0")


def parse_uuid(value: str | None, name: str = "uuid") -> str:
    v = (value or "").strip().lower()
    if not UUID_RE.match(v):
        raise BadParam(name, value, "a prompt uuid (8-4-4-4-12 hex digits)")
    return v


def parse_list_query(params: Mapping[str, str], *, sources: frozenset[str] | set[str],
                     models: frozenset[str] | set[str]) -> ListQuery:
    """A `ListQuery` from a request's query parameters; `BadParam` names the first bad one.

    `sources` and `models` are the values the lake holds: a filter on any other value is a
    bad parameter (so no free text ever reaches a filter).
    """
    q = params.get("q") or ""
    q = " ".join(q.split())  # newlines and runs of blanks mean nothing to either search
    if len(q) > MAX_QUERY_CHARS:
        raise BadParam("q", q, f"at most {MAX_QUERY_CHARS} characters")
    like_raw = _one(params, "like")
    like = parse_uuid(like_raw, "like") if like_raw is not None else None
    if like and q:
        raise BadParam("like", like, "either a search text (q) or like, not both")
    mode = parse_choice(params, "mode", MODES, "text")
    sort = parse_choice(params, "sort", SORTS, "newest")
    seed = parse_int(params, "seed", -1, 0, 999_999_999)
    if seed < 0:
        seed = secrets.randbelow(1_000_000_000) if sort == "random" else 0
    page = parse_int(params, "page", 1, 1, MAX_PAGE)
    per_page = parse_int(params, "per_page", DEFAULT_PER_PAGE, 1, max(PER_PAGE))
    source = _one(params, "source")
    if source is not None and source not in sources:
        known = ", ".join(sorted(sources)[:20]) or "none in this lake"
        raise BadParam("source", source, f"a source the lake holds ({known})")
    model = _one(params, "model")
    if model is not None and model != "any" and (not MODEL_RE.match(model) or model not in models):
        known = ", ".join(["any", *sorted(models)[:20]])
        raise BadParam("model", model, f"a model with videos in the lake ({known})")
    date_from = parse_date(params, "from")
    date_to = parse_date(params, "to")
    if date_from and date_to and date_to < date_from:
        raise BadParam("to", date_to.isoformat(), f"a date on or after from={date_from}")
    dedup = parse_choice(params, "dedup", DEDUP, "all")
    show = parse_bool(params, "show_nsfw")
    nsfw = {k: parse_unit_float(params, f"max_{k}", DEFAULT_NSFW_MAX) for k in NSFW_LABELS}
    return ListQuery(q=q, mode=mode, like=like, sort=sort, seed=seed, page=page,
                     per_page=per_page, source=source, model=model, date_from=date_from,
                     date_to=date_to, dedup=dedup, show_nsfw=show, nsfw_max=nsfw)
