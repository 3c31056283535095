"""NSFW scores: the real Detoxify class with a tiny checkpoint built here, through `vidlake score`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from enrich_fixtures import build_detoxify_checkpoint

from vidprom_lake import create_lake
from vidprom_lake.cli import main
from vidprom_lake.enrich import EnrichError, score
from vidprom_lake.schema import NSFW_LABELS

PROMPTS = ["a cute cat in the city at sunset", "a man with a gun and blood", "nude girl",
           "dog", "kill the hate", "video of the sunset, 4k"] * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("detoxify")
    return {v: build_detoxify_checkpoint(d / v, v) for v in ("unbiased", "original")}


@pytest.fixture
def lake(tmp_path: Path):
    lake = create_lake(tmp_path / "lake")
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"{p} #{i}"}) + "\n" for i, p in enumerate(PROMPTS)))
    lake.ingest(str(src))
    return lake


@pytest.fixture(autouse=True)
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached Detoxify weights: the machine is offline and has none."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def _reference(ckpt: Path, cfg: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """What Detoxify itself answers, one text at a time."""
    from vidprom_lake.enrich.nsfw_detoxify import DetoxifySession

    s = DetoxifySession("unbiased", str(ckpt), str(cfg), "cpu", 1)
    out: dict[str, list[float]] = {}
    for t in texts:
        for k, v in s.model.predict([t]).items():
            out.setdefault(k, []).append(float(np.atleast_1d(v)[0]))
    return {k: np.array(v, np.float32) for k, v in out.items()}


def test_score_cli_writes_vidprom_six_plus_severe_toxicity(lake, tiny) -> None:
    ckpt, cfg = tiny["unbiased"]
    res = CliRunner().invoke(main, ["--lake", lake.uri, "score", "--checkpoint", str(ckpt),
                                    "--config-dir", str(cfg), "--batch-size", "5",
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["rows_done"] == len(PROMPTS) and rep["rows_failed"] == 0
    assert rep["columns"] == ",".join(["toxicity", "severe_toxicity", "obscene", "identity_attack",
                                       "insult", "threat", "sexual_explicit"])
    t = lake.dataset("prompts").to_table(columns=["prompt", *NSFW_LABELS, "severe_toxicity",
                                                  "nsfw_model"])
    assert set(t.column("nsfw_model").to_pylist()) == {"detoxify:unbiased"}
    ref = _reference(ckpt, cfg, t.column("prompt").to_pylist())
    for lab in (*NSFW_LABELS, "severe_toxicity"):
        got = np.array(t.column(lab).to_pylist(), np.float32)
        assert ((got > 0) & (got < 1)).all()
        np.testing.assert_allclose(got, ref[lab], atol=1e-5)  # batched == one by one
    assert len(set(np.round(t.column("toxicity").to_pylist(), 6))) > 1  # not a constant
    info = lake.batch_info(rep["batch_id"])
    assert info.kind == "score" and info.provenance["variant"] == "unbiased"
    assert info.provenance["checkpoint"] == ckpt.name
    assert "detoxify" in info.provenance["versions"] and "torch" in info.provenance["versions"]
    meta = lake.dataset("prompts").schema.field("severe_toxicity").metadata
    assert meta[b"vidlake:model"] == b"detoxify:unbiased"
    # Nothing left to do: a rerun loads no model and writes no batch.
    res = CliRunner().invoke(main, ["--lake", lake.uri, "score", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["batch_id"] is None


def test_original_has_no_sexual_explicit(lake, tiny) -> None:
    ckpt, cfg = tiny["original"]
    r = score(lake, "detoxify:original", checkpoint=str(ckpt), config_dir=str(cfg), limit=5)
    assert r.rows_done == 5
    assert "original has no sexual_explicit: set to NULL" in "; ".join(r.notes)
    t = lake.query("select toxicity, severe_toxicity, sexual_explicit, nsfw_model from prompts_raw "
                   "where nsfw_model is not null")
    assert t.num_rows == 5
    assert t.column("sexual_explicit").null_count == 5
    assert t.column("toxicity").null_count == 0 and t.column("severe_toxicity").null_count == 0
    assert lake.count(where="toxicity IS NULL") == len(PROMPTS) - 5


def test_where_limit_and_recompute(lake, tiny) -> None:
    ckpt, cfg = tiny["unbiased"]
    r = score(lake, checkpoint=str(ckpt), config_dir=str(cfg), where="prompt LIKE '%cat%'")
    assert r.rows_done == 4
    r = score(lake, checkpoint=str(ckpt), config_dir=str(cfg), limit=3)
    assert r.rows_done == 3 and lake.count(where="toxicity IS NULL") == len(PROMPTS) - 7
    r = score(lake, checkpoint=str(ckpt), config_dir=str(cfg), recompute=True,
              where="prompt LIKE '%cat%'")
    assert r.rows_done == 4


def test_without_weights_says_how_to_get_them(lake) -> None:
    res = CliRunner().invoke(main, ["--lake", lake.uri, "score"])
    assert res.exit_code == 1
    assert "no weights for detoxify:unbiased (nothing at " in res.output
    assert "`vidlake score --model detoxify:unbiased --download`" in res.output
    assert "toxic_debiased-c7548aa0.ckpt" in res.output and "--checkpoint FILE" in res.output
    res = CliRunner().invoke(main, ["--lake", lake.uri, "score", "--checkpoint", "/nope.ckpt"])
    assert res.exit_code == 1 and "no Detoxify checkpoint at /nope.ckpt" in res.output
    assert lake.count(where="toxicity IS NOT NULL") == 0


def test_checkpoint_without_config_dir_offline(lake, tiny, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, _ = tiny["unbiased"]
    with pytest.raises(EnrichError, match="offline, pass --config-dir DIR"):
        score(lake, checkpoint=str(ckpt))


def test_bad_checkpoint_file(lake, tmp_path: Path, tiny) -> None:
    import torch

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(EnrichError, match="is not a usable Detoxify checkpoint"):
        score(lake, checkpoint=str(bad), config_dir=str(tiny["unbiased"][1]))


def test_cached_weights_are_used(lake, tiny, tmp_path: Path) -> None:
    import shutil

    from vidprom_lake.enrich.nsfw_detoxify import cached_checkpoint

    ckpt, cfg = tiny["unbiased"]
    dest = cached_checkpoint("unbiased")
    dest.parent.mkdir(parents=True)
    shutil.copy(ckpt, dest)
    r = score(lake, config_dir=str(cfg), limit=2)
    assert r.rows_done == 2 and r.provenance["checkpoint"] == dest.name
