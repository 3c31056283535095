"""Generating videos for the lake's prompts with diffusers.

A generator is a *spec* (what to load, which call arguments it takes, the label its videos
carry in the ``model`` column) plus a loaded pipeline. Built-in presets follow VidProM:

- ``modelscope``: ModelScope text-to-video (``damo-vilab/text-to-video-ms-1.7b``,
  `TextToVideoSDPipeline`), label ``ms``, 16 frames at 8 fps, 256x256;
- ``text2video-zero``: `TextToVideoZeroPipeline` on a Stable Diffusion checkpoint
  (``stable-diffusion-v1-5/stable-diffusion-v1-5`` by default), label ``t2vz``, 8 frames at 4 fps,
  512x512, one prompt per call (the pipeline animates one prompt at a time);
- ``diffusers:<hub id or local path>``: any diffusers text-to-video pipeline
  (`DiffusionPipeline.from_pretrained` picks the class from ``model_index.json``), e.g.
  ``diffusers:Wan-AI/Wan2.1-T2V-1.3B-Diffusers``; its call must take ``num_frames`` (or
  ``video_length``).

Weights come from the Hugging Face cache or a local folder (``local_files_only``); downloading
needs an explicit ``download=True`` (``--download``). Each video gets its own seed, derived from
(prompt uuid, model label, run seed), and its own CPU ``torch.Generator``, so a rerun (or a run
with another batch size or device) starts every video from the same noise.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import InputError, QueryError, VidlakeError
from ..schema import VIDEOS_SCHEMA
from . import _deps
from .encode import EncodeParams, encode_mp4, to_uint8_frames
from .importer import MODEL_RE, current, existing_video_ids, rows_to_batch
from .probe import ProbeError, probe_bytes
from .thumbs import thumbnail

if TYPE_CHECKING:
    from ..lake import Lake


class GenerationError(VidlakeError):
    """The pipeline could not be loaded or produced unusable output."""


@dataclass(frozen=True)
class GeneratorSpec:
    """What to load and how to call it. Presets are instances; ``diffusers:<id>`` builds one."""

    name: str  # preset name or "diffusers:<id>"
    label: str  # the `model` column value of its videos
    checkpoint: str  # hub id or local path
    pipeline_class: str | None  # diffusers class name; None = from model_index.json
    frames: int = 16
    fps: float = 8.0
    steps: int = 25
    height: int | None = None
    width: int | None = None
    guidance: float | None = None
    batch_size: int = 4
    max_batch: int | None = None  # pipelines that take one prompt per call
    cuda_dtype: str = "float16"
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, GeneratorSpec] = {
    "modelscope": GeneratorSpec(
        name="modelscope", label="ms", checkpoint="damo-vilab/text-to-video-ms-1.7b",
        pipeline_class="TextToVideoSDPipeline", frames=16, fps=8.0, steps=25, height=256,
        width=256, guidance=9.0, batch_size=4, cuda_dtype="float16",
        description="ModelScope text-to-video 1.7B (VidProM's `ms` videos)"),
    "text2video-zero": GeneratorSpec(
        name="text2video-zero", label="t2vz",
        checkpoint="stable-diffusion-v1-5/stable-diffusion-v1-5",
        pipeline_class="TextToVideoZeroPipeline", frames=8, fps=4.0, steps=50, height=512,
        width=512, guidance=7.5, batch_size=1, max_batch=1, cuda_dtype="float16",
        description="Text2Video-Zero on a Stable Diffusion checkpoint (VidProM's `t2vz` videos)"),
}
ALIASES = {"ms": "modelscope", "t2vz": "text2video-zero", "text2video_zero": "text2video-zero"}


def resolve(model: str, *, checkpoint: str | None = None, label: str | None = None) -> GeneratorSpec:
    """A preset name, an alias (``ms``, ``t2vz``) or ``diffusers:<hub id or local path>``."""
    key = ALIASES.get(model, model)
    if key in PRESETS:
        spec = PRESETS[key]
    elif model.startswith("diffusers:") and len(model) > len("diffusers:"):
        ref = model[len("diffusers:"):]
        base = os.path.basename(ref.rstrip("/\\")) or ref
        spec = GeneratorSpec(name=model, label=base.lower(), checkpoint=ref, pipeline_class=None,
                             batch_size=1, cuda_dtype="bfloat16", description=f"diffusers {ref}")
    else:
        raise InputError(
            f"unknown generator {model!r}; use one of {', '.join(PRESETS)} or "
            "diffusers:<hub id or local path>")
    if checkpoint:
        spec = replace(spec, checkpoint=checkpoint)
    if label:
        spec = replace(spec, label=label)
    if not MODEL_RE.match(spec.label) or _looks_uuid_tail(spec.label):
        raise InputError(f"model label {spec.label!r} is not usable; pass --name LABEL")
    return spec


def _looks_uuid_tail(label: str) -> bool:
    return len(label) >= 36 and label[-36:].count("-") == 4


def video_seed(uuid: str, model: str, seed: int) -> int:
    """The seed of one video: stable across runs, batch sizes, devices and machines."""
    digest = hashlib.sha256(f"{uuid}\x00{model}\x00{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


# ---------------------------------------------------------------------- device & loading
DTYPES = ("auto", "float32", "float16", "bfloat16")


def pick_device(device: str | None = None, dtype: str | None = None,
                cuda_dtype: str = "float16") -> tuple[str, str]:
    """(device, dtype): CUDA in fp16/bf16, Apple MPS in fp16, else CPU in fp32."""
    torch = _deps.torch()
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype in (None, "", "auto"):
        if device.startswith("cuda"):
            dtype = cuda_dtype
            if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
                dtype = "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "float32"
    if dtype not in DTYPES[1:]:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return device, dtype


def load_pipeline(spec: GeneratorSpec, *, device: str, dtype: str, download: bool = False) -> Any:
    """Load the spec's pipeline from a local folder or the HF cache (download only if asked)."""
    torch = _deps.torch()
    diffusers = _deps.diffusers()
    cls = getattr(diffusers, spec.pipeline_class) if spec.pipeline_class else diffusers.DiffusionPipeline
    local = os.path.isdir(spec.checkpoint)
    # diffusers renamed torch_dtype to dtype (the old name warns); pass what this version takes.
    from diffusers.utils import deprecation_utils

    dtype_kw = "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"
    opts = {dtype_kw: getattr(torch, dtype), "local_files_only": local or not download}
    logging = diffusers.utils.logging
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        if spec.pipeline_class == "TextToVideoZeroPipeline":
            # Text2Video-Zero runs on a plain Stable Diffusion checkpoint: load that, then build
            # the video pipeline from its components (safety checker kept if it has one).
            base = diffusers.DiffusionPipeline.from_pretrained(spec.checkpoint, **opts)
            params = inspect.signature(cls.__init__).parameters
            comps = {k: base.components.get(k) for k in params
                     if k not in ("self", "requires_safety_checker")}
            pipe = cls(**comps, requires_safety_checker=comps.get("safety_checker") is not None)
        else:
            pipe = cls.from_pretrained(spec.checkpoint, **opts)
    except (OSError, ValueError) as exc:
        if local:
            raise GenerationError(f"cannot load a diffusers pipeline from {spec.checkpoint}: {exc}") from None
        hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        raise GenerationError(
            f"weights for {spec.checkpoint} are not in the Hugging Face cache ({hub}): "
            f"download them once with `hf download {spec.checkpoint}` (or rerun with --download), "
            f"or pass a local folder with --checkpoint PATH ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})") from None
    finally:
        if bars:
            logging.enable_progress_bar()
    pipe = pipe.to(device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------- calling
@dataclass
class GenParams:
    frames: int
    fps: float
    steps: int
    height: int | None
    width: int | None
    guidance: float | None
    seed: int
    negative_prompt: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def call_pipeline(pipe: Any, prompts: list[str], seeds: list[int], p: GenParams) -> list[np.ndarray]:
    """Run one pipeline call for a batch of prompts; returns one (T, H, W, C) array per prompt."""
    torch = _deps.torch()
    sig = inspect.signature(pipe.__call__).parameters
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    kw: dict[str, Any] = {"prompt": prompts if len(prompts) > 1 else prompts[0]}
    if "num_frames" in sig:
        kw["num_frames"] = p.frames
    elif "video_length" in sig:
        kw["video_length"] = p.frames
    else:
        raise GenerationError(
            f"{type(pipe).__name__} takes neither num_frames nor video_length: "
            "not a text-to-video pipeline")
    for name, value in (("num_inference_steps", p.steps), ("height", p.height),
                        ("width", p.width), ("guidance_scale", p.guidance),
                        ("negative_prompt", p.negative_prompt)):
        if value is not None and name in sig:
            kw[name] = value
    if "t0" in sig and "t1" in sig:
        # Text2Video-Zero's defaults (t0=44, t1=47) assume 50 steps; keep their proportion.
        t1 = max(1, min(p.steps - 1, round(p.steps * 47 / 50)))
        kw["t1"] = t1
        kw["t0"] = max(0, min(t1 - 1, round(p.steps * 44 / 50)))
    if "output_type" in sig:
        kw["output_type"] = "np"
    kw["generator"] = gens if len(gens) > 1 else gens[0]
    with torch.inference_mode():
        out = pipe(**kw)
    frames = getattr(out, "frames", None)
    if frames is None:
        frames = getattr(out, "images", None)
        if frames is None:
            raise GenerationError(f"{type(pipe).__name__} returned neither frames nor images")
        frames = [frames]  # Text2Video-Zero: the frames of its single video
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    videos = list(frames) if not isinstance(frames, list) else frames
    if len(videos) != len(prompts):
        raise GenerationError(
            f"{type(pipe).__name__} returned {len(videos)} videos for {len(prompts)} prompts")
    return [v if isinstance(v, list) else np.asarray(v) for v in videos]  # type: ignore[misc]


# ---------------------------------------------------------------------- selection
def select_prompts(lake: Lake, *, where: str | None, limit: int | None,
                   prompt_column: str = "prompt_clean") -> list[tuple[str, str]]:
    """(uuid, text) of the prompts matching `where` (DuckDB SQL over the `prompts` view),
    ordered by uuid, first `limit` of them. Text is `prompt_column`, falling back to `prompt`."""
    if not prompt_column.replace("_", "").isalnum():
        raise InputError(f"bad prompt column {prompt_column!r}")
    sql = (f'SELECT uuid, coalesce("{prompt_column}", prompt) AS text FROM prompts '
           f"{'WHERE ' + where if where else ''} ORDER BY uuid"
           f"{f' LIMIT {int(limit)}' if limit is not None else ''}")
    try:
        t = lake.query(sql)
    except QueryError as exc:
        raise InputError(f"bad --where {where!r}: {exc}") from None
    return list(zip(t.column("uuid").to_pylist(), t.column("text").to_pylist(), strict=True))


# ---------------------------------------------------------------------- the run
@dataclass
class GenerateReport:
    model: str
    label: str
    checkpoint: str
    batch_id: str | None = None
    pipeline: str | None = None
    device: str | None = None
    dtype: str | None = None
    selected: int = 0
    already_in_lake: int = 0
    generated: int = 0
    bytes: int = 0
    chunks: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    pipeline_seconds: float = 0.0
    overhead_seconds: float = 0.0  # encode + probe + thumbnail + append + commit
    video_ids: list[str] = field(default_factory=list)
    engine: str | None = None  # "ray" when Ray workers generated (see ray_generate.py)
    retries: int = 0  # restarted Ray workers that answered

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "video_ids"}
        if self.engine is None:
            d.pop("engine")
            d.pop("retries")
        for k in ("seconds", "load_seconds", "pipeline_seconds", "overhead_seconds"):
            d[k] = round(d[k], 3)
        d["overhead_pct"] = round(100 * self.overhead_seconds / self.pipeline_seconds, 2) \
            if self.pipeline_seconds else None
        return d


