"""The lake as Polars frames: prompt lengths, prompts per week, NSFW shares, videos per model.

    python examples/polars_api.py [--lake LAKE]
"""

from __future__ import annotations

import polars as pl
from _common import lake_from_args

lake, _ = lake_from_args(__doc__)

prompts = lake.to_polars("prompts")  # a LazyFrame over the Lance table (no vector columns)
text = pl.coalesce("prompt_clean", "prompt")
lengths = (prompts
           .select("source", text.str.len_chars().alias("chars"),
                   text.str.strip_chars().str.split(" ").list.len().alias("words"))
           .group_by("source")
           .agg(pl.len().alias("prompts"), pl.col("words").mean().alias("avg_words"),
                pl.col("chars").median().alias("median_chars"))
           .sort("prompts", descending=True)
           .collect())
print("prompt lengths per source\n", lengths)

weekly = (prompts.filter(pl.col("time").is_not_null())
          .group_by(pl.col("time").dt.truncate("1w").alias("week"), "source")
          .agg(pl.len().alias("prompts")).sort("week").collect())
print("prompts per week\n", weekly.head(8))

labels = ["toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]
shares = (prompts.filter(pl.col("toxicity").is_not_null())
          .select([(pl.col(c) > 0.5).mean().alias(c) for c in labels]).collect())
print("share of scored prompts above 0.5\n", shares)

videos = lake.to_polars("videos", columns=["model", "bytes", "duration_s"])  # never the blob column
print("videos per model\n", videos.group_by("model").agg(pl.len().alias("videos"),
                                                          pl.col("bytes").sum()).collect())
