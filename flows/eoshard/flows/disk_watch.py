"""A warning, early in a build, when the output's disk will not hold what is left to write at the pace so far.

How much a build writes is known only as it goes: Zarr compresses, and LMDB keeps each sample's valid dates
alone. So the watch measures it: the disk's free space when the shards start, and again at each commit. Once a few
shards are written it projects the rest, and says so once if the disk will fill. A full disk stops the build
cleanly either way (the committed shards stay, a rerun finishes); the warning saves the wait for it.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

from eoshard.flows.writable import nearest_existing
from eoshard.pipeline.errors import readable_bytes

MIN_SHARDS = 3  # shards written before a projection: the first ones also create the stores
MIN_FRACTION = 0.05  # and this share of the shards to write, so that a projection rests on a sample of them


def free_bytes(path: Path) -> int:
    """Free bytes of the filesystem ``path`` (or its nearest existing folder) lies on, for its user."""
    return shutil.disk_usage(nearest_existing(path)).free


class DiskWatch:
    """A ``(done, total)`` progress callback that calls ``warn`` once, when the bytes the shards written so far
    took, times the shards left, exceed the free space of ``path``'s disk."""

    def __init__(self, path: Path, warn: Callable[[str], None], free: Callable[[Path], int] = free_bytes) -> None:
        self.path, self.warn, self.free = path, warn, free
        self.start: tuple[int, int] | None = None  # shards done and free bytes at the first call
        self.warned = False

    def __call__(self, done: int, total: int) -> None:
        if self.warned:
            return
        free = self.free(self.path)
        if self.start is None:
            self.start = (done, free)
            return
        first_done, first_free = self.start
        written, used = done - first_done, first_free - free
        if written < max(MIN_SHARDS, math.ceil(MIN_FRACTION * (total - first_done))) or used <= 0 or done >= total:
            return
        needed = used / written * (total - done)
        if needed > free:
            self.warned = True
            took, need, left = (readable_bytes(n) for n in (used, needed, free))
            rest = "the last one needs" if total - done == 1 else f"the other {total - done} need"
            self.warn(
                f"the output's disk will fill before the build ends: its first {written} shards took {took}, so "
                f"{rest} about {need}, and {self.path} has {left} free. The build stops when the disk is full and "
                "keeps the shards committed: free space and run the same command again to finish, or stop now "
                "(Ctrl-C) and give output.path a disk with room"
            )
