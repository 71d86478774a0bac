"""glibc malloc settings for processes that run models on the CPU.

A forward pass without autograd (predict's tiles) allocates and frees its activations layer after layer, megabytes
to tens of megabytes each. With glibc's defaults those pages went back to the system and came again zeroed at the
next layer: ``eoshard-train predict`` on a quarter of a Sentinel-2 tile (an FCN of 6 dates x 4 bands, 3 runs) took
10.4-11.4 M page faults and 23-28 s of system time, 47-52 s in all. With freed blocks up to 32 MiB kept in the heap
(``M_MMAP_THRESHOLD``) and the heap trimmed only past 64 MiB free at its top (``M_TRIM_THRESHOLD``): 0.13-0.32 M
faults, 5-6 s of system time, 36-37 s, at the same peak RSS and the same map. Either setting alone made it slower
(setting one turns glibc's own adjustment of the other off). ``fit`` applies them too: the same time on the
quarter tile's dataset, 21 instead of 29 s in the kernel.

They replace whatever the environment set: a Dask nanny puts ``MALLOC_TRIM_THRESHOLD_=65536`` into the environment
of the process that starts it (a LocalCluster in a notebook, a test run), and every process started after it
inherits that, which also fixes glibc's mmap threshold at 128 KiB: the faults of the defaults and more.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_BYTES = 32 * 2**20  # the largest glibc before 2.35 accepts
TRIM_BYTES = 64 * 2**20


def keep_freed_memory() -> bool:
    """Apply the settings above to this process (again: the same); False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # the process's C library: glibc's, musl has none
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
