"""Enrichment: embeddings and NSFW scores for prompts, as incremental, resumable batches.

    >>> from vidprom_lake.enrich import embed, score
    >>> embed(lake)                                            # local MiniLM, offline
    >>> embed(lake, model="openai:text-embedding-3-large", dimensions=256, column="emb_oa")
    >>> score(lake, model="detoxify:unbiased", checkpoint="ckpt.pt", config_dir="roberta-base/")

Backends are *enrichers* found by name in one registry. The built-ins register through the same
path third-party packages use: entry points of the group ``vidprom_lake.enrichers`` whose value
is an `Enricher` subclass (or instance). A model spec ``name:variant`` picks the enricher
``name`` and hands it ``variant`` (``openai:text-embedding-3-small``, ``st:/models/e5``,
``detoxify:multilingual``); a bare name uses the enricher's default variant.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from .base import (
    EmbedResult,
    EmbedSession,
    Enricher,
    EnrichError,
    RowFailure,
    ScoreResult,
    ScoreSession,
    UnknownEnricher,
)

if TYPE_CHECKING:
    from .runner import EnrichReport

GROUP = "vidprom_lake.enrichers"

#: The built-ins, declared exactly as a third-party package declares its entry points (and as
#: pyproject.toml lists them), and loaded by the same code.
BUILTIN_ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("minilm", "vidprom_lake.enrich.embed_local:MiniLM", GROUP),
    EntryPoint("st", "vidprom_lake.enrich.embed_local:SentenceTransformers", GROUP),
    EntryPoint("openai", "vidprom_lake.enrich.embed_openai:OpenAIEmbeddings", GROUP),
    EntryPoint("detoxify", "vidprom_lake.enrich.nsfw_detoxify:DetoxifyScorer", GROUP),
    EntryPoint("modelscope", "vidprom_lake.video.generate:ModelScopeGenerator", GROUP),
    EntryPoint("text2video-zero", "vidprom_lake.video.generate:Text2VideoZeroGenerator", GROUP),
    EntryPoint("diffusers", "vidprom_lake.video.generate:DiffusersGenerator", GROUP),
)

_REGISTRY: dict[str, Enricher] = {}
_LOADED = False

DEFAULT_EMBEDDER = "minilm"
DEFAULT_SCORER = "detoxify:unbiased"


def register(enricher: type[Enricher] | Enricher, name: str | None = None) -> Enricher:
    """Add an enricher (class or instance) under `name` (default: its ``name``)."""
    inst = enricher() if isinstance(enricher, type) else enricher
    key = name or inst.name
    if not key or ":" in key:
        raise ValueError(f"enricher name must be non-empty without ':', got {key!r}")
    if inst.kind not in ("embedder", "scorer", "generator"):
        raise ValueError(f"enricher {key!r} has unknown kind {inst.kind!r}")
    _REGISTRY[key] = inst
    return inst


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load(ep: EntryPoint) -> None:
    if ep.name in _REGISTRY:
        return
    register(ep.load(), ep.name)


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for ep in BUILTIN_ENTRY_POINTS:
        _load(ep)
    for ep in entry_points(group=GROUP):
        _load(ep)


def enrichers(kind: str | None = None) -> dict[str, Enricher]:
    """Every registered enricher (built-in and from entry points), optionally of one kind."""
    _load_entry_points()
    return {k: v for k, v in sorted(_REGISTRY.items()) if kind is None or v.kind == kind}


def resolve(spec: str, kind: str) -> tuple[Enricher, str | None]:
    """``"openai:text-embedding-3-large"`` -> (the openai enricher, "text-embedding-3-large")."""
    name, _, variant = spec.partition(":")
    table = enrichers()
    enr = table.get(name)
    if enr is None:
        known = ", ".join(f"{n}" for n, e in table.items() if e.kind == kind)
        raise UnknownEnricher(f"unknown {kind} {name!r} in --model {spec!r}; known: {known} "
                              "(see `vidlake enrichers`)")
    if enr.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UnknownEnricher(f"{name!r} is a {enr.kind}; this needs {article} {kind} "
                              "(see `vidlake enrichers`)")
    return enr, (variant or enr.default_variant)


def status() -> list[dict[str, Any]]:
    """One row per enricher: name, kind, installed, ready, what it needs (`vidlake enrichers`)."""
    return [e.status() for e in enrichers().values()]


def embed(lake: Any, model: str = DEFAULT_EMBEDDER, **options: Any) -> EnrichReport:
    """Embed prompts still missing a vector in `column` (default ``embedding``); see runner.embed."""
    from .runner import embed as run

    return run(lake, model, **options)


def score(lake: Any, model: str = DEFAULT_SCORER, **options: Any) -> EnrichReport:
    """Score prompts still missing NSFW scores; see runner.score."""
    from .runner import score as run

    return run(lake, model, **options)


__all__ = [
    "DEFAULT_EMBEDDER", "DEFAULT_SCORER", "GROUP", "EmbedResult", "EmbedSession", "EnrichError",
    "Enricher", "RowFailure", "ScoreResult", "ScoreSession", "UnknownEnricher", "embed",
    "enrichers", "register", "resolve", "score", "status", "unregister",
]
