"""Windows of a Zarr scene read through a small cache of decoded chunks.

Predict's tiles overlap (a 256 px tile every 192 px) and rarely fall on chunk edges: read straight from the array,
each tile decoded the 2 x 2 chunks under it, so every chunk was decoded by each of the 4 to 9 tiles that touch it.
The tiles come row after row, so keeping the chunks of the chunk rows a row of tiles spans, and letting go of the
oldest first, decodes each chunk once.

The cache holds no more than those chunk rows, and at most a quarter of the memory available when the scene is
opened (never less than 256 MiB). A fixed 256 MiB was too little for large models: across a quarter tile's width,
the chunk rows of a model of 12 dates x 10 bands take 723 MB, and on 1024 rows of such a scene each chunk was
decoded 3.5 times (308 decodes of 88 chunks; the command 15.7-18.1 s against 13.2-14.3 s decoding each once).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CACHE_BYTES = 256 << 20  # the cache may always grow this far (as far as a row of tiles needs)
MEMORY_SHARE = 4  # and as far as this fraction of the memory available (1 / MEMORY_SHARE)


def available_memory() -> int:
    """Bytes of memory available now (Linux's ``MemAvailable``; free pages elsewhere; 0 if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def cache_budget() -> int:
    """How much decoded data a scene's reader may keep: ``CACHE_BYTES``, or a quarter of the available memory."""
    return max(CACHE_BYTES, available_memory() // MEMORY_SHARE)


def row_span(height: int, width: int, block_h: int, block_w: int) -> int:
    """How many blocks (chunks) a row of windows ``height`` tall can span across ``width`` pixels."""
    return (math.ceil(height / block_h) + 1) * (math.ceil(width / block_w) + 1)


class ChunkWindows:
    """``read(row, col, height, width)`` -> ``(len(channels), height, width)``: the ``channels`` of the array's
    flattened leading dimensions (``(T, C, H, W)`` -> ``T * C``) in an in-bounds window, values as stored."""

    def __init__(self, array: Any, channels: Sequence[int], cache_bytes: int | None = None) -> None:
        self.array, self.n_channels = array, len(channels)
        self.chunk_h, self.chunk_w = (int(n) for n in array.chunks[-2:])
        lead = array.shape[:-2]
        per_date = int(np.prod(lead[1:])) if len(lead) > 1 else 1
        # only the leading dates the channels need are decoded (a scene may hold more dates than the model reads)
        self.dates = max(channels) // per_date + 1 if len(lead) > 1 else None
        n_read = int(np.prod(lead)) if self.dates is None else self.dates * per_date
        self.channels: np.ndarray | None = (
            None if list(channels) == list(range(n_read)) else np.asarray(channels, dtype=np.intp)
        )
        cell = len(channels) * self.chunk_h * self.chunk_w * np.dtype(array.dtype).itemsize
        budget = cache_budget() if cache_bytes is None else cache_bytes
        self.most_cells = budget // max(cell, 1)  # 0: chunks larger than the cache are not kept
        self.capacity = 0
        self.cells: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _cell(self, i: int, j: int) -> np.ndarray:
        """The chunk row ``i``, column ``j``: the wanted channels of every leading chunk there, decoded once."""
        found = self.cells.get((i, j))
        if found is not None:  # not moved up: the oldest chunks go first, also when a late read came back to them
            return found
        rows = slice(i * self.chunk_h, (i + 1) * self.chunk_h)
        cols = slice(j * self.chunk_w, (j + 1) * self.chunk_w)
        lead = (slice(0, self.dates),) if self.dates is not None else ()
        data = np.asarray(self.array[(*lead, ..., rows, cols)])
        data = data.reshape(-1, *data.shape[-2:])
        cell = data if self.channels is None else data[self.channels]
        if self.capacity:
            self.cells[(i, j)] = cell
            while len(self.cells) > self.capacity:
                self.cells.popitem(last=False)
        return cell

    def __call__(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        # the chunk rows a row of windows this tall can span, across the whole width
        span = row_span(height, self.array.shape[-1], self.chunk_h, self.chunk_w)
        self.capacity = min(self.most_cells, max(self.capacity, span))
        out = np.empty((self.n_channels, height, width), dtype=self.array.dtype)
        for i in range(row // self.chunk_h, (row + height - 1) // self.chunk_h + 1):
            for j in range(col // self.chunk_w, (col + width - 1) // self.chunk_w + 1):
                cell = self._cell(i, j)
                r0, r1 = max(row, i * self.chunk_h), min(row + height, (i + 1) * self.chunk_h)
                c0, c1 = max(col, j * self.chunk_w), min(col + width, (j + 1) * self.chunk_w)
                top, left = i * self.chunk_h, j * self.chunk_w
                part = cell[:, r0 - top : r1 - top, c0 - left : c1 - left]
                out[:, r0 - row : r1 - row, c0 - col : c1 - col] = part
        return out
