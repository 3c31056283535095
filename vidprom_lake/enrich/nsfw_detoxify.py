"""NSFW scores with the real `detoxify` package (VidProM's six probabilities come from it).

Variants: ``unbiased`` (default; VidProM's six labels plus severe_toxicity), ``multilingual``
(same labels), ``original`` (no sexual_explicit), ``original-small``, ``unbiased-small``.

Weights are never fetched behind the user's back. They are taken from ``--checkpoint``, else
from the torch hub cache where Detoxify itself stores them, else downloaded only with
``download=True`` (``vidlake score --download``); otherwise the error says how to get them.

Offline loading: Detoxify's ``huggingface_config_path`` is meant for that, but Detoxify 0.5 still
calls ``config_class.from_pretrained(model_type)`` with the hub name (``roberta-base``) first,
which fails without network. While a `Detoxify` is constructed with ``config_dir``, the model
type it resolves is pointed at that folder; everything else is Detoxify's own code.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    Enricher,
    EnrichError,
    RowFailure,
    ScoreResult,
    ScoreSession,
    auto_device,
    quiet_transformers,
    versions,
)

# Detoxify's own release files (detoxify.detoxify.MODEL_URLS), kept here so `vidlake enrichers`
# can check the cache without importing torch.
_DL = "https://github.com/unitaryai/detoxify/releases/download/"
MODEL_URLS = {
    "original": _DL + "v0.1-alpha/toxic_original-c1212f89.ckpt",
    "unbiased": _DL + "v0.3-alpha/toxic_debiased-c7548aa0.ckpt",
    "multilingual": _DL + "v0.4-alpha/multilingual_debiased-0b549669.ckpt",
    "original-small": _DL + "v0.1.2/original-albert-0e1d6498.ckpt",
    "unbiased-small": _DL + "v0.1.2/unbiased-albert-c8519128.ckpt",
}
HUB_CONFIG = {
    "original": "bert-base-uncased",
    "unbiased": "roberta-base",
    "multilingual": "xlm-roberta-base",
    "original-small": "albert-base-v2",
    "unbiased-small": "albert-base-v2",
}
_PATCH_LOCK = threading.Lock()


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]) / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "torch" / "hub"


def cached_checkpoint(variant: str) -> Path:
    return torch_hub_dir() / "checkpoints" / MODEL_URLS[variant].rsplit("/", 1)[1]


def column_name(label: str) -> str:
    """A Detoxify label as a column name (they already are; this guards odd checkpoints)."""
    return re.sub(r"[^0-9a-z_]", "_", label.strip().lower()) or "label"


def how_to_get(variant: str) -> str:
    path = cached_checkpoint(variant)
    return (f"get the weights with `vidlake score --model detoxify:{variant} --download` (once, "
            f"online; Detoxify caches them in {path.parent}), or download {MODEL_URLS[variant]} "
            "yourself and pass --checkpoint FILE; offline also pass --config-dir DIR holding "
            f"the {HUB_CONFIG[variant]} config.json and tokenizer files "
            f"(`huggingface-cli download {HUB_CONFIG[variant]} --local-dir DIR`)")


@contextlib.contextmanager
def _config_dir_as_model_type(config_dir: str | None) -> Iterator[None]:
    if not config_dir:
        yield
        return
    import detoxify.detoxify as dd

    with _PATCH_LOCK:
        original = dd.get_model_and_tokenizer

        def local(model_type: str, *args: Any, huggingface_config_path: str | None = None,
                  **kwargs: Any) -> Any:
            return original(huggingface_config_path or model_type, *args,
                            huggingface_config_path=huggingface_config_path, **kwargs)

        dd.get_model_and_tokenizer = local
        try:
            yield
        finally:
            dd.get_model_and_tokenizer = original


class DetoxifySession(ScoreSession):
    def __init__(self, variant: str, checkpoint: str | None, config_dir: str | None,
                 device: str | None, batch_size: int | None):
        from detoxify import Detoxify

        self.variant = variant
        self.model_id = f"detoxify:{variant}"
        self.checkpoint = checkpoint
        self.config_dir = config_dir
        self.batch_size = batch_size or 32
        self.device = auto_device(device)
        quiet_transformers()
        try:
            with _config_dir_as_model_type(config_dir):
                self.model = Detoxify(variant, checkpoint=checkpoint, device=self.device,
                                      huggingface_config_path=config_dir)
        except OSError as exc:
            if checkpoint and not config_dir:
                raise EnrichError(
                    f"Detoxify could not load the {HUB_CONFIG.get(variant, 'base model')} config/"
                    f"tokenizer ({str(exc).splitlines()[0]}); offline, pass --config-dir DIR "
                    f"holding them (`huggingface-cli download {HUB_CONFIG.get(variant)} "
                    "--local-dir DIR` on a machine with network)") from exc
            raise EnrichError(f"Detoxify could not load its model: {str(exc).splitlines()[0]}; "
                              + how_to_get(variant)) from exc
        except (ValueError, KeyError, RuntimeError) as exc:
            where = checkpoint or "the downloaded checkpoint"
            raise EnrichError(f"{where} is not a usable Detoxify checkpoint: {exc}") from exc
        self.raw_labels = tuple(self.model.class_names)
        self.labels = tuple(column_name(c) for c in self.raw_labels)

    def provenance(self) -> dict[str, Any]:
        ck = self.checkpoint
        return {
            "backend": "detoxify",
            "model": self.model_id,
            "variant": self.variant,
            "labels": list(self.labels),
            "checkpoint": os.path.basename(ck) if ck else MODEL_URLS.get(self.variant),
            "checkpoint_bytes": os.path.getsize(ck) if ck and os.path.exists(ck) else None,
            "config_dir": os.path.basename(os.path.normpath(self.config_dir)) if self.config_dir else None,
            "device": self.device,
            "versions": versions("detoxify", "torch", "transformers"),
        }

    def score(self, texts: list[str]) -> ScoreResult:
        n = len(texts)
        ok = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
        failures = [RowFailure(int(i), "empty text") for i in np.flatnonzero(~ok)]
        idx = np.flatnonzero(ok)
        # Shortest first: padding is per batch, so similar lengths batch together cheaply.
        order = idx[np.argsort([len(texts[i]) for i in idx], kind="stable")]
        out = {lab: np.full(n, np.nan, np.float32) for lab in self.labels}
        for s in range(0, len(order), self.batch_size):
            part = order[s:s + self.batch_size]
            res = self.model.predict([texts[i] for i in part])
            for raw, lab in zip(self.raw_labels, self.labels, strict=True):
                vals = res[raw]
                out[lab][part] = np.atleast_1d(np.asarray(vals, dtype=np.float32))
        if len(idx):
            finite = np.all([np.isfinite(out[lab]) | ~ok for lab in self.labels], axis=0)
            for i in np.flatnonzero(~finite):
                failures.append(RowFailure(int(i), "model returned NaN/inf"))
                ok[i] = False
        failures.sort(key=lambda f: f.index)
        return ScoreResult({lab: v[ok] for lab, v in out.items()}, ok, failures)


class DetoxifyScorer(Enricher):
    name = "detoxify"
    kind = "scorer"
    description = ("Detoxify toxicity/NSFW probabilities: unbiased (default; VidProM's six + "
                   "severe_toxicity), multilingual, original")
    extra = "nsfw"
    packages = ("detoxify", "torch", "transformers")
    weights = "checkpoint: --checkpoint FILE, the torch hub cache, or --download"
    default_variant = "unbiased"

    def extra_needs(self) -> list[str]:
        have = [v for v in ("unbiased", "multilingual", "original") if cached_checkpoint(v).exists()]
        if have:
            return []
        return ["weights: --checkpoint FILE or `vidlake score --download` (none cached in "
                f"{torch_hub_dir() / 'checkpoints'})"]

    def status(self) -> dict[str, Any]:
        st = super().status()
        cached = [v for v in MODEL_URLS if cached_checkpoint(v).exists()]
        st["weights"] = "cached: " + ", ".join(cached) if cached else self.weights
        return st

    def open(self, variant: str | None, **options: Any) -> DetoxifySession:
        self.require("NSFW scoring (Detoxify)")
        variant = variant or self.default_variant
        if variant not in MODEL_URLS:
            raise EnrichError(f"unknown Detoxify model {variant!r}; choose one of "
                              f"{', '.join(MODEL_URLS)}")
        checkpoint = options.get("checkpoint")
        config_dir = options.get("config_dir")
        if checkpoint:
            checkpoint = os.path.expanduser(str(checkpoint))
            if not os.path.isfile(checkpoint):
                raise EnrichError(f"no Detoxify checkpoint at {checkpoint}; " + how_to_get(variant))
        else:
            cached = cached_checkpoint(variant)
            if cached.is_file():
                checkpoint = str(cached)
            elif not options.get("download"):
                raise EnrichError(f"no weights for detoxify:{variant} (nothing at {cached}); "
                                  + how_to_get(variant))
        if config_dir:
            config_dir = os.path.expanduser(str(config_dir))
            if not os.path.isdir(config_dir):
                raise EnrichError(f"--config-dir {config_dir} is not a folder (it must hold the "
                                  f"{HUB_CONFIG[variant]} config.json and tokenizer files)")
        return DetoxifySession(variant, checkpoint, config_dir, options.get("device"),
                               options.get("batch_size"))
