"""Shared fixtures: every test builds its own data; nothing reaches the internet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _analysis_cache_outside_home(tmp_path_factory):
    """Analysis-cache copies of object-store lakes go under the test's tmp, never ~/.cache."""
    os.environ["VIDLAKE_CACHE_DIR"] = str(tmp_path_factory.mktemp("vidlake-cache"))


@pytest.fixture
def lake(tmp_path: Path):
    from vidprom_lake import create_lake

    return create_lake(tmp_path / "lake")


@pytest.fixture
def vidprom_csv(tmp_path: Path) -> Path:
    """A 200-row VidProM-shaped CSV."""
    from vidprom_lake import synth

    return synth.write_vidprom_csv(tmp_path / "VidProM_unique.csv", 200, seed=1)
