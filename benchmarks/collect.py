"""Assemble benchmarks/RESULTS.md from the per-topic results each benchmark writes.

    python benchmarks/collect.py

Every benchmark script writes its latest figures to benchmarks/results/<topic>.md; this puts
them in one file, in issue order, with a summary table of every target and its status.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["core", "log", "discord", "enrich", "dedup", "video", "analysis", "seed", "ray", "fetch",
         "web", "scrape"]


def main() -> None:
    parts = {p.stem: p.read_text() for p in sorted((HERE / "results").glob("*.md"))}
    names = [n for n in ORDER if n in parts] + sorted(n for n in parts if n not in ORDER)
    rows = []
    for name in names:
        for line in parts[name].splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 3 and re.search(r"\b(PASS|FAIL|MET|MISSED|NOT RUN)\b", cells[-1]):
                rows.append((name, cells[0], cells[-1]))
    out = [
        "# Benchmark results",
        "",
        f"Assembled {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python benchmarks/collect.py` from "
        "`benchmarks/results/*.md` (each written by its benchmark script; see benchmarks/README.md "
        "for how to run them). Machine: 2 cores, 24 GB, no GPU, shared with other jobs while "
        "these ran, so absolute times are noisy; every comparison is side by side in one run.",
        "",
        "## Summary",
        "",
        "| area | figure | result |",
        "| --- | --- | --- |",
        *[f"| {a} | {f} | {r} |" for a, f, r in rows],
        "",
    ]
    for name in names:
        # each file's headings move one level down under this file's title
        text = re.sub(r"^(#+) ", r"#\1 ", parts[name].strip(), flags=re.M)
        out += [text, ""]
    (HERE / "RESULTS.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'RESULTS.md'} ({len(names)} sections, {len(rows)} figures)")


if __name__ == "__main__":
    main()