def generate(
    lake: Lake,
    model: str,
    *,
    where: str | None = None,
    limit: int | None = None,
    frames: int | None = None,
    fps: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
    guidance: float | None = None,
    negative_prompt: str | None = None,
    batch_size: int | None = None,
    checkpoint: str | None = None,
    name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    download: bool = False,
    chunk: int = 16,
    prompt_column: str = "prompt_clean",
    encode: EncodeParams | None = None,
    pipeline: Any = None,
    progress: Callable[[int, int], None] | None = None,
    engine: Any = None,
    engine_options: dict[str, Any] | None = None,
) -> GenerateReport:
    """Generate a video for every selected prompt that has none from this model yet.

    The selection is deterministic (`where`, ordered by uuid, first `limit`), so rerunning the
    same command resumes an interrupted run and then does nothing. Commits every `chunk` videos.
    `pipeline` lets a caller pass an already-loaded pipeline object for `model`'s spec.

    `engine` ``"ray"`` (with `engine_options` address/workers/gpus_per_worker, or an engine
    from `vidprom_lake.engine.get_engine`): each Ray actor loads the pipeline once, generates
    pieces of `chunk` prompts and writes their Lance data files; this process commits each
    piece as one chunk of the batch (see `ray_generate.py`).
    """
    t_start = time.perf_counter()
    third_party = _registered_generator(model)
    if third_party is not None:
        enr, variant = third_party
        opts = {k: v for k, v in locals().items()
                if k not in ("lake", "model", "t_start", "third_party", "enr", "variant")}
        if engine not in (None, "local"):
            raise InputError(f"--engine {engine} is not supported by the generator {model!r}")
        opts.pop("engine", None)
        opts.pop("engine_options", None)
        return enr.run(lake, variant, **opts)
    spec = resolve(model, checkpoint=checkpoint, label=name)
    gp = GenParams(frames=frames or spec.frames, fps=fps or spec.fps, steps=steps or spec.steps,
                   height=height or spec.height, width=width or spec.width,
                   guidance=guidance if guidance is not None else spec.guidance, seed=seed,
                   negative_prompt=negative_prompt)
    for what, num in (("--frames", gp.frames), ("--steps", gp.steps), ("--fps", gp.fps)):
        if num <= 0:
            raise InputError(f"{what} must be positive, not {num}")
    for what, side in (("--height", gp.height), ("--width", gp.width)):
        if side is not None and (side <= 0 or side % 8):
            raise InputError(f"{what} must be a positive multiple of 8, not {side}")
    bs = batch_size or spec.batch_size
    if spec.max_batch:
        bs = min(bs, spec.max_batch)
    if bs < 1 or chunk < 1:
        raise InputError("--batch-size and --chunk must be >= 1")
    report = GenerateReport(model=spec.name, label=spec.label, checkpoint=spec.checkpoint)
    chosen = select_prompts(current(lake), where=where, limit=limit, prompt_column=prompt_column)
    report.selected = len(chosen)
    have = existing_video_ids(lake, [spec.label])
    todo = [(u, t) for u, t in chosen if f"{spec.label}-{u}" not in have]
    report.already_in_lake = len(chosen) - len(todo)
    from ..enrich.runner import _engine

    eng, own_engine = _engine(engine, engine_options)
    if eng is not None and pipeline is not None:
        raise InputError("a loaded pipeline object cannot be sent to Ray workers; pass the "
                         "model (or --checkpoint) instead")
    if not todo:
        if own_engine and eng is not None:
            eng.shutdown()
        report.seconds = time.perf_counter() - t_start
        return report
    try:
        return _generate(lake, spec, report, todo, gp, bs, eng=eng, where=where, limit=limit,
                         device=device, dtype=dtype, download=download, chunk=chunk,
                         prompt_column=prompt_column, encode=encode, pipeline=pipeline,
                         progress=progress, t_start=t_start)
    finally:
        if own_engine and eng is not None:
            eng.shutdown()


