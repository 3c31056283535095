"""VidProM-shaped synthetic data: prompts with the real files' quirks, and clustered embeddings.

Used by `vidlake demo`, the benchmarks and the tests, so that all three exercise what real
VidProM files contain (multi-line quoted prompts, HTML entities and fragments, Discord leftovers,
Pika flags, trailing spaces, ctime timestamps, Detoxify-like scores) without downloading them.
"""

from __future__ import annotations

import csv
import uuid as _uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

SUBJECTS = [
    "a cat", "a dog", "an astronaut", "a robot", "a dragon", "a girl", "an old man", "a fox",
    "a samurai", "a car", "a spaceship", "a whale", "a horse", "a city", "a forest", "a wizard",
    "a teddy bear", "a panda", "a knight", "a mermaid", "a lion", "a ballerina", "a train",
]
ACTIONS = [
    "surfing a wave", "dancing in the rain", "walking on the moon", "flying over mountains",
    "playing guitar", "running through a field", "eating noodles", "fighting a monster",
    "exploring a cave", "drinking coffee", "swimming with dolphins", "riding a bicycle",
    "reading a book", "climbing a tree", "sleeping under the stars", "driving fast",
]
SETTINGS = [
    "at sunset", "in Tokyo at night", "in a cyberpunk city", "in the desert", "underwater",
    "in a snowy village", "on Mars", "in a medieval castle", "in a neon forest", "at the beach",
    "in a futuristic lab", "during a thunderstorm",
]
STYLES = [
    "cinematic", "4k", "anime style", "pixar style", "hyper realistic", "oil painting",
    "studio ghibli", "8k ultra detailed", "unreal engine", "watercolor", "film grain",
]
FLAGS = ["-ar 16:9", "-ar 9:16", "-motion 4", "-motion 2", "-gs 24", "-gs 12.5",
         "-neg blurry, low quality", "-camera zoom in", "-camera pan left", "-fps 24", "-seed 42"]
LEFTOVERS = ["Message: 1 Attachment", "(Font: RETRO)", "(Font: MODERN)"]
NSFW = ("toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")
START = datetime(2023, 7, 1)
SPAN_S = int((datetime(2024, 2, 29) - START).total_seconds())


def prompt_text(rng: np.random.Generator) -> str:
    """One raw prompt with the quirks of the real data, at realistic frequencies."""
    words = [
        SUBJECTS[rng.integers(len(SUBJECTS))], ACTIONS[rng.integers(len(ACTIONS))],
        SETTINGS[rng.integers(len(SETTINGS))],
    ]
    text = " ".join(words)
    r = rng.random()
    if r < 0.5:
        text += ", " + ", ".join(STYLES[i] for i in rng.choice(len(STYLES), rng.integers(1, 4), replace=False))
    if rng.random() < 0.05:
        text = text.replace(" ", " &quot;", 1) + "&quot;"
    if rng.random() < 0.03:
        text += " it&#39;s beautiful"
    if rng.random() < 0.02:
        text = "<b>" + text + "</b>"
    if rng.random() < 0.04:
        text += "\n" + STYLES[rng.integers(len(STYLES))]
    if rng.random() < 0.01:
        text += (" and more detail" * int(rng.integers(20, 200)))
    # a take number keeps prompts unique, as users' small variations do in the real data
    text += f", take {int(rng.integers(1 << 30))}"
    if rng.random() < 0.15:
        text += " " + LEFTOVERS[rng.integers(len(LEFTOVERS))]
    if rng.random() < 0.4:
        text += " " + " ".join(FLAGS[i] for i in rng.choice(len(FLAGS), rng.integers(1, 4), replace=False))
    # real prompts usually end in two spaces
    return text + ("  " if rng.random() < 0.8 else "")


def ctime(t: datetime) -> str:
    return t.strftime("%a %b ") + f"{t.day:>2}" + t.strftime(" %H:%M:%S %Y")


def rows(n: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """n unique VidProM rows, in time order."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.integers(0, SPAN_S, n))
    seen: set[str] = set()
    for off in offsets:
        text = prompt_text(rng)
        while text in seen:
            text = prompt_text(rng)
        seen.add(text)
        t = START + timedelta(seconds=int(off))
        scores = np.clip(rng.beta(0.3, 20, 6), 0, 1)
        if rng.random() < 0.03:
            scores = np.clip(scores + rng.random(6) * 0.9, 0, 1)
        row: dict[str, object] = {
            "uuid": str(_uuid.uuid5(_uuid.NAMESPACE_DNS, text)), "prompt": text, "time": ctime(t),
        }
        row.update({k: f"{float(v):.5f}".rstrip("0").rstrip(".") or "0" for k, v in zip(NSFW, scores, strict=True)})
        yield row


def write_vidprom_csv(path: str | Path, n: int, seed: int = 0) -> Path:
    """A VidProM_unique.csv-shaped file with n rows."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["uuid", "prompt", "time", *NSFW], quoting=csv.QUOTE_MINIMAL)
        w.writeheader()
        for r in rows(n, seed):
            w.writerow(r)
    return path


def clustered_vectors(n: int, dim: int, *, clusters: int = 256, seed: int = 0,
                      spread: float = 0.35, dtype: str = "float32") -> np.ndarray:
    """Unit vectors around `clusters` centres (real embeddings are clustered, not uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    step = 65536
    for s in range(0, n, step):
        k = min(step, n - s)
        c = rng.integers(0, clusters, k)
        v = centres[c] + spread * rng.standard_normal((k, dim)).astype(np.float32) / np.sqrt(dim) * 4
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[s:s + k] = v
    return out.astype(dtype, copy=False)


def write_embeddings_hdf5(path: str | Path, uuids: list[str], dim: int, seed: int = 0,
                          model: str | None = None, chunk: int = 16384) -> Path:
    """A VidProM_embed.hdf5-shaped file (datasets `uuid`, `embeddings`), written in chunks."""
    import h5py

    path = Path(path)
    n = len(uuids)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        ds = h5.create_dataset("embeddings", shape=(n, dim), dtype="float32",
                               chunks=(min(max(n, 1), 256), dim))
        for s in range(0, n, chunk):
            k = min(chunk, n - s)
            ds[s:s + k] = clustered_vectors(k, dim, seed=seed + s)
        if model:
            h5.attrs["model"] = model
    return path
