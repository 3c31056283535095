"""A thread-safe LRU cache bounded by the bytes of what it holds.

The gallery serves a pinned lake, so nothing it computes from the lake ever goes stale while
the server runs: rendered pages and thumbnails are kept until memory says otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class ByteLRU:
    """Values by key, least recently used dropped first once their sizes exceed `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value under `key`, or None."""
        with self._lock:
            hit = self._d.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._d.move_to_end(key)
            self.hits += 1
            return hit[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep `value` (of `size` bytes) unless it alone exceeds the budget."""
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._d[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _k, (_v, n) = self._d.popitem(last=False)
                self.nbytes -= n

    def __len__(self) -> int:
        return len(self._d)
