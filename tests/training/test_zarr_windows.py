"""Windows read through the chunk cache equal the array's own slices, and row-ordered tiles decode each chunk once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from eoshard.training.predict import Tiling
from eoshard.training.zarr_windows import ChunkWindows


class _Counting:
    """An array that counts the reads that reach it."""

    def __init__(self, array: Any) -> None:
        self.array, self.reads = array, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    def __getitem__(self, key: Any) -> Any:
        self.reads.append(key)
        return self.array[key]


def test_windows_equal_the_arrays_slices_and_each_chunk_is_decoded_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 10_000, (3, 4, 150, 170)).astype("uint16")  # 3 dates, 4 bands; the model reads 2 dates
    arr = zarr.create_array(str(tmp_path / "s.zarr"), shape=image.shape, dtype="uint16", chunks=(3, 4, 32, 48))
    arr[:] = image
    channels = [3, 0, 1, 2, 7, 4, 5, 6]  # B08 stored first, as a scene may: the model's order picked by name
    counted = _Counting(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"))
    read = ChunkWindows(counted, channels)
    tiling = Tiling(40, 12, 3)
    for r in tiling.origins(150):
        for c in tiling.origins(170):
            r0, c0 = max(r, 0), max(c, 0)
            h, w = min(r + 40, 150) - r0, min(c + 40, 170) - c0
            got = read(r0, c0, h, w)
            want = image[:2, :, r0 : r0 + h, c0 : c0 + w].reshape(8, h, w)[channels]
            np.testing.assert_array_equal(got, want)
    cells = {(k[-2].start, k[-1].start) for k in counted.reads}
    assert len(counted.reads) == len(cells) == 5 * 4  # 150 / 32 -> 5 chunk rows, 170 / 48 -> 4 columns
    assert all(k[0] == slice(0, 2) for k in counted.reads)  # the third date is never decoded
    # chunks larger than the cache are read for each window, not kept
    counted.reads.clear()
    small = ChunkWindows(counted, channels, cache_bytes=8 * 32 * 48 * 2 - 1)
    np.testing.assert_array_equal(small(20, 30, 40, 40), image[:2, :, 20:60, 30:70].reshape(8, 40, 40)[channels])
    np.testing.assert_array_equal(small(20, 30, 40, 40), image[:2, :, 20:60, 30:70].reshape(8, 40, 40)[channels])
    assert len(counted.reads) == 2 * 4 and not small.cells  # 2 x 2 chunks under the window, twice


def test_predicts_tiles_and_output_squares_decode_each_chunk_once(tmp_path: Path) -> None:
    """The blend yields rows of squares while the tiles run, and predict reads each square's pixels (nodata, mask)
    through the same reader: those reads come back to older chunk rows and must not push out the rows the next
    tiles need (each chunk was decoded 1.55 times on the quarter tile's scene when they did)."""
    from eoshard.training.predict import blend, padded_read

    image = np.random.default_rng(2).integers(0, 10_000, (2, 3, 300, 280)).astype("uint16")
    arr = zarr.create_array(str(tmp_path / "s.zarr"), shape=image.shape, dtype="uint16", chunks=(2, 3, 32, 32))
    arr[:] = image
    counted = _Counting(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"))
    read = padded_read(ChunkWindows(counted, list(range(6))), 300, 280)
    squares = 0
    for r, c, values in blend(lambda t: t[:, :1] * 1.0, read, 300, 280, 1, Tiling(32, 8, 2), strip=32):
        np.testing.assert_array_equal(
            read(r, c, *values.shape[1:]), image.reshape(6, 300, 280)[:, r : r + 32, c : c + 32]
        )
        squares += 1
    assert squares == 10 * 9 and len(counted.reads) == 10 * 9  # 300 / 32 -> 10 chunk rows, 280 / 32 -> 9 columns


def test_the_cache_grows_with_the_memory_available(tmp_path: Path, monkeypatch: Any) -> None:
    """Past its fixed 256 MiB, the cache may take a quarter of the available memory, and no more than a row of
    tiles needs: a large model's chunk rows are decoded once where memory allows, and the cache stays bounded."""
    from eoshard.training import zarr_windows

    image = np.random.default_rng(3).integers(0, 10_000, (2, 3, 96, 200)).astype("uint16")
    arr = zarr.create_array(str(tmp_path / "s.zarr"), shape=image.shape, dtype="uint16", chunks=(2, 3, 32, 32))
    arr[:] = image
    cell = 6 * 32 * 32 * 2
    needed = (2 + 1) * (7 + 1) * cell  # the chunk rows a 40 px row of tiles spans, across the width (7 columns)
    monkeypatch.setattr(zarr_windows, "CACHE_BYTES", 4 * cell)

    def decodes(available: int) -> tuple[int, int]:
        monkeypatch.setattr(zarr_windows, "available_memory", lambda: available)
        counted = _Counting(zarr.open_array(str(tmp_path / "s.zarr"), mode="r"))
        read = ChunkWindows(counted, list(range(6)))
        tiling = Tiling(40, 12, 3)
        for r in tiling.origins(96):
            for c in tiling.origins(200):
                r0, c0 = max(r, 0), max(c, 0)
                h, w = min(r + 40, 96) - r0, min(c + 40, 200) - c0
                np.testing.assert_array_equal(
                    read(r0, c0, h, w), image.reshape(6, 96, 200)[:, r0 : r0 + h, c0 : c0 + w]
                )
        return len(counted.reads), len(read.cells)

    assert decodes(4 * needed) == (3 * 7, 3 * 7)  # each of the 3 x 7 chunks once, all of them held
    assert decodes(4 * 2**40) == (3 * 7, 3 * 7)  # no more than the rows need, however much memory
    few, held = decodes(0)  # the fixed bound alone: 4 chunks
    assert few > 3 * 7 and held == 4
