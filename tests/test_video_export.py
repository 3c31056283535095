"""Bulk export: clips over 64 KB are copied by the kernel from Lance's blob files, checked
against Lance's own read first; everything else, and any file that fails the check, is read
through Lance. Every exported file must hold exactly the imported bytes."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from video_fixtures import lake_with_prompts, make_mp4, write_tar

av = pytest.importorskip("av")

#: inline (<= 64 KB, inside the data file), packed (several per sidecar), dedicated (one file)
SIZES = [None, 40_000, 70_000, 300_000, 300_001, 6_000_000]


def _padded(clip: bytes, total: int | None) -> bytes:
    """The clip with a trailing ``free`` box so the file is `total` bytes (still a valid mp4)."""
    if total is None:
        return clip
    pad = total - len(clip)
    return clip + struct.pack(">I4s", pad, b"free") + b"\0" * (pad - 8)


@pytest.fixture
def imported(tmp_path: Path):
    from vidprom_lake.video import import_videos

    lake, uuids = lake_with_prompts(tmp_path, n=len(SIZES))
    files = {f"pika-{u}.mp4": _padded(make_mp4(n=4, seed=i), size)
             for i, (u, size) in enumerate(zip(uuids, SIZES, strict=True))}
    rep = import_videos(lake, [write_tar(tmp_path / "pika_1.tar", files)], model="pika")
    assert rep.imported == len(files)
    kinds = {d["kind"] for d in lake.dataset("videos").to_table(columns=["video"])
             .column("video").to_pylist()}
    assert kinds == {0, 1, 2}  # all three ways Lance stores a blob are exercised
    return lake, files


@pytest.fixture
def copies(monkeypatch):
    from vidprom_lake.video import blobs

    made: list[int] = []
    real = blobs._copy_range

    def spy(src: int, pos: int, size: int, dst: int) -> None:
        made.append(size)
        real(src, pos, size, dst)

    monkeypatch.setattr(blobs, "_copy_range", spy)
    return made


def _exported(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_export_copies_large_clips_from_lances_files(imported, copies, tmp_path):
    from vidprom_lake.video import export_videos

    lake, files = imported
    rep = export_videos(lake, tmp_path / "out", model="pika", chunk=2)
    assert rep.videos == len(files) and rep.bytes == sum(map(len, files.values()))
    assert _exported(tmp_path / "out") == files
    assert sorted(copies) == sorted(len(b) for b in files.values() if len(b) > 65536)


@pytest.mark.parametrize("wrong", ["swapped", "missing"])
def test_export_falls_back_to_lance_when_a_blob_file_does_not_check_out(
        imported, copies, tmp_path, monkeypatch, wrong):
    """If Lance's layout is not what this version expects (here: the names of its blob
    files), the check against Lance's own read rejects the file and Lance reads the rows."""
    from vidprom_lake.video import blobs, export_videos

    real = blobs.sidecar_name
    monkeypatch.setattr(blobs, "sidecar_name", (lambda i: real(3 - i)) if wrong == "swapped"
                        else (lambda i: "nothing-here.blob"))
    lake, files = imported
    rep = export_videos(lake, tmp_path / "out", model="pika")
    assert rep.videos == len(files)
    assert _exported(tmp_path / "out") == files
    assert copies == []


def test_export_keeps_existing_files_unless_overwrite(imported, tmp_path):
    from vidprom_lake.video import export_videos

    lake, files = imported
    out = tmp_path / "out"
    out.mkdir()
    name = next(n for n, b in files.items() if len(b) > 100_000)
    (out / name).write_bytes(b"mine")
    rep = export_videos(lake, out, model="pika")
    assert rep.skipped_existing == 1 and rep.videos == len(files) - 1
    assert (out / name).read_bytes() == b"mine"
    rep = export_videos(lake, out, model="pika", overwrite=True, where="bytes > 100000")
    assert rep.videos == 3 and (out / name).read_bytes() == files[name]


def test_a_hostile_model_name_cannot_write_outside_the_output_folder(tmp_path, monkeypatch):
    """Model names may hold ``/`` and ``:`` (a mapping file's model column, ``--name``):
    exported files, frames and `vidlake video`'s default output name each stay one file in
    their folder, whatever the name."""
    from click.testing import CliRunner

    from vidprom_lake.cli import main
    from vidprom_lake.export import safe_key
    from vidprom_lake.video import export_videos, extract_frames

    lake, uuids = lake_with_prompts(tmp_path / "l", n=3)
    models = ["../../evil", "org/model:v2", "plain"]
    _import_mapped(lake, tmp_path, list(zip(uuids, models, strict=True)))
    out = tmp_path / "deep" / "out"
    exp = export_videos(lake, out)
    assert exp.videos == 3
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{safe_key(f'{m}-{u}', dots=True)}.mp4" for m, u in zip(models, uuids,
                                                                           strict=True))
    assert f"plain-{uuids[2]}.mp4" in names and all("/" not in n for n in names)
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]
    assert not list(tmp_path.glob("evil*")) and not (tmp_path.parent / "evil").exists()
    frames = extract_frames(lake, uuids[0], "../../evil", tmp_path / "frames")
    assert frames and all(Path(f).parent == tmp_path / "frames" for f in frames)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    res = CliRunner().invoke(main, ["--lake", lake.uri, "video", uuids[1], "--model",
                                    "org/model:v2"])
    assert res.exit_code == 0, res.output
    assert os.listdir(cwd) == [f"{safe_key(f'org/model:v2-{uuids[1]}', dots=True)}.mp4"]


def test_models_whose_names_clean_alike_export_to_two_files(tmp_path):
    """``org/m`` and ``org_m`` clean to the same file stem; each video still gets its own
    file, with its own bytes, and a second export skips both as existing (none is taken for
    the other)."""
    from vidprom_lake.video import export_videos

    lake, uuids = lake_with_prompts(tmp_path / "l", n=1)
    clips = _import_mapped(lake, tmp_path, [(uuids[0], m) for m in ("org/m", "org_m", "org:m")],
                           seed=10)
    out = tmp_path / "out"
    assert export_videos(lake, out).videos == 3
    got = sorted((p.read_bytes() for p in out.iterdir()), key=len)
    assert got == sorted(((clips / f"c{i}.mp4").read_bytes() for i in range(3)), key=len)
    assert (out / f"org_m-{uuids[0]}.mp4").read_bytes() == (clips / "c1.mp4").read_bytes()
    again = export_videos(lake, out)
    assert again.videos == 0 and again.skipped_existing == 3


def _import_mapped(lake, tmp_path: Path, rows: list[tuple[str, str]], seed: int = 0) -> Path:
    """Import one small clip per (uuid, model) in `rows`, named c0.mp4, c1.mp4, ... and
    matched by a mapping CSV; returns the clips' folder."""
    import csv

    from vidprom_lake.video import import_videos

    clips = tmp_path / "clips"
    clips.mkdir()
    with open(tmp_path / "map.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "uuid", "model"])
        for i, (u, m) in enumerate(rows):
            (clips / f"c{i}.mp4").write_bytes(make_mp4(n=3, seed=seed + i))
            w.writerow([f"c{i}.mp4", u, m])
    rep = import_videos(lake, [clips], mapping=tmp_path / "map.csv")
    assert rep.imported == len(rows), rep.as_dict()
    return clips
