"""What an enricher is: a named backend that turns prompt texts into vectors or scores.

An enricher is cheap to construct and to ask for its status (no torch import); `open()` loads
the model and returns a *session* that does the work. The runner (`runner.py`) owns everything
about the lake (which rows, chunks, commits, provenance), so a backend only maps texts to values
and says which texts it could not handle.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import MissingDependency, VidlakeError

KINDS = ("embedder", "scorer", "generator")


class EnrichError(VidlakeError):
    """A backend failed for good (bad key, unknown model, missing weights, wrong answers)."""


class UnknownEnricher(VidlakeError):
    """A `--model` spec names no registered enricher."""


@dataclass
class RowFailure:
    """One input the backend could not handle (recorded; nothing is written for it)."""

    index: int
    error: str


@dataclass
class EmbedResult:
    """Vectors for the inputs that worked; `ok[i]` says whether input i got one."""

    vectors: np.ndarray  # (n_ok, dims) float32, rows in input order of the ok inputs
    ok: np.ndarray  # (n,) bool
    failures: list[RowFailure] = field(default_factory=list)


@dataclass
class ScoreResult:
    scores: dict[str, np.ndarray]  # label -> (n_ok,) float32
    ok: np.ndarray
    failures: list[RowFailure] = field(default_factory=list)


class EmbedSession:
    """A loaded embedding model."""

    model_id: str = ""  # full spec, e.g. "openai:text-embedding-3-large"
    dims: int | None = None  # None until known (some servers only tell by answering)

    def embed(self, texts: list[str]) -> EmbedResult:  # pragma: no cover - interface
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release connections, thread pools."""


class ScoreSession:
    model_id: str = ""
    labels: tuple[str, ...] = ()

    def score(self, texts: list[str]) -> ScoreResult:  # pragma: no cover - interface
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class Enricher:
    """Base class of registered backends. Subclasses set the class attributes and `open`."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "embedder"
    description: ClassVar[str] = ""
    extra: ClassVar[str] = ""  # pip extra that installs the packages
    packages: ClassVar[tuple[str, ...]] = ()  # import names checked by status()
    env: ClassVar[tuple[str, ...]] = ()  # environment variables it reads (never stored)
    weights: ClassVar[str] = ""  # where the weights come from, for `vidlake enrichers`
    default_variant: ClassVar[str | None] = None

    def missing_packages(self) -> list[str]:
        return [p for p in self.packages if importlib.util.find_spec(p) is None]

    def require(self, purpose: str | None = None) -> None:
        missing = self.missing_packages()
        if missing:
            raise MissingDependency(missing[0], self.extra or "all",
                                    purpose or f"the {self.name!r} {self.kind}")

    def status(self) -> dict[str, Any]:
        """Installed? What is still needed? Cheap: never imports torch or loads weights."""
        missing = self.missing_packages()
        needs: list[str] = []
        if missing:
            needs.append(f"pip install 'vidprom-lake[{self.extra}]' (missing {', '.join(missing)})")
        needs.extend(self.extra_needs())
        return {
            "name": self.name,
            "kind": self.kind,
            "installed": not missing,
            "ready": not needs,
            "needs": "; ".join(needs) or "-",
            "weights": self.weights or "-",
            "env": ", ".join(self.env) or "-",
            "description": self.description,
        }

    def extra_needs(self) -> list[str]:
        """Things besides packages that are missing (env vars, weights); override."""
        return []

    def model_id(self, variant: str | None) -> str | None:
        """The model id a session would report, if knowable without loading it (else None).

        Lets a rerun on a fully enriched lake finish without loading any model.
        """
        return None

    def open(self, variant: str | None, **options: Any) -> EmbedSession | ScoreSession:
        raise NotImplementedError


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of the given distributions (provenance; absent ones left out)."""
    out: dict[str, str] = {}
    for p in ("vidprom-lake", "pylance", *packages):
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def auto_device(device: str | None) -> str:
    """`device` if given, else cuda, then mps, then cpu (torch imported only here)."""
    if device:
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def env_flag(name: str) -> str | None:
    v = os.environ.get(name)
    return v if v else None


def quiet_transformers() -> None:
    """No weight-loading progress bars from transformers inside our own progress bar."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
