"""VidLake: an embedded, versioned data lake for text-to-video prompt galleries.

    >>> import vidprom_lake
    >>> lake = vidprom_lake.open_lake("lake")          # or create_lake(...)
    >>> lake.ingest("VidProM_unique.csv")
    >>> lake.query("select count(*) from prompts where toxicity > 0.5")
    >>> lake.to_polars("prompts").filter(...).collect()
    >>> lake.as_of("batch-0002").query(...)
"""

from __future__ import annotations

from .errors import VidlakeError
from .lake import Batch, BatchInfo, Lake, create_lake, open_lake

__version__ = "0.1.0"

__all__ = ["Batch", "BatchInfo", "Lake", "VidlakeError", "create_lake", "open_lake", "__version__"]
