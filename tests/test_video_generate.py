"""Generation with the real diffusers pipelines (tiny random weights, CPU), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from video_fixtures import (
    lake_with_prompts,
    tiny_animatediff,
    tiny_modelscope,
    tiny_text2video_zero_sd,
)

pytest.importorskip("diffusers")
pytest.importorskip("av")

SMALL = ["--frames", "4", "--steps", "2", "--height", "32", "--width", "32"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """On a shared 2-core box, torch's OpenMP threads spin against other processes and the tiny
    pipelines run ~20x slower with 2 threads than with 1; restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    return {"ms": tiny_modelscope(root / "tiny-ms"),
            "sd": tiny_text2video_zero_sd(root / "tiny-sd"),
            "ad": tiny_animatediff(root / "tiny-animatediff")}


def _run(args: list[str]):
    from click.testing import CliRunner

    from vidprom_lake.cli import main

    return CliRunner().invoke(main, args)


def test_modelscope_preset_cli_end_to_end_then_resume(tmp_path, weights):
    lake, uuids = lake_with_prompts(tmp_path, n=12)
    args = ["--lake", lake.uri, "generate", "--model", "modelscope", "--checkpoint",
            str(weights["ms"]), "--limit", "3", *SMALL, "--fps", "8", "--seed", "42",
            "--batch-size", "2", "--chunk", "2", "--format", "json"]
    res = _run(args)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["generated"] == 3 and rep["label"] == "ms" and rep["chunks"] == 2
    assert rep["pipeline"] == "TextToVideoSDPipeline"
    assert (rep["device"], rep["dtype"]) == ("cpu", "float32")
    assert rep["pipeline_seconds"] > 0 and rep["overhead_pct"] is not None

    rows = lake.query("select video_id, uuid, model, codec, width, height, fps, num_frames, "
                      "params, batch_id from videos order by uuid").to_pylist()
    first3 = sorted(uuids)[:3]
    assert [r["uuid"] for r in rows] == first3  # the selection is ordered by uuid
    from vidprom_lake.video.generate import video_seed

    for r in rows:
        assert (r["model"], r["codec"], r["width"], r["height"], r["num_frames"]) == (
            "ms", "h264", 32, 32, 4)
        assert r["fps"] == pytest.approx(8.0)
        p = json.loads(r["params"])
        assert p["seed"] == video_seed(r["uuid"], "ms", 42) and p["run_seed"] == 42
        assert p["steps"] == 2 and p["encode"]["pix_fmt"] == "yuv420p"
        assert p["encode"]["movflags"] == "+faststart"
        assert r["batch_id"] == rep["batch_id"]
    info = lake.batch_info(rep["batch_id"])
    assert info.kind == "generate" and info.status == "committed"
    assert info.provenance["pipeline"] == "TextToVideoSDPipeline"
    assert "diffusers" in info.provenance["versions"]

    # faststart: the moov atom comes before mdat in the stored bytes
    from vidprom_lake.video import read_video

    data = read_video(lake, rows[0]["uuid"], "ms")
    assert data.index(b"moov") < data.index(b"mdat")

    # the same command again: nothing to do, the pipeline is not even loaded
    res = _run(args)
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)[0]
    assert again["generated"] == 0 and again["already_in_lake"] == 3
    assert again["batch_id"] is None and again["pipeline"] is None
    assert lake.count("videos") == 3


def test_seeds_reproduce_and_differ(tmp_path, weights):
    from vidprom_lake.video import generate

    shas = []
    for i, seed in enumerate((7, 7, 8)):
        lake, _ = lake_with_prompts(tmp_path / str(i), n=3)
        generate(lake, "modelscope", checkpoint=str(weights["ms"]), limit=1, frames=4, steps=2,
                 height=32, width=32, seed=seed)
        shas.append(lake.query("select sha256 from videos order by uuid").column(0).to_pylist())
    assert shas[0] == shas[1]
    assert set(shas[0]).isdisjoint(shas[2])


