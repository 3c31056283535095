"""Concurrent import/generate runs for different models, from separate processes, all land."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from video_fixtures import lake_with_prompts, make_mp4, tiny_modelscope, write_tar

pytest.importorskip("av")
pytest.importorskip("diffusers")


@pytest.mark.slow
def test_concurrent_imports_and_generate_from_processes(tmp_path: Path):
    lake, uuids = lake_with_prompts(tmp_path, n=30)
    clip = make_mp4(n=4)
    shards = {}
    for model, part in (("pika", uuids[:12]), ("vc2", uuids[6:18])):
        shards[model] = write_tar(tmp_path / f"{model}.tar",
                                  {f"{model}-{u}.mp4": clip for u in part})
    weights = tiny_modelscope(tmp_path / "tiny-ms")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cli = [sys.executable, "-m", "vidprom_lake.cli", "--lake", lake.uri]
    procs = [
        subprocess.Popen([*cli, "import-videos", str(shards["pika"]), "--model", "pika",
                          "--chunk", "3", "--format", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env),
        subprocess.Popen([*cli, "import-videos", str(shards["vc2"]), "--model", "vc2",
                          "--chunk", "2", "--format", "json"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env),
        subprocess.Popen([*cli, "generate", "--model", "modelscope", "--checkpoint", str(weights),
                          "--limit", "3", "--frames", "4", "--steps", "2", "--height", "32",
                          "--width", "32", "--batch-size", "1", "--chunk", "1",
                          "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env),
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err.decode()[-3000:]
        outs.append(json.loads(out)[0])
    assert outs[0]["imported"] == 12 and outs[1]["imported"] == 12 and outs[2]["generated"] == 3
    from vidprom_lake import open_lake

    lake = open_lake(lake.uri)
    rows = lake.query("select model, count(*) n from videos group by model").to_pylist()
    counts = {r["model"]: r["n"] for r in rows}
    assert counts == {"pika": 12, "vc2": 12, "ms": 3}
    ids = lake.query("select video_id from videos").column(0).to_pylist()
    assert len(ids) == len(set(ids)) == 27
    statuses = {b.batch_id: b.status for b in lake.log()}
    for o in outs:
        assert statuses[o["batch_id"]] == "committed"
