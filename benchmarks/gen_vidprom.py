"""Generate VidProM-shaped data at full size: the prompts CSV and an HDF5 embedding file.

    python benchmarks/gen_vidprom.py csv  /tmp/core-bench/VidProM_unique.csv --rows 1672243
    python benchmarks/gen_vidprom.py h5   /tmp/core-bench/embed.h5 --rows 200000 --dim 3072
    python benchmarks/gen_vidprom.py both /tmp/core-bench --rows 1672243 --embed-rows 200000

The CSV has the real file's columns (`uuid, prompt, time`, six NSFW scores) and its quirks,
at roughly the real frequencies: prompts with newlines inside quoted fields (the real file has
1.81M physical lines for 1.67M rows), HTML entities (`&quot;`, `&#39;`, `&amp;`, rarer named
and numeric ones), HTML fragments, Discord leftovers (`Message: 1 Attachment`, `(Font: RETRO)`),
Pika flags (`-ar 9:16 -motion 3 -gs 12.5 -neg ... -camera zoom in -fps 24 -seed 42`), raw
double quotes and commas, non-ASCII text and emoji, usually two trailing spaces, lengths from
1 character to 29,233 (a long tail), ctime timestamps from Jul 2023 to Feb 2024, Detoxify-like
scores rounded to 5 decimals, and `uuid = uuid5(NAMESPACE_DNS, prompt)`. Every prompt is
unique, without an artificial counter in the text.

Generation is vectorised (all random choices are numpy arrays drawn per chunk) and runs on
several processes (`--jobs`); 1.67M rows take about 15-30 s on 2 cores. The output is a pure
function of `--seed` and `--rows` (not of `--jobs`). The first `k` rows of an `n`-row file are
the same as those of a `k`-row file only when generated with the same `--rows`; the benchmark
therefore writes the 200k-row subset with `--head`.

The HDF5 file has datasets `uuid` (S36) and `embeddings` (N x D float32, chunked 256 rows),
like `VidProM_embed.hdf5`; its uuids are those of the first N rows of the CSV, in file order,
and its vectors are unit vectors clustered around 256 centres (real embeddings are clustered).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import os
import sys
import time
import uuid as _uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ROWS_FULL = 1_672_243
MAX_CHARS = 29_233
CHUNK = 65_536
NSFW = ("toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")
HEADER = ["uuid", "prompt", "time", *NSFW]
START = datetime(2023, 7, 1)
SPAN_S = int((datetime(2024, 2, 29) - START).total_seconds())
NS = _uuid.NAMESPACE_DNS.bytes

SUBJECTS = (
    "a cat", "a dog", "an astronaut", "a robot", "a dragon", "a girl", "an old man", "a fox",
    "a samurai", "a car", "a spaceship", "a whale", "a horse", "a city", "a forest", "a wizard",
    "a teddy bear", "a panda", "a knight", "a mermaid", "a lion", "a ballerina", "a train",
    "a woman", "a man", "two friends", "a little boy", "a superhero", "a zombie", "a unicorn",
    "an owl", "a tiger", "a goldfish", "a ghost", "a princess", "a pirate ship", "a monkey",
    "a butterfly", "a skateboarder", "a chef", "a soldier", "an alien", "a wolf", "a bird",
    "a family", "a crowd of people", "a giant octopus", "a small village", "a lighthouse",
)
ACTIONS = (
    "surfing a wave", "dancing in the rain", "walking on the moon", "flying over mountains",
    "playing guitar", "running through a field", "eating noodles", "fighting a monster",
    "exploring a cave", "drinking coffee", "swimming with dolphins", "riding a bicycle",
    "reading a book", "climbing a tree", "sleeping under the stars", "driving fast",
    "smiling at the camera", "turning into smoke", "singing on stage", "looking at the sea",
    "walking down the street", "jumping into a pool", "casting a spell", "crying", "laughing",
    "typing on a laptop", "waving hello", "blinking slowly", "exploding", "melting",
)
SETTINGS = (
    "at sunset", "in Tokyo at night", "in a cyberpunk city", "in the desert", "underwater",
    "in a snowy village", "on Mars", "in a medieval castle", "in a neon forest", "at the beach",
    "in a futuristic lab", "during a thunderstorm", "in space", "in New York", "in the jungle",
    "in a dark room", "on a rooftop", "in a flower garden", "in Paris", "at a party",
)
STYLES = (
    "cinematic", "4k", "anime style", "pixar style", "hyper realistic", "oil painting",
    "studio ghibli", "8k ultra detailed", "unreal engine", "watercolor", "film grain",
    "highly detailed", "photorealistic", "dramatic lighting", "slow motion", "masterpiece",
    "trending on artstation", "octane render", "volumetric light", "cartoon", "3d render",
    "black and white", "vintage", "vaporwave", "low poly", "sharp focus", "bokeh",
)
WORDS = (
    "beautiful", "epic", "dark", "bright", "colorful", "huge", "tiny", "ancient", "futuristic",
    "magical", "mysterious", "happy", "sad", "angry", "scary", "cute", "realistic", "glowing",
    "golden", "red", "blue", "green", "purple", "white", "black", "silver", "wooden", "crystal",
    "fire", "water", "light", "shadow", "smoke", "rain", "snow", "wind", "clouds", "stars",
    "moon", "sun", "ocean", "river", "mountain", "flowers", "trees", "grass", "sky", "city",
    "street", "building", "castle", "temple", "bridge", "road", "car", "people", "face", "eyes",
    "hair", "hands", "dress", "armor", "sword", "camera", "zoom", "close", "up", "view", "shot",
    "wide", "angle", "background", "foreground", "detailed", "motion", "moving", "walking",
    "running", "flying", "falling", "spinning", "dancing", "fighting", "looking", "standing",
    "sitting", "slowly", "quickly", "softly", "very", "with", "and", "the", "in", "of", "on",
)
UNICODE = ("一只猫在跳舞", "café au lait", "🔥🔥", "ñandú corriendo", "Москва зимой", "✨ magic ✨",
           "東京の夜", "naïve façade", "😍", "dragón", "Ελλάδα")
ENTITIES_RARE = ("&eacute;", "&#8217;", "&hellip;", "&#x27;", "&lt;3", "&gt;")
HTML_FRAGS = ("<b>{}</b>", "<i>{}</i>", '<a href="https://pika.art">{}</a>', "<br>{}", "{}<br/>")
LEFTOVERS = ("Message: 1 Attachment", "(Font: RETRO)", "(Font: MODERN)", "Message: 2 Attachments",
             "(Font: DEFAULT)")
AR = ("16:9", "9:16", "1:1", "4:5", "5:2", "3:2", "2:3")
CAMERA = ("zoom in", "zoom out", "pan left", "pan right", "pan up", "rotate clockwise",
          "rotate anticlockwise", "tilt down")
NEG = ("blurry, low quality", "ugly", "deformed hands, extra fingers", "text, watermark",
       "distorted face", "bad anatomy, blurry")
SHORT = ("a", "1", ".", "?", "hi", "cat", "ok", "x", "lol", "wow", "hey", "dog", "test", "yes",
         "no", "👍", "A", "B", "sea", "sun", "run", "fly", "car", "red", "moon", "Hi", "Test")


def _pick(rng: np.random.Generator, pool: tuple[str, ...], n: int) -> list[str]:
    return [pool[i] for i in rng.integers(0, len(pool), n)]


def _phrase(rng: np.random.Generator, k: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), k))


def _flags(rng: np.random.Generator) -> str:
    parts = []
    kinds = rng.choice(7, int(rng.integers(1, 4)), replace=False)
    for k in kinds:
        if k == 0:
            parts.append(f"-ar {AR[rng.integers(len(AR))]}")
        elif k == 1:
            parts.append(f"-motion {int(rng.integers(0, 5))}")
        elif k == 2:
            g = rng.choice([8, 12, 16, 20, 24, 12.5, 7.5])
            parts.append(f"-gs {g:g}")
        elif k == 3:
            parts.append(f"-neg {NEG[rng.integers(len(NEG))]}")
        elif k == 4:
            parts.append(f"-camera {CAMERA[rng.integers(len(CAMERA))]}")
        elif k == 5:
            parts.append(f"-fps {int(rng.choice([8, 12, 16, 20, 24]))}")
        else:
            parts.append(f"-seed {int(rng.integers(0, 1 << 31))}")
    return " ".join(parts)


def prompts_chunk(seed: int, index: int, n: int) -> list[str]:
    """`n` raw prompts; a pure function of (seed, index, n). Not yet unique across chunks."""
    rng = np.random.default_rng([seed, index])
    subj = _pick(rng, SUBJECTS, n)
    act = _pick(rng, ACTIONS, n)
    sett = _pick(rng, SETTINGS, n)
    r = rng.random((n, 16))
    n_extra = rng.geometric(0.35, n) - 1          # extra descriptive words, mean ~2
    n_style = rng.integers(1, 5, n)
    out: list[str] = []
    for i in range(n):
        ri = r[i]
        if ri[0] < 0.0006:  # one-word / one-character prompts exist
            out.append(SHORT[int(ri[1] * len(SHORT))] + ("  " if ri[2] < 0.5 else ""))
            continue
        if ri[1] < 0.15:
            text = f"{subj[i]} {act[i]}"
        elif ri[1] < 0.25:
            text = f"{sett[i][0].upper()}{sett[i][1:]}, {subj[i]}"
        else:
            text = f"{subj[i]} {act[i]} {sett[i]}"
        if n_extra[i]:
            text = f"{_phrase(rng, int(n_extra[i]))} {text}" if ri[2] < 0.5 else f"{text}, {_phrase(rng, int(n_extra[i]))}"
        if ri[3] < 0.55:
            text += ", " + ", ".join(STYLES[j] for j in rng.choice(len(STYLES), int(n_style[i]), replace=False))
        if ri[4] < 0.05:
            text = text.replace(" ", " &quot;", 1) + "&quot;"
        elif ri[4] < 0.065:
            text = f'"{text}"'
        if ri[5] < 0.03:
            text += " it&#39;s beautiful"
        if ri[5] > 0.99:
            text += " rock &amp; roll"
        if ri[6] < 0.002:
            text += " " + ENTITIES_RARE[int(ri[7] * len(ENTITIES_RARE))]
        if ri[6] > 0.98:
            text = HTML_FRAGS[int(ri[7] * len(HTML_FRAGS))].format(text)
        if ri[8] < 0.065:  # newlines inside the quoted field
            for _ in range(1 + int(ri[9] < 0.25) + int(ri[9] < 0.05)):
                text += "\n" + (STYLES[int(ri[10] * len(STYLES))] if ri[10] < 0.7 else _phrase(rng, 3))
        if ri[11] < 0.02:
            text += " " + UNICODE[int(ri[12] * len(UNICODE))]
        if ri[11] > 0.985:  # long tail: descriptive paragraphs
            text += ". " + _phrase(rng, int(rng.integers(40, 400)))
        if ri[13] < 0.15:
            text += " " + LEFTOVERS[int(ri[14] * len(LEFTOVERS))]
        if ri[13] > 0.6:
            text += " " + _flags(rng)
        if ri[15] < 0.8:
            text += "  "
        out.append(text)
    # a handful of very long prompts (pasted stories, repeated text), up to MAX_CHARS
    n_huge = int(rng.binomial(n, 1e-4))
    for j in rng.choice(n, n_huge, replace=False) if n_huge else []:
        target = int(rng.integers(5_000, MAX_CHARS + 1))
        body = out[j].rstrip() + " " + _phrase(rng, target // 5)
        out[j] = body[:target - 2].rstrip() + "  "
    return out


def _ctime(t: datetime) -> str:
    return t.strftime("%a %b ") + f"{t.day:>2}" + t.strftime(" %H:%M:%S %Y")


def _score_strings(rng: np.random.Generator, n: int) -> list[list[str]]:
    s = np.clip(rng.beta(0.3, 20, (n, 6)), 0, 1)
    hot = rng.random(n) < 0.03
    s[hot] = np.clip(s[hot] + rng.random((int(hot.sum()), 6)) * 0.9, 0, 1)
    s = np.round(s, 5)
    cols = []
    for c in range(6):
        cols.append([(f"{v:.5f}".rstrip("0").rstrip(".") or "0") for v in s[:, c].tolist()])
    return cols


def uuid5(text: str) -> str:
    h = bytearray(hashlib.sha1(NS + text.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _field(p: str) -> str:
    if '"' in p or "," in p or "\n" in p or "\r" in p:
        return '"' + p.replace('"', '""') + '"'
    return p


def _chunk_job(args: tuple[int, int, int, np.ndarray]) -> tuple[list[str], list[str], list[str]]:
    """(prompts, uuids, csv line tails 'time,scores') of one chunk."""
    seed, index, n, offsets = args
    prompts = prompts_chunk(seed, index, n)
    rng = np.random.default_rng([seed, index, 1])
    scores = _score_strings(rng, n)
    times = [_ctime(START + timedelta(seconds=int(o))) for o in offsets.tolist()]
    tails = [",".join(parts) for parts in zip(times, *scores, strict=True)]
    return prompts, [uuid5(p) for p in prompts], tails


def generate(n: int, seed: int = 0, jobs: int = 2) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Chunks of (prompts, uuids, tails), in file order; prompts unique across the whole file."""
    rng = np.random.default_rng([seed, 999])
    # More prompts later in the period (Pika's Discord grew), and a weekly rhythm.
    u = rng.random(n) ** 0.8
    offsets = np.sort((u * SPAN_S).astype(np.int64))
    tasks = [(seed, i, min(CHUNK, n - s), offsets[s:s + CHUNK]) for i, s in enumerate(range(0, n, CHUNK))]
    seen: set[str] = set()
    fix_rng = np.random.default_rng([seed, 4242])

    def dedup(chunk: tuple[list[str], list[str], list[str]]) -> tuple[list[str], list[str], list[str]]:
        prompts, uuids, tails = chunk
        for i, p in enumerate(prompts):
            while p in seen:  # rare: give the prompt one more word, as a user would
                base = p.rstrip(" ")
                p = f"{base} {WORDS[int(fix_rng.integers(len(WORDS)))]}" + p[len(base):]
                prompts[i], uuids[i] = p, uuid5(p)
            seen.add(p)
        return prompts, uuids, tails

    if jobs <= 1:
        for t in tasks:
            yield dedup(_chunk_job(t))
        return
    with ProcessPoolExecutor(jobs) as ex:
        for chunk in ex.map(_chunk_job, tasks):
            yield dedup(chunk)


