"""glibc malloc settings for processes that run shard tasks, and for the process that commits them.

A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (distributed's default, to hand freed memory
back to the OS). Setting it also freezes glibc's mmap threshold at 128 KiB, so every array a shard task makes (decoded
blocks, windows, samples: 0.1-40 MB each) is a fresh mmap whose pages fault in zeroed, then an munmap: on the tile
benchmark that cost a third of the shard tasks' CPU time in the kernel. A shard's buffers are bounded by the block
cache and the shard size, so the heap may keep them for reuse: arrays under 2 MiB come from the heap, and the heap
is trimmed only above 128 MiB free at its top.

Arrays from 2 MiB (a decoded 1024 px block of 16-bit pixels, a window) stay mmaps: the read threads decode blocks
in malloc arenas of their own, and a block freed in one arena serves only that arena's threads, so each arena kept
its own high-water mark. Mapped, a block the sweep has passed gives its pages back (the quarter-tile build's peak
RSS: 5.3 GB with a 64 MiB threshold, 4.2 GB with 2 MiB, at the same CPU time).

The process that commits the shards (a build's driver) takes big buffers by the thousand: the shards' results
from Dask, and the pages LMDB mallocs for each value it copies in and frees at the commit (2.2 MB for a sample of
the tile benchmark; a quarter of the driver's page faults). Under glibc's own settings a quarter-tile build's
driver faulted in 0.44-0.92 M pages; with buffers under 64 MiB from the heap, and the heap trimmed above 128 MiB
free, 0.13 M, and the driver took about 1.3 CPU s less (3 builds each, alternating: 10.8 s median against
12.3). The heap keeps at most the trim threshold beyond what the driver holds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

from eoshard.pipeline.settings import env_megabytes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
TRIM_BYTES = env_megabytes("EOSHARD_MALLOC_TRIM_MB", 128)
MMAP_BYTES = env_megabytes("EOSHARD_MALLOC_MMAP_MB", 2)
COMMIT_MMAP_BYTES = env_megabytes("EOSHARD_COMMIT_MMAP_MB", 64)  # 0: glibc's own settings

_lock = threading.Lock()
_applied: dict[str, bool] = {}  # "shards" / "commits": the first call's answer, given again to every later call


def tune_malloc() -> bool:
    """Apply the shard tasks' settings once per process (over the committing process's: a driver that runs shard
    tasks itself keeps its memory bounded); False where the C library is not glibc (nothing changed)."""
    with _lock:
        if "shards" not in _applied:
            _applied["shards"] = _mallopt(MMAP_BYTES)
        return _applied["shards"]


def tune_malloc_for_commits() -> bool:
    """Apply the committing process's settings (see above) once per process; False where nothing changed: not
    glibc, ``EOSHARD_COMMIT_MMAP_MB=0``, or shard tasks ran in this process (their settings stay)."""
    with _lock:
        if "commits" not in _applied:
            _applied["commits"] = (
                "shards" not in _applied and COMMIT_MMAP_BYTES > 0 and _mallopt(COMMIT_MMAP_BYTES)
            )
        return _applied["commits"]


def _mallopt(mmap_bytes: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # glibc before 2.35 caps the mmap threshold at 32 MiB (and refuses more)
    mmap = bool(mallopt(M_MMAP_THRESHOLD, mmap_bytes)) or bool(mallopt(M_MMAP_THRESHOLD, min(mmap_bytes, 2**25)))
    return mmap and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
