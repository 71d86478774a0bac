"""Fixed-size patches over a grid: each patch is ``grid[roi]``, its key derived from its own geobox."""

from __future__ import annotations

from dataclasses import dataclass

from odc.geo.geobox import GeoBox

from eoshard.pipeline.errors import GridError


@dataclass(frozen=True)
class Patch:
    """One window of the grid: its pixel offset and its own geobox."""

    row: int
    col: int
    geobox: GeoBox

    def window(self, factor: int = 1) -> tuple[slice, slice]:
        """The patch's rows and columns on the grid zoomed out by ``factor`` (1 = the base grid)."""
        ny, nx = self.geobox.shape
        return (
            slice(self.row // factor, (self.row + ny) // factor),
            slice(self.col // factor, (self.col + nx) // factor),
        )

    @property
    def key(self) -> str:
        """``<epsg>_<resolution>_<x0>_<y0>``: the patch's CRS and top-left corner, stable across reruns."""
        t = self.geobox.transform
        assert self.geobox.crs is not None
        return f"{self.geobox.crs.epsg}_{t.a:g}_{t.c:.0f}_{t.f:.0f}"


def patch_grid(grid: GeoBox, size: int, stride: int | None = None, *, align: int = 1) -> list[Patch]:
    """Every whole ``size`` x ``size`` window of ``grid``, moving by ``stride`` pixels (default: ``size``).

    ``align`` is the zoom factor of the coarsest band group (6 for 60 m bands on a 10 m grid): size and stride
    must be multiples of it so every group is cut at its native resolution without resampling.
    """
    step = stride or size
    if size <= 0 or step <= 0:
        raise GridError(f"patch size and stride must be positive, got size={size}, stride={step}")
    if size % align or step % align:
        raise GridError(
            f"patch size {size} and stride {step} must be multiples of {align} px so that the coarsest bands "
            f"are cut whole: use e.g. size {max(align, size // align * align)}"
        )
    ny, nx = grid.shape
    if size > ny or size > nx:
        raise GridError(
            f"a {size} px patch does not fit the {ny} x {nx} px grid: use a smaller patch size or a larger AOI"
        )
    return [
        Patch(row, col, grid[row : row + size, col : col + size])
        for row in range(0, ny - size + 1, step)
        for col in range(0, nx - size + 1, step)
    ]