def write_csv(path: str | Path, n: int = ROWS_FULL, seed: int = 0, jobs: int = 2,
              head: dict[int, Path] | None = None) -> dict[str, object]:
    """Write the CSV (and, for each k in `head`, a file of its first k rows). Returns stats."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats = {"rows": 0, "physical_lines": 1, "max_chars": 0, "min_chars": 1 << 30,
             "sum_chars": 0, "with_newline": 0, "with_flags": 0, "with_entity": 0}
    header = ",".join(HEADER) + "\n"
    with contextlib.ExitStack() as stack, open(path, "w", encoding="utf-8", newline="") as fh:
        heads = {k: stack.enter_context(open(p, "w", encoding="utf-8", newline=""))
                 for k, p in (head or {}).items()}
        fh.write(header)
        for h in heads.values():
            h.write(header)
        row = 0
        for prompts, uuids, tails in generate(n, seed, jobs):
            lines = [f"{u},{_field(p)},{t}\n" for u, p, t in zip(uuids, prompts, tails, strict=True)]
            fh.write("".join(lines))
            for k, h in heads.items():
                if row < k:
                    h.write("".join(lines[: k - row]))
            row += len(lines)
            lens = [len(p) for p in prompts]
            stats["max_chars"] = max(stats["max_chars"], max(lens))
            stats["min_chars"] = min(stats["min_chars"], min(lens))
            stats["sum_chars"] += sum(lens)
            nl = [p.count("\n") for p in prompts]
            stats["physical_lines"] += len(prompts) + sum(nl)
            stats["with_newline"] += sum(1 for c in nl if c)
            stats["with_flags"] += sum(1 for p in prompts if " -ar " in p or " -motion " in p
                                       or " -gs " in p or " -neg " in p or " -camera " in p
                                       or " -fps " in p or " -seed " in p)
            stats["with_entity"] += sum(1 for p in prompts if "&" in p)
    stats["rows"] = row
    stats["bytes"] = path.stat().st_size
    stats["mean_chars"] = round(stats["sum_chars"] / max(row, 1), 1)
    return stats


def read_uuids(csv_path: str | Path, k: int) -> list[str]:
    """The first k uuids of a CSV written by `write_csv` (multi-line fields handled)."""
    out: list[str] = []
    csv.field_size_limit(1 << 30)
    with open(csv_path, encoding="utf-8", newline="") as fh:
        r = csv.reader(fh)
        next(r)
        for rec in r:
            out.append(rec[0])
            if len(out) >= k:
                break
    return out


def write_h5(path: str | Path, uuids: list[str], dim: int = 3072, seed: int = 0,
             chunk_rows: int = 8192, clusters: int = 256) -> dict[str, object]:
    """A VidProM_embed.hdf5-shaped file: datasets `uuid` (S36) and `embeddings` (N x dim f32)."""
    import h5py

    path = Path(path)
    n = len(uuids)
    rng = np.random.default_rng([seed, 7])
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    scale = np.float32(0.35 * 4 / np.sqrt(dim))
    with h5py.File(path, "w") as h5:
        h5.create_dataset("uuid", data=np.array(uuids, dtype="S36"))
        ds = h5.create_dataset("embeddings", shape=(n, dim), dtype="float32",
                               chunks=(min(max(n, 1), 256), dim))
        for s in range(0, n, chunk_rows):
            k = min(chunk_rows, n - s)
            v = rng.standard_normal((k, dim), dtype=np.float32)
            v *= scale
            v += centres[rng.integers(0, clusters, k)]
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            ds[s:s + k] = v
        h5.attrs["model"] = "openai:text-embedding-3-large"
    return {"rows": n, "dim": dim, "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["csv", "h5", "both"])
    ap.add_argument("out", help="file (csv, h5) or folder (both)")
    ap.add_argument("--rows", type=int, default=ROWS_FULL)
    ap.add_argument("--embed-rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=3072)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--head", type=int, action="append", default=[],
                    help="also write a CSV of the first K rows (repeatable)")
    ap.add_argument("--from-csv", help="h5: take the uuids from this CSV's first rows")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    if a.what == "csv":
        heads = {k: Path(a.out).with_name(f"{Path(a.out).stem}_{k}.csv") for k in a.head}
        print(write_csv(a.out, a.rows, a.seed, a.jobs, heads))
    elif a.what == "h5":
        if not a.from_csv:
            ap.error("h5 needs --from-csv (the prompts whose uuids the file carries)")
        print(write_h5(a.out, read_uuids(a.from_csv, a.rows), a.dim, a.seed))
    else:
        out = Path(a.out)
        heads = {a.embed_rows: out / f"VidProM_unique_{a.embed_rows}.csv"}
        print(write_csv(out / "VidProM_unique.csv", a.rows, a.seed, a.jobs, heads))
        print(write_h5(out / "embed.h5", read_uuids(out / "VidProM_unique.csv", a.embed_rows),
                       a.dim, a.seed))
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
