"""Small files in the layouts of OpenVid-1M, VidGen-1M and MiraData, and zips of clips."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

OPENVID_HEADER = ["video", "caption", "aesthetic score", "motion score",
                  "temporal consistency score", "camera motion", "frame", "fps", "seconds"]
MIRA_HEADER = ["index", "video_id", "start_frame", "end_frame", "main_object_caption",
               "background_caption", "style_caption", "camera_caption", "short_caption",
               "dense_caption", "fps", "start_timestep", "end_timestep", "", ""]

OPENVID_ROWS = [
    ["---_iRTHryQ_13_0to241.mp4", "A man walks along a beach at sunset, waves rolling in.",
     "5.12", "1.31", "0.9921", "pan_left", "241", "29.97", "8.04"],
    ["a1b2c3_0_0to120.mp4", 'A red car drives down a "winding" road,\nthrough a forest.',
     "4.5", "0.8", "0.97", "static", "120", "24", "5.0"],
    ["zz-top_7_10to200.mp4", "A cat sleeps on a sofa.", "4.9", "0.1", "0.999", "zoom_in",
     "190", "30", "6.33"],
    # the same caption as the cat clip: a different clip, so a different row
    ["zz-top_8_0to100.mp4", "A cat sleeps on a sofa.", "4.7", "0.2", "0.998", "static",
     "100", "30", "3.33"],
]

VIDGEN_ROWS = [
    {"vid": "Eep9uvenxAo-Scene-0030",
     "caption": "The video shows a person's hand touching and moving flowers on a plant."},
    {"vid": "Qw3rTy-Scene-0001", "caption": "A drone flies over a snowy mountain ridge."},
    {"vid": "Qw3rTy-Scene-0002", "caption": "A man walks along a beach at sunset, waves rolling in."},
]

MIRA_ROWS = [
    ["0", "aIPu1xGNbhc", "0", "1800",
     "A man in a light-colored shirt.\nHe moves with urgency.", "Urban streets, \"detailed\".",
     "Realistic video game style.", "Third-person camera follows.", "A man runs in a game.",
     "A man navigating through urban environments in a video game.\n\nHe climbs and jumps over "
     "obstacles, suggesting parkour elements.", "30.0", "0:00:00.000", "0:01:00.000", "", ""],
    ["1", "Kb8ON0iCs38", "300", "2100", "A rocket.", "Launch pad.", "Documentary.",
     "Static camera.", "A rocket launches.",
     "A rocket launches into space from the launch pad, trailing smoke.", "29.97", "10.0",
     "70.0", "", ""],
]


def write_openvid(path: Path, rows: list[list[str]] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(OPENVID_HEADER)
        w.writerows(OPENVID_ROWS if rows is None else rows)
    return path


def write_vidgen(path: Path, rows: list[dict[str, str]] | None = None) -> Path:
    path.write_text(json.dumps(VIDGEN_ROWS if rows is None else rows, indent=1), "utf-8")
    return path


def write_mira(path: Path, rows: list[list[str]] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MIRA_HEADER)
        w.writerows(MIRA_ROWS if rows is None else rows)
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def split_file(path: Path, pieces: int) -> list[Path]:
    """Cut `path` like ``split -b`` into ``{stem}_partaa``, ``_partab``, ... and remove it."""
    data = path.read_bytes()
    size = -(-len(data) // pieces)
    stem = path.with_suffix("")
    out = []
    for i in range(pieces):
        p = Path(f"{stem}_part{chr(97 + i // 26)}{chr(97 + i % 26)}")
        p.write_bytes(data[i * size:(i + 1) * size])
        out.append(p)
    path.unlink()
    return out