def _generate(lake: Lake, spec: GeneratorSpec, report: GenerateReport,
              todo: list[tuple[str, str]], gp: GenParams, bs: int, *, eng: Any,
              where: str | None, limit: int | None, device: str | None, dtype: str | None,
              download: bool, chunk: int, prompt_column: str, encode: EncodeParams | None,
              pipeline: Any, progress: Callable[[int, int], None] | None,
              t_start: float) -> GenerateReport:
    pool: Any = None
    t0 = time.perf_counter()
    if eng is not None:
        from .ray_generate import start_workers

        pool = start_workers(eng, lake.uri, spec, device=device, dtype=dtype, download=download)
        info = pool.infos[0]
        dev, dt = info["device"], info["dtype"]
        report.pipeline = info["pipeline"]
        report.load_seconds = max(i["load_seconds"] for i in pool.infos)
        provenance = {**info["provenance"], "engine": eng.info()}
        pipe = None
    else:
        dev, dt = pick_device(device, dtype, spec.cuda_dtype)
        pipe = pipeline if pipeline is not None else load_pipeline(spec, device=dev, dtype=dt,
                                                                   download=download)
        report.load_seconds = time.perf_counter() - t0
        report.pipeline = type(pipe).__name__
        provenance = _provenance(spec, pipe, dev, dt)
    report.device, report.dtype = dev, dt
    enc = encode or EncodeParams(fps=gp.fps)
    if enc.fps != gp.fps:
        enc = replace(enc, fps=gp.fps)
    run_params = {"model": spec.name, "label": spec.label, "checkpoint": spec.checkpoint,
                  "pipeline": report.pipeline, "device": dev, "dtype": dt, "batch_size": bs,
                  "where": where, "limit": limit, "prompt_column": prompt_column,
                  **gp.as_dict(), "encode": enc.as_dict()}
    if eng is not None:
        run_params["engine"] = eng.info()
        report.engine = eng.name
    with lake.batch("generate", source=spec.label, params=run_params,
                    provenance=provenance) as b:
        report.batch_id = b.batch_id
        if pool is not None:
            from .ray_generate import generate_on_ray

            try:
                generate_on_ray(pool, b, todo, report, gp=gp, enc=enc, run_params=run_params,
                                bs=bs, chunk=chunk, progress=progress)
            finally:
                pool.close()
            report.seconds = time.perf_counter() - t_start
            return report
        pending: list[dict[str, Any]] = []
        for start in range(0, len(todo), bs):
            part = todo[start:start + bs]
            rows, pipe_s = generate_part(pipe, spec, part, gp, enc, run_params, b.batch_id)
            t2 = time.perf_counter()
            report.pipeline_seconds += pipe_s
            pending += rows
            report.bytes += sum(int(r["bytes"]) for r in rows)
            report.video_ids += [r["video_id"] for r in rows]
            report.generated += len(part)
            if len(pending) >= chunk or start + bs >= len(todo):
                b.append("videos", _batches(pending), schema=VIDEOS_SCHEMA)
                b.counts.update(rows_added=report.generated, selected=report.selected,
                                already_in_lake=report.already_in_lake)
                b.commit()
                report.chunks += 1
                pending = []
            report.overhead_seconds += time.perf_counter() - t2
            if progress:
                progress(report.generated, len(todo))
    report.seconds = time.perf_counter() - t_start
    return report


