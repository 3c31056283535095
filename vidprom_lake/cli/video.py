"""Video commands: generate, import-videos, video, frames, export-videos."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .enrich import engine_options, pop_engine
from .render import dict_rows, emit, emit_report, format_option, progress_bar


def _lake(ctx: click.Context) -> Any:
    from ..lake import open_lake

    return open_lake(ctx.obj["lake_uri"])


@contextmanager
def _progress(label: str, unit: str) -> Iterator[Any]:
    """A rich progress bar on stderr (only on a terminal); yields a (done, total) callback."""
    progress = progress_bar(label, unit)
    with progress:
        task = progress.add_task(label, total=None)

        def tick(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield tick


class _InputPath(click.ParamType):
    """A local path that must exist, or an ``s3://`` URI (checked when it is read)."""

    name = "path"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        if isinstance(value, str) and value.startswith("s3://"):
            return value
        return str(click.Path(exists=True).convert(value, param, ctx))


@click.command()
@click.option("--model", "-m", required=True,
              help="modelscope, text2video-zero, or diffusers:<hub id or local path>.")
@click.option("--where", default=None, help="SQL predicate over the prompts view, e.g. "
              "\"unique_semantic and toxicity < 0.1\".")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Consider only the first N matching prompts (by uuid); rerunning resumes.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames per video.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frames per second of the encoded mp4.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Inference steps.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Run seed; each video's seed derives from (uuid, model, seed).")
