"""Shared by the example scripts: open the lake given with --lake, or build the demo lake."""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
from pathlib import Path


def lake_from_args(description: str) -> tuple[object, argparse.Namespace]:
    from vidprom_lake import open_lake
    from vidprom_lake.demo import build_demo

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--lake", help="lake folder or s3:// URI (default: build the demo lake in a temp folder)")
    args, _ = ap.parse_known_args()
    if args.lake:
        return open_lake(args.lake), args
    tmp = tempfile.mkdtemp(prefix="vidlake-example-")
    atexit.register(shutil.rmtree, tmp, True)  # examples leave nothing behind
    root = Path(tmp) / "lake"
    build_demo(str(root), echo=lambda s: None)
    print(f"(built the demo lake at {root})")
    return open_lake(str(root)), args
