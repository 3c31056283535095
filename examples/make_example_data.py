"""Write the small example files that `vidlake demo` ingests (deterministic; no downloads).

    python examples/make_example_data.py

- data/VidProM_sample.csv       300 VidProM-shaped prompts (same columns and quirks as VidProM_unique.csv)
- data/VidProM_sample_embed.h5  64-d synthetic embeddings for them (VidProM_embed.hdf5 layout)
- data/diffusiondb_sample.parquet  DiffusionDB metadata.parquet layout, with repeated prompts
- data/prompts.jsonl            a generic JSON-lines file with its own column names
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vidprom_lake import synth

HERE = Path(__file__).parent / "data"


def main() -> None:
    HERE.mkdir(exist_ok=True)
    synth.write_vidprom_csv(HERE / "VidProM_sample.csv", 300, seed=7)
    uuids = [r["uuid"] for r in synth.rows(300, seed=7)]
    synth.write_embeddings_hdf5(HERE / "VidProM_sample_embed.h5", uuids, 64, seed=7,
                                model="synthetic:demo-64d")
    rng = np.random.default_rng(7)
    texts = [synth.prompt_text(rng) for _ in range(60)]
    rows = []
    t0 = datetime(2022, 8, 1, tzinfo=UTC)
    for i in range(120):
        rows.append({
            "image_name": f"{i:08x}-0000-0000-0000-000000000000.png",
            "prompt": texts[int(rng.integers(len(texts)))],
            "part_id": 1 + i // 100, "seed": int(rng.integers(1 << 31)), "step": 50,
            "cfg": 7.0, "sampler": 8, "width": 512, "height": 512,
            "user_name": f"{int(rng.integers(1 << 60)):x}",
            "timestamp": t0 + timedelta(minutes=int(rng.integers(60 * 24 * 30))),
            "image_nsfw": float(rng.random() * 0.3), "prompt_nsfw": float(rng.random() * 0.2),
        })
    pq.write_table(pa.Table.from_pylist(rows), HERE / "diffusiondb_sample.parquet")
    with open(HERE / "prompts.jsonl", "w") as fh:
        for i in range(40):
            fh.write(json.dumps({
                "text": synth.prompt_text(rng),
                "created_at": (t0 + timedelta(days=400 + i)).isoformat(),
                "lang": "en",
            }) + "\n")


if __name__ == "__main__":
    main()