@click.option("--height", type=click.IntRange(min=8), default=None)
@click.option("--width", type=click.IntRange(min=8), default=None)
@click.option("--guidance", type=float, default=None, help="Classifier-free guidance scale.")
@click.option("--negative-prompt", default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Prompts per pipeline call.")
@click.option("--checkpoint", default=None,
              help="Hub id or local folder replacing the preset's weights.")
@click.option("--name", default=None, help="Label stored in the videos' model column.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
              default="auto", show_default=True)
@click.option("--download", is_flag=True,
              help="Allow downloading weights from the Hugging Face Hub (default: cache only).")
@click.option("--chunk", type=click.IntRange(min=1), default=16, show_default=True,
              help="Videos per committed chunk (a crash loses at most one).")
@click.option("--prompt-column", default="prompt_clean", show_default=True,
              help="Column with the text fed to the model (falls back to prompt).")
@engine_options
@format_option()
@click.pass_context
def generate(ctx: click.Context, model: str, fmt: str, **opts: Any) -> None:
    """Generate a video for each selected prompt that has none from MODEL yet."""
    from ..video.generate import generate as run

    lake = _lake(ctx)
    eng = pop_engine(opts)
    opts = {k: v for k, v in opts.items() if v is not None}
    with _progress(f"generate {model}", "videos") as tick:
        report = run(lake, model, progress=tick, **eng, **opts)
    d = report.as_dict()
    if fmt == "table":
        emit(dict_rows(d), "table", title=f"generate {report.batch_id or '(nothing to do)'}")
    else:
        emit([d], fmt)


@click.command(name="import-videos")
@click.argument("paths", nargs=-1, required=True, type=_InputPath())
@click.option("--model", "-m", default=None,
              help="Model of every video (names must be {model}-{uuid}.mp4); default: from names.")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with columns file,uuid[,model] for freely named files.")
@click.option("--source", type=click.Choice(["openvid", "vidgen", "miradata"]), default=None,
              help="Match members to that seed dataset's rows by clip id (file name).")
@click.option("--chunk", type=click.IntRange(min=1), default=256, show_default=True,
              help="Videos per committed chunk.")
@click.option("--verify", type=click.Choice(["index", "first-frame", "full"]),
              default="first-frame", show_default=True,
              help="Check every sample is present and decode the first frame (first-frame), "
                   "decode every frame (full), or decode nothing and check the first sample's "
                   "framing (index; needs --no-thumbnails).")
@click.option("--no-thumbnails", is_flag=True, help="Skip the JPEG previews.")
@click.option("--show-rejected", type=int, default=50, show_default=True,
              help="How many rejected files to list.")
@engine_options
@format_option()
@click.pass_context
def import_videos(ctx: click.Context, paths: tuple[str, ...], model: str | None,
                  mapping: str | None, chunk: int, verify: str, no_thumbnails: bool,
                  show_rejected: int, fmt: str, source: str | None = None,
                  **opts: Any) -> None:
    """Import mp4s from tar shards, folders or files, local or s3://bucket/prefix/ (streamed,
    never extracted)."""
    from ..video.importer import import_videos as run

    lake = _lake(ctx)
    with _progress("import", "files") as tick:
        report = run(lake, list(paths), model=model, mapping=mapping, chunk=chunk, verify=verify,
                     thumbnails=not no_thumbnails, progress=tick, source=source or None,
                     **pop_engine(opts))
    d = report.as_dict()
    emit_report(d, fmt, title=f"import-videos {report.batch_id}", problems=report.rejected,
                word="rejected", key="rejected_files", limit=show_rejected,
                line=lambda r: f"{r.container}: {r.name}: {r.reason}")


@click.command()
@click.argument("uuid")
@click.option("--model", "-m", required=True, help="Model label (pika, vc2, t2vz, ms, ...).")
@click.option("-o", "--output", default=None,
              help="Output file ('-' for stdout); default ./{model}-{uuid}.mp4.")
@click.option("--info", is_flag=True, help="Print the metadata only.")
@format_option()
@click.pass_context
def video(ctx: click.Context, uuid: str, model: str, output: str | None, info: bool,
          fmt: str) -> None:
    """Write one stored video (UUID may be a unique prefix) to a file."""
    from ..export import safe_key
    from ..video.blobs import find_video, save_video

    lake = _lake(ctx)
    if info:
        row = find_video(lake, uuid, model)
        row.pop("_rowid", None)
        emit(dict_rows(row) if fmt == "table" else [row], fmt, title=row["video_id"])
        return
    out = output
    if out is None:
        out = f"{safe_key(find_video(lake, uuid, model)['video_id'], dots=True)}.mp4"
    row = save_video(lake, uuid, model, out)
    if out != "-":
        click.echo(f"wrote {row['video_id']} ({row['bytes']:,} bytes, {row['num_frames']} frames, "
                   f"{row['width']}x{row['height']}) to {out}", err=True)


@click.command()
@click.argument("uuid")
@click.option("--model", "-m", required=True, help="Model label (pika, vc2, t2vz, ms, ...).")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep every N-th frame.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N frames.")
@click.option("-o", "--output", "out_dir", default="frames", show_default=True,
              help="Folder for the PNG frames.")
@click.pass_context
def frames(ctx: click.Context, uuid: str, model: str, every: int, limit: int | None,
           out_dir: str) -> None:
    """Decode a stored video and write its frames as PNG files."""
    from ..video.blobs import extract_frames

    lake = _lake(ctx)
    paths = extract_frames(lake, uuid, model, out_dir, every=every, limit=limit)
    click.echo(f"wrote {len(paths)} PNG frame(s) to {out_dir}", err=True)


@click.command(name="export-videos")
@click.option("-o", "--output", "out_dir", required=True, help="Folder for the mp4 files.")
@click.option("--model", "-m", default=None, help="Only this model's videos.")
@click.option("--where", default=None,
              help="Filter over the videos columns, e.g. \"duration_s > 2 AND width >= 512\".")
@click.option("--limit", type=click.IntRange(min=0), default=None)
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
@format_option()
@click.pass_context
def export_videos(ctx: click.Context, out_dir: str, model: str | None, where: str | None,
                  limit: int | None, overwrite: bool, fmt: str) -> None:
    """Write stored videos to OUT/{model}-{uuid}.mp4."""
    from ..video.blobs import export_videos as run

    lake = _lake(ctx)
    with _progress("export", "videos") as tick:
        report = run(lake, out_dir, model=model, where=where, limit=limit, overwrite=overwrite,
                     progress=tick)
    d = report.as_dict()
    emit(dict_rows(d) if fmt == "table" else [d], fmt, title="export-videos")


def register(group: click.Group) -> None:
    for cmd in (generate, import_videos, video, frames, export_videos):
        group.add_command(cmd)
