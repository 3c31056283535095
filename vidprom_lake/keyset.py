"""A set of string keys (prompt uuids, video ids) as one sorted array of fixed-width bytes.

Membership tests for imports and scrapes that check keys one at a time against a whole table:
36 bytes a uuid where a Python set costs ~100 and a numpy ``U36`` array 144 (1.67M VidProM
uuids: 60 MB against 240 MB), built from Arrow without a Python object per key, and one
pickle (a numpy array) when it travels to Ray workers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class KeySet:
    """Sorted keys as UTF-8 bytes in a numpy ``S<width>`` array; ``key in keys`` is one binary
    search. (numpy pads ``S`` values with NUL bytes, so keys must not end in NUL: text keys
    never do.)"""

    def __init__(self, sorted_keys: np.ndarray):
        self.arr = sorted_keys

    @classmethod
    def of_arrow(cls, column: pa.Array | pa.ChunkedArray) -> KeySet:
        """The non-null keys of a string column."""
        col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        col = col.drop_null()
        if not len(col):
            return cls(np.array([], dtype="S1"))
        lengths = pc.binary_length(col)
        width = int(pc.max(lengths).as_py())
        if int(pc.min(lengths).as_py()) == width and col.type in (pa.string(), pa.large_string()):
            # all one width (uuids): the values lie back to back in the data buffer as they are
            itype = np.int64 if col.type == pa.large_string() else np.int32
            first = int(np.frombuffer(col.buffers()[1], itype, count=1,
                                      offset=col.offset * np.dtype(itype).itemsize)[0])
            arr = np.frombuffer(col.buffers()[2], dtype=f"S{width}", count=len(col),
                                offset=first).copy()
        else:
            arr = np.array([s.encode() for s in col.to_pylist()], dtype=f"S{width}")
        arr.sort()  # bytes order
        return cls(arr)

    @classmethod
    def of(cls, keys: Iterable[str]) -> KeySet:
        return cls.of_arrow(pa.array(list(keys), pa.string()))

    def __contains__(self, key: str) -> bool:
        b = key.encode()
        if len(b) > self.arr.dtype.itemsize:
            return False
        i = int(np.searchsorted(self.arr, b))
        return i < len(self.arr) and self.arr[i] == b

    def __len__(self) -> int:
        return len(self.arr)

    def tolist(self) -> list[str]:
        return [b.decode() for b in self.arr.tolist()]

    def __reduce__(self) -> tuple[Any, ...]:  # one array when pickled (Ray's object store)
        return (KeySet, (self.arr,))
