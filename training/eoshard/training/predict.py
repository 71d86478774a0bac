"""Predict on whole scenes block by block: overlapping tiles, Hann-window blend, memory bounded by the block size.

Each tile is ``block`` pixels wide and read with edge padding beyond the scene. Its outer ``margin`` pixels get
weight zero (their receptive field reaches outside the tile); the inner part is weighted by a sin² (Hann) window
so neighbouring tiles blend without seams. Accumulators live in disk-backed memory maps, the output is written
strip by strip.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eoshard.training.errors import ConfigError
from eoshard.training.models import forward
from eoshard.training.package import ModelPackage

Reader = Callable[[int, int, int, int], np.ndarray]  # (row, col, height, width) -> (C, h, w), padded
# numpy.pad modes beyond the scene edges (not "empty": its values are undefined)
PAD_MODES = ("edge", "reflect", "symmetric", "wrap", "constant", "mean", "median", "minimum", "maximum",
             "linear_ramp")  # fmt: skip


@dataclass(frozen=True)
class Tiling:
    block: int = 256
    overlap: int = 64
    margin: int = 16

    def __post_init__(self) -> None:
        if not 0 <= 2 * self.margin <= self.overlap < self.block:
            raise ConfigError(
                f"tiling needs 0 <= 2*margin <= overlap < block, got block={self.block} overlap={self.overlap} "
                f"margin={self.margin}"
            )

    def origins(self, size: int) -> list[int]:
        """Tile origins (in scene pixels, may be negative) whose inner parts cover ``0..size``."""
        stride = self.block - self.overlap
        starts = list(range(-self.margin, size - self.block + self.margin, stride)) or [-self.margin]
        if starts[-1] + self.block - self.margin < size:
            starts.append(max(size + self.margin - self.block, -self.margin))
        return starts

    def window(self, scale: int = 1) -> np.ndarray:
        """2D weights: zero over the margin, sin² inside (strictly positive), at output resolution."""
        n, m = self.block * scale, self.margin * scale
        inner = n - 2 * m
        w1 = np.zeros(n, dtype=np.float64)
        w1[m : n - m] = np.sin(np.pi * (np.arange(inner) + 0.5) / inner) ** 2
        return np.outer(w1, w1)


def padded_read(
    read: Callable[[int, int, int, int], np.ndarray], height: int, width: int, mode: str = "edge"
) -> Reader:
    """Wrap an in-bounds reader so windows reaching past the scene are padded (``numpy.pad`` mode)."""

    def reader(row: int, col: int, h: int, w: int) -> np.ndarray:
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, height), min(col + w, width)
        data = read(r0, c0, r1 - r0, c1 - c0)
        pads = ((0, 0), (r0 - row, row + h - r1), (c0 - col, col + w - c1))
        if not any(p for pair in pads for p in pair):
            return data
        return np.pad(data, pads, mode=mode)  # type: ignore[call-overload]

    return reader


def model_fn(
    package: ModelPackage, probabilities: bool = True, device: str | torch.device = "cpu"
) -> Callable[[np.ndarray], np.ndarray]:
    """(C_total, h, w) raw values -> (K, h*s, w*s), or a batch (B, C_total, h, w) -> (B, K, h*s, w*s): normalised,
    run on ``device`` (the package's model moves there), softmax (segmentation) or de-normalised (SR)."""
    t, c = package.n_dates, len(package.bands)
    dev = torch.device(device)
    model = package.model.to(dev)
    mean = torch.tensor(package.mean, dtype=torch.float32, device=dev)[:, None, None]
    std = torch.tensor(package.std, dtype=torch.float32, device=dev)[:, None, None]
    out_mean = (
        torch.tensor(package.out_mean, dtype=torch.float32, device=dev)[:, None, None]
        if package.out_mean
        else mean
    )
    out_std = (
        torch.tensor(package.out_std, dtype=torch.float32, device=dev)[:, None, None] if package.out_std else std
    )

    def run(tiles: np.ndarray) -> np.ndarray:
        batch = tiles[None] if tiles.ndim == 3 else tiles
        n = batch.shape[0]
        # a copy of its own (the caller's float32 tiles stay as they are), normalised in place
        x = torch.from_numpy(np.array(batch, dtype=np.float32)).to(dev)
        x = x.reshape(n, t, c, *batch.shape[-2:]).sub_(mean).div_(std)
        # no data (NaN, as the dataset's float bands hold it) is 0 once normalised, as in training: a NaN fed on
        # would spread to every output pixel within the model's reach of it
        x = x.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        with torch.no_grad():
            if package.scale > 1:
                y = model(x[:, 0]) * out_std + out_mean
            else:
                y = forward(model, package.architecture, x, torch.zeros(n, t, dtype=torch.bool, device=dev))
                y = y.softmax(1) if probabilities else y
        out = y.cpu().numpy()
        return out[0] if tiles.ndim == 3 else out

    return run


def blend(
    run: Callable[[np.ndarray], np.ndarray], read: Reader, height: int, width: int, n_out: int, tiling: Tiling,
    scale: int = 1, workdir: Path | None = None, strip: int | None = None,
    on_tile: Callable[[int, int], None] | None = None, batch: int = 1,
) -> Iterator[tuple[int, int, np.ndarray]]:  # fmt: skip
    """Yield ``(row, col, values)`` of the blended output, (K, rows, cols) in squares of ``strip`` pixels, row of
    squares after row of squares, each as soon as the tiles left can no longer add to it (their margins weigh zero):
    a reader with a cache of the rows just read finds the squares' pixels there.

    ``run`` takes ``batch`` tiles at a time, ``(B, C, block, block)``. The sums live in disk-backed memory maps
    (file pages the kernel can drop), so process memory holds one batch of tiles and one output square whatever
    the scene size. ``on_tile(done, total)`` is called after each tile's forward pass.
    """
    weight = tiling.window(scale).astype(np.float32)
    strip = strip or tiling.block
    b, s = tiling.block * scale, scale
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        shape = (n_out, (height + 2 * tiling.block) * s, (width + 2 * tiling.block) * s)
        acc = np.memmap(Path(tmp) / "acc", np.float32, "w+", shape=shape)
        den = np.memmap(Path(tmp) / "den", np.float32, "w+", shape=shape[1:])
        off = tiling.block * s  # offset so tiles starting at a negative origin fit
        row_origins, col_origins = tiling.origins(height), tiling.origins(width)
        tiles = [(r, c) for r in row_origins for c in col_origins]
        top = 0  # the first output row not yet yielded
        for first in range(0, len(tiles), batch):
            group = tiles[first : first + batch]
            tiles_in = [read(r, c, tiling.block, tiling.block) for r, c in group]
            outs = run(tiles_in[0][None] if len(tiles_in) == 1 else np.stack(tiles_in))  # one tile: no copy
            for done, ((r, c), out) in enumerate(zip(group, outs, strict=True), first + 1):
                rs, cs = slice(off + r * s, off + r * s + b), slice(off + c * s, off + c * s + b)
                acc[:, rs, cs] += out * weight
                den[rs, cs] += weight
                if on_tile is not None:
                    on_tile(done, len(tiles))
                # a row of tiles done: the rows above the inside of the next row's tiles are final
                if done % len(col_origins) == 0:
                    below = done // len(col_origins)
                    final = (row_origins[below] + tiling.margin) * s if below < len(row_origins) else height * s
                    while top < height * s and (min(top + strip * s, height * s) <= final):
                        yield from _squares(acc, den, top, off, strip * s, height * s, width * s)
                        top += strip * s


def _squares(
    acc: np.ndarray, den: np.ndarray, top: int, off: int, size: int, height: int, width: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """The blended squares of one row of squares, left to right."""
    rows = slice(off + top, off + min(top + size, height))
    for left in range(0, width, size):
        cols = slice(off + left, off + min(left + size, width))
        yield top, left, np.asarray(acc[:, rows, cols]) / np.asarray(den[rows, cols])
