"""The process heap: give freed memory back, or keep it for reuse during a bulk write.

Lance, numba kernels and numpy allocate through glibc's malloc. By default glibc serves every
block above a moving threshold (at most 32 MB) with a fresh `mmap` and unmaps it on free, and
hands freed memory at the top of the heap back to the kernel; a bulk write that allocates and
frees the same few buffer sizes thousands of times then faults in fresh pages again and again.
On the VMs these figures were taken on, a page never touched before costs ~2-10 us, about a
tenth of an ingest's CPU. Elsewhere (macOS, musl, Windows) these are no-ops.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# prctl options (linux/prctl.h)
_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42

#: While `reuse` is active, blocks under this size come from the heap and are recycled.
REUSE_MMAP_THRESHOLD = 256 << 20
#: ... and up to this much freed memory stays in the heap instead of going back to the kernel.
REUSE_TRIM_THRESHOLD = 1 << 30
#: After a bulk write: glibc's largest adaptive mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on
#: 64-bit), with its trim threshold at twice that, as glibc sets them itself.
AFTER_MMAP_THRESHOLD = 32 << 20


@functools.cache
def _libc() -> Any:
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None  # not glibc
    return libc


def trim() -> None:
    """Give freed heap pages back to the OS (glibc `malloc_trim`; elsewhere a no-op)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


_reuse_lock = threading.Lock()
_reuse_depth = 0  # reuse blocks open, over all threads
_reuse_pages: contextlib.ExitStack | None = None


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """For a bulk write: freed buffers stay in the heap and are handed out again, instead of
    being unmapped and faulted in afresh; on the way out the heap is trimmed and the thresholds
    set to where glibc's own adaptive ones go once blocks of a few MB have been freed
    (`AFTER_MMAP_THRESHOLD`): a threshold set through `mallopt` never adapts again, and
    glibc's initial 128 KB would leave every later 1-32 MB buffer of the process (a
    download's 10 MB chunks, numpy temporaries) a fresh mapping, faulted in page by page.
    Measured on a full VidProM CSV ingest: ~0.3 CPU s (4-5%) less, with the same peak RSS.
    The process also takes small pages meanwhile (`small_pages`).

    Blocks nest, also across threads (two bulk writes in one process): the settings are made
    when the first opens and put back when the last closes, so a write that ends does not put
    them back under another still running.
    """
    global _reuse_depth, _reuse_pages
    libc = _libc()
    if libc is None:
        yield
        return
    with _reuse_lock:
        _reuse_depth += 1
        if _reuse_depth == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, REUSE_MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD)
            _reuse_pages = contextlib.ExitStack()
            _reuse_pages.enter_context(small_pages())
    try:
        yield
    finally:
        with _reuse_lock:
            _reuse_depth -= 1
            if _reuse_depth == 0:
                if _reuse_pages is not None:
                    _reuse_pages.close()
                    _reuse_pages = None
                libc.mallopt(_M_MMAP_THRESHOLD, AFTER_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, 2 * AFTER_MMAP_THRESHOLD)
                libc.malloc_trim(0)


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """No transparent huge pages for this process while the block runs (Linux
    `PR_SET_THP_DISABLE`; the previous setting is put back after; elsewhere a no-op).

    numpy and Arrow's allocator ask for huge pages on large buffers. A fresh 2 MB page is
    taken from the kernel's high-order free blocks, which a VM that reports free memory to
    its host has handed back, so each one is faulted in from the host and cleared; 4 KB pages
    mostly come from recently freed memory. Measured here: the ingest's 64 MB key table filled
    in 0.34-1.19 s with huge pages against a steady 0.26 s without, and a full VidProM CSV
    ingest took 4.8 s against 5.0 s (medians of 8 interleaved runs each)."""
    libc = _libc()
    was = libc.prctl(_PR_GET_THP_DISABLE, 0, 0, 0, 0) if libc is not None else -1
    if was != 0:  # not Linux, or already off
        yield
        return
    libc.prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_THP_DISABLE, 0, 0, 0, 0)
