"""Every script in examples/ runs (as a user would run it) and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_analysis import build_known_lake

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return build_known_lake(tmp_path_factory.mktemp("known-examples"))


def run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True,
                         text=True, timeout=600, env=env, cwd=EXAMPLES.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"_common.py", "make_example_data.py"}
    assert scripts == {"polars_api.py", "duckdb_shell.py", "similarity_search.py", "train_loop.py"}


def test_polars_api(known):
    out = run("polars_api.py", "--lake", known.uri)
    assert "prompt lengths per source" in out and "vidprom" in out and "diffusiondb" in out
    assert "videos per model" in out and "pika" in out


def test_duckdb_shell(known):
    out = run("duckdb_shell.py", "--lake", known.uri)
    assert "running the DuckDB shell" in out or "through the Python module" in out
    for word in ("red", "cat", "red cat", "share_above_0_5"):
        assert word in out


def test_similarity_search(known):
    out = run("similarity_search.py", "--lake", known.uri)
    lines = out.splitlines()
    assert lines[0].startswith("column embedding; query:")
    assert "from SQL:" in out
    # the query's own cluster comes first (see test_analysis.build_known_lake)
    q = lines[0].split("query: ", 1)[1].strip("'\"")
    cat = {"red cat dancing in the rain", "a red cat", "red cat and blue dog"}
    first = lines[1].split("  ", 2)[-1].strip()
    assert (q in cat) == (first in cat)


@pytest.mark.slow
def test_train_loop(known):
    out = run("train_loop.py", "--lake", known.uri, "--epochs", "2")
    assert "epoch 0: 7 clips" in out and "epoch 1: 7 clips" in out