def test_text2video_zero_preset_with_where(tmp_path, weights):
    lake, _ = lake_with_prompts(tmp_path, n=12)
    want = lake.query("select uuid from prompts where toxicity < 0.5 order by uuid limit 2")
    res = _run(["--lake", lake.uri, "generate", "--model", "text2video-zero", "--checkpoint",
                str(weights["sd"]), "--where", "toxicity < 0.5", "--limit", "2", "--frames", "3",
                "--steps", "3", "--height", "32", "--width", "32", "--fps", "4",
                "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["pipeline"] == "TextToVideoZeroPipeline" and rep["label"] == "t2vz"
    from vidprom_lake import open_lake

    lake = open_lake(lake.uri)  # another writer (the CLI) moved the head; reopen to see it
    got = lake.query("select uuid, num_frames, fps from videos order by uuid").to_pylist()
    assert [g["uuid"] for g in got] == want.column(0).to_pylist()
    assert all(g["num_frames"] == 3 and g["fps"] == pytest.approx(4.0) for g in got)


def test_any_diffusers_pipeline_by_path(tmp_path, weights):
    lake, uuids = lake_with_prompts(tmp_path, n=5)
    res = _run(["--lake", lake.uri, "generate", "--model", f"diffusers:{weights['ad']}",
                "--name", "animatediff-tiny", "--limit", "1", *SMALL, "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)[0]
    assert rep["pipeline"] == "AnimateDiffPipeline" and rep["generated"] == 1
    vid = lake.query("select video_id, num_frames from videos").to_pylist()[0]
    assert vid == {"video_id": f"animatediff-tiny-{sorted(uuids)[0]}", "num_frames": 4}

    out = tmp_path / "a.mp4"
    res = _run(["--lake", lake.uri, "video", sorted(uuids)[0], "--model", "animatediff-tiny",
                "-o", str(out)])
    assert res.exit_code == 0, res.output
    import av

    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_crash_mid_run_keeps_committed_chunks_and_rerun_completes(tmp_path, weights):
    from vidprom_lake.video import generate
    from vidprom_lake.video.generate import PRESETS, load_pipeline, replace

    lake, _ = lake_with_prompts(tmp_path, n=8)
    spec = replace(PRESETS["modelscope"], checkpoint=str(weights["ms"]))
    real = load_pipeline(spec, device="cpu", dtype="float32")

    class DiesOnThirdCall:  # test-only wrapper around the real pipeline
        def __init__(self, pipe):
            self.pipe = pipe
            self.calls = 0

        def __call__(self, prompt, num_frames=16, num_inference_steps=50, height=None,
                     width=None, guidance_scale=9.0, negative_prompt=None, generator=None,
                     output_type="np"):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("CUDA out of memory (simulated)")
            return self.pipe(prompt=prompt, num_frames=num_frames,
                             num_inference_steps=num_inference_steps, height=height,
                             width=width, guidance_scale=guidance_scale,
                             negative_prompt=negative_prompt, generator=generator,
                             output_type=output_type)

    opts = dict(limit=4, frames=4, steps=2, height=32, width=32, batch_size=1, chunk=2)
    with pytest.raises(RuntimeError, match="simulated"):
        generate(lake, "modelscope", checkpoint=str(weights["ms"]),
                 pipeline=DiesOnThirdCall(real), **opts)
    assert lake.count("videos") == 2
    failed = lake.log()[-1]
    assert failed.status == "failed" and "simulated" in failed.message
    rep = generate(lake, "modelscope", checkpoint=str(weights["ms"]), pipeline=real, **opts)
    assert rep.generated == 2 and rep.already_in_lake == 2
    assert lake.count("videos") == 4


def test_missing_weights_and_bad_options(tmp_path, monkeypatch):
    lake, _ = lake_with_prompts(tmp_path, n=3)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = _run(["--lake", lake.uri, "generate", "--model", "modelscope", "--limit", "1"])
    assert res.exit_code == 1
    assert ("weights for damo-vilab/text-to-video-ms-1.7b are not in the Hugging Face cache"
            in res.output)
    assert "--download" in res.output and "--checkpoint PATH" in res.output
    res = _run(["--lake", lake.uri, "generate", "--model", "sora"])
    assert res.exit_code == 1
    assert "unknown generator 'sora'; use one of modelscope, text2video-zero" in res.output
    res = _run(["--lake", lake.uri, "generate", "--model", "modelscope", "--where", "nope > 1"])
    assert res.exit_code == 1 and "bad --where 'nope > 1'" in res.output
    res = _run(["--lake", lake.uri, "generate", "--model", "modelscope", "--height", "30"])
    assert res.exit_code == 1 and "--height must be a positive multiple of 8, not 30" in res.output


def test_device_and_seed_helpers():
    from vidprom_lake.video.generate import pick_device, resolve, video_seed

    assert pick_device() == ("cpu", "float32")  # no GPU here
    assert pick_device("cpu", "bfloat16") == ("cpu", "bfloat16")
    assert video_seed("u", "ms", 1) == video_seed("u", "ms", 1) != video_seed("u", "ms", 2)
    assert video_seed("u", "ms", 1) != video_seed("u", "t2vz", 1)
    assert resolve("ms").label == "ms" and resolve("t2vz").name == "text2video-zero"
    wan = resolve("diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert wan.label == "wan2.1-t2v-1.3b-diffusers" and wan.pipeline_class is None


def test_generators_are_registered_enrichers(tmp_path, weights):
    from vidprom_lake import enrich
    from vidprom_lake.video.generate import (
        DiffusersGenerator,
        ModelScopeGenerator,
        Text2VideoZeroGenerator,
    )

    for cls in (ModelScopeGenerator, Text2VideoZeroGenerator, DiffusersGenerator):
        if cls.name not in enrich.enrichers("generator"):
            enrich.register(cls)
    enr, variant = enrich.resolve(f"diffusers:{weights['ms']}", "generator")
    assert isinstance(enr, DiffusersGenerator) and variant == str(weights["ms"])
    lake, _ = lake_with_prompts(tmp_path, n=3)
    rep = enr.run(lake, variant, name="via-registry", limit=1, frames=4, steps=2, height=32,
                  width=32)
    assert rep.generated == 1 and rep.label == "via-registry"
    status = {s["name"]: s for s in enrich.status() if s["kind"] == "generator"}
    assert status["modelscope"]["installed"] is True
