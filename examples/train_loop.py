"""A training-loop skeleton over the lake: LakeVideoDataset -> DataLoader -> a tiny model.

The model learns to predict a clip's mean colour from its prompt's characters; it stands in for
your text-to-video model. If the lake has no videos, a few small synthetic clips are imported
first (so the demo lake works too).

    python examples/train_loop.py [--lake LAKE] [--epochs 2]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import lake_from_args

from vidprom_lake.dataset import LakeVideoDataset, collate

lake, _ = lake_from_args(__doc__)
ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=2)
args, _ = ap.parse_known_args()

if lake.count("videos") == 0:
    from vidprom_lake.video import import_videos
    from vidprom_lake.video.encode import EncodeParams, encode_mp4

    folder = Path(tempfile.mkdtemp(prefix="vidlake-clips-"))
    atexit.register(shutil.rmtree, folder, True)  # examples leave nothing behind
    uuids = lake.query("SELECT uuid FROM prompts ORDER BY uuid LIMIT 8").column("uuid").to_pylist()
    rng = np.random.default_rng(0)
    for u in uuids:
        frames = np.full((6, 48, 64, 3), rng.integers(0, 255, 3), np.uint8)
        (folder / f"ms-{u}.mp4").write_bytes(encode_mp4(frames, EncodeParams(fps=8, preset="ultrafast")))
    import_videos(lake, folder)
    print(f"imported {len(uuids)} synthetic clips")

torch.manual_seed(0)
dataset = LakeVideoDataset(lake, num_frames=4, size=(32, 32), shuffle=True)
# lance is not fork-safe: with num_workers > 0, use multiprocessing_context="spawn"
loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=0, collate_fn=collate)


def encode_text(prompts: list[str]) -> torch.Tensor:
    """Bag of characters: a stand-in for a real text encoder."""
    x = torch.zeros(len(prompts), 128)
    for i, p in enumerate(prompts):
        for ch in p.lower():
            x[i, min(ord(ch), 127)] += 1
    return x / x.sum(1, keepdim=True).clamp(min=1)


model = torch.nn.Sequential(torch.nn.Linear(128, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for epoch in range(args.epochs):
    dataset.set_epoch(epoch)
    total, n = 0.0, 0
    for batch in loader:
        target = batch["frames"].float().mean(dim=(1, 2, 3)) / 255.0  # B x 3 mean colour
        loss = torch.nn.functional.mse_loss(model(encode_text(batch["prompt"])), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(batch["prompt"])
        n += len(batch["prompt"])
    print(f"epoch {epoch}: {n} clips, mean loss {total / max(n, 1):.4f}")