def _registered_generator(model: str) -> tuple[Any, str | None] | None:
    """A generator another package registered under `model`'s name (not one of ours)."""
    head = model.partition(":")[0]
    if ALIASES.get(model, model) in PRESETS or head == "diffusers":
        return None
    from ..enrich import enrichers

    enr = enrichers("generator").get(head)
    if enr is None or isinstance(enr, VideoGenerator):
        return None
    return enr, model.partition(":")[2] or enr.default_variant


def _batches(rows: list[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
    for i in range(0, len(rows), 32):
        yield rows_to_batch(rows[i:i + 32])


def generate_part(pipe: Any, spec: GeneratorSpec, part: list[tuple[str, str]], gp: GenParams,
                  enc: EncodeParams, run_params: dict[str, Any],
                  batch_id: str) -> tuple[list[dict[str, Any]], float]:
    """One pipeline call for `part` ((uuid, text) pairs, each video with its own seed) and
    the encoded rows; also the seconds the pipeline itself took. The local run and the Ray
    workers both generate through this."""
    seeds = [video_seed(u, spec.label, gp.seed) for u, _ in part]
    t1 = time.perf_counter()
    videos = call_pipeline(pipe, [t for _, t in part], seeds, gp)
    pipe_s = time.perf_counter() - t1
    rows = [_encode_row(uuid, text, spec, vseed, frames, enc, run_params, batch_id)
            for (uuid, text), vseed, frames in zip(part, seeds, videos, strict=True)]
    return rows, pipe_s


def _encode_row(uuid: str, text: str, spec: GeneratorSpec, vseed: int, frames: Any,
                enc: EncodeParams, run_params: dict[str, Any], batch_id: str) -> dict[str, Any]:
    arr = frames if isinstance(frames, list) else np.asarray(frames)
    if not isinstance(arr, list) and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise GenerationError(
            f"the pipeline produced NaN/inf frames for prompt {uuid} "
            f"(common with float16 VAEs: retry with --dtype float32 or bfloat16)")
    u8 = to_uint8_frames(arr)
    data = encode_mp4(u8, enc)
    try:
        pr = probe_bytes(data, format="mp4")
    except ProbeError as exc:  # our own encoder's output must decode
        raise GenerationError(f"encoded video for {uuid} does not decode: {exc}") from None
    params = {"kind": "generate", "seed": vseed, "run_seed": run_params["seed"],
              "prompt_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
              **{k: run_params[k] for k in ("model", "checkpoint", "pipeline", "device", "dtype",
                                            "frames", "fps", "steps", "height", "width",
                                            "guidance", "negative_prompt", "encode")}}
    row = {"video_id": f"{spec.label}-{uuid}", "uuid": uuid, "model": spec.label,
           "source": f"generate:{spec.name}", "video": data,
           "thumbnail": thumbnail(pr.first_frame), "params": json.dumps(params, sort_keys=True),
           "time": datetime.now(UTC), "batch_id": batch_id}
    pr.first_frame = None
    row.update(pr.columns())
    return row


def _provenance(spec: GeneratorSpec, pipe: Any, device: str, dtype: str) -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("diffusers", "torch", "transformers", "av"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[pkg] = md.version(pkg)
    return {"backend": "diffusers", "model": spec.name, "label": spec.label,
            "checkpoint": spec.checkpoint, "pipeline": type(pipe).__name__,
            "device": device, "dtype": dtype, "versions": versions}


# ---------------------------------------------------------------------- registry adapter
from ..enrich.base import Enricher  # noqa: E402  (cheap: no torch)


class VideoGenerator(Enricher):
    """A video generator as a registered enricher (kind ``generator``).

    ``--model modelscope`` / ``text2video-zero`` / ``diffusers:<id>`` resolve to these through
    `vidprom_lake.enrich.resolve(spec, "generator")`; `run` does the whole job (selection, chunks,
    commits) with `generate`, and `open` returns a loaded pipeline for callers that drive it.
    """

    kind = "generator"
    extra = "video"
    packages = ("torch", "diffusers", "transformers", "av", "PIL")
    preset: str = ""

    def spec(self, variant: str | None = None, **options: Any) -> GeneratorSpec:
        model = f"diffusers:{variant}" if self.name == "diffusers" else self.preset
        if self.name == "diffusers" and not variant:
            raise InputError("the diffusers generator needs a pipeline: diffusers:<hub id or path>")
        return resolve(model, checkpoint=None if self.name == "diffusers" else variant,
                       label=options.get("name"))

    def open(self, variant: str | None, **options: Any) -> Any:
        self.require()
        spec = self.spec(variant, **options)
        dev, dt = pick_device(options.get("device"), options.get("dtype"), spec.cuda_dtype)
        return load_pipeline(spec, device=dev, dtype=dt, download=options.get("download", False))

    def run(self, lake: Lake, variant: str | None = None, **options: Any) -> GenerateReport:
        self.require()
        if self.name == "diffusers":
            return generate(lake, f"diffusers:{variant}", **options)
        if variant:
            options.setdefault("checkpoint", variant)
        return generate(lake, self.preset, **options)

    def extra_needs(self) -> list[str]:
        if self.name == "diffusers":
            return []
        ckpt = PRESETS[self.preset].checkpoint
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return []
        hit = try_to_load_from_cache(ckpt, "model_index.json")
        return [] if isinstance(hit, str) else [f"weights: hf download {ckpt} (or --checkpoint PATH)"]


class ModelScopeGenerator(VideoGenerator):
    name = "modelscope"
    preset = "modelscope"
    description = PRESETS["modelscope"].description
    weights = "HF cache: damo-vilab/text-to-video-ms-1.7b (variant: local path or hub id)"


class Text2VideoZeroGenerator(VideoGenerator):
    name = "text2video-zero"
    preset = "text2video-zero"
    description = PRESETS["text2video-zero"].description
    weights = "HF cache: a Stable Diffusion checkpoint (variant: hub id or local path)"


class DiffusersGenerator(VideoGenerator):
    name = "diffusers"
    description = "any diffusers text-to-video pipeline: diffusers:<hub id or local path>"
    weights = "HF cache or a local folder"


def generators() -> dict[str, GeneratorSpec]:
    """The presets, for listings."""
    return dict(PRESETS)
