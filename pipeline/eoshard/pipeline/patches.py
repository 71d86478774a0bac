"""Fixed-size patches over a grid: each patch is ``grid[roi]``, its key derived from its own geobox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely
from odc.geo.geobox import GeoBox

from eoshard.pipeline.errors import GridError
from eoshard.pipeline.grid import XrT, grid_of

if TYPE_CHECKING:
    import geopandas as gpd


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

    def window_in(self, grid: GeoBox) -> tuple[slice, slice]:
        """The patch's rows and columns on ``grid``: any grid nested with the patch's, coarser or finer.

        ``patch.window_in(group_grid(base, 20.0))`` equals ``patch.window(2)`` on a 10 m base grid; on a
        2.5 m grid it is the patch's 4 x 4 times as many pixels. A patch that does not cover whole pixels
        of ``grid``, or lies partly outside it, is a ``GridError``.
        """
        t, g = self.geobox.transform, grid.transform
        ny, nx = self.geobox.shape
        edges = ((t.f - g.f) / g.e, (t.c - g.c) / g.a, ny * t.e / g.e, nx * t.a / g.a)
        whole = [round(v) for v in edges]
        if self.geobox.crs != grid.crs or any(abs(v - w) > 1e-6 for v, w in zip(edges, whole, strict=True)):
            raise GridError(
                f"patch {self.key} does not cover whole pixels of the {abs(g.a):g} m grid at ({g.c:g}, {g.f:g}) "
                f"in {grid.crs}: cut patches and groups from the same base grid (see eoshard.pipeline.group_grid)"
            )
        row, col, h, w = whole
        gy, gx = grid.shape
        if row < 0 or col < 0 or row + h > gy or col + w > gx:
            raise GridError(
                f"patch {self.key} lies outside the {gy} x {gx} px grid at ({g.c:g}, {g.f:g}) (its rows {row}..{row + h}, "
                f"columns {col}..{col + w}): cut patches from the grid of the values they are taken from"
            )
        return slice(row, row + h), slice(col, col + w)

    @property
    def key(self) -> str:
        """``<epsg>_<resolution>_<x0>_<y0>``: the patch's CRS and top-left corner, stable across reruns."""
        t = self.geobox.transform
        assert self.geobox.crs is not None
        return f"{self.geobox.crs.epsg}_{t.a:g}_{t.c:.0f}_{t.f:.0f}"

    @property
    def footprint(self) -> shapely.Polygon:
        x0, y0, x1, y1 = self.geobox.extent.boundingbox
        return shapely.box(x0, y0, x1, y1)


def _check(grid: GeoBox, size: int, step: int, align: int) -> None:
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


def patch_grid(grid: GeoBox, size: int, stride: int | None = None, *, align: int = 1) -> list[Patch]:
    """Every whole ``size`` x ``size`` window of ``grid``, moving by ``stride`` pixels (default: ``size``).

    ``align`` is the zoom factor of the coarsest band group (6 for 60 m bands on a 10 m grid): size and stride
    must be multiples of it so every group is cut at its native resolution without resampling.
    """
    step = stride or size
    _check(grid, size, step, align)
    ny, nx = grid.shape
    return [
        Patch(row, col, grid[row : row + size, col : col + size])
        for row in range(0, ny - size + 1, step)
        for col in range(0, nx - size + 1, step)
    ]


def labelled_fractions(patches: list[Patch], parcels: gpd.GeoDataFrame) -> np.ndarray:
    """The share of each patch's area covered by ``parcels`` (already in the grid's CRS, overlaps merged)."""
    if not patches:
        return np.zeros(0)
    union = shapely.union_all(parcels.geometry.values)
    boxes = np.array([p.footprint for p in patches])
    covered = shapely.area(shapely.intersection(boxes, union))
    return np.asarray(covered / shapely.area(boxes), dtype=float)


def select_labelled(patches: list[Patch], parcels: gpd.GeoDataFrame, min_fraction: float) -> list[Patch]:
    """The patches whose area is at least ``min_fraction`` covered by parcels (and, for 0, touched by one)."""
    fractions = labelled_fractions(patches, parcels)
    return [p for p, f in zip(patches, fractions, strict=True) if f > 0 and f >= min_fraction]


def parcel_centred(grid: GeoBox, parcels: gpd.GeoDataFrame, size: int, *, align: int = 1) -> list[Patch]:
    """One patch per parcel, centred on its representative point, snapped to the coarsest group's grid.

    Patches that would leave the grid are moved inside it; parcels that fall on the same window share it.
    The result is in row-major order, without duplicates.
    """
    _check(grid, size, size, align)
    ny, nx = grid.shape
    points = shapely.point_on_surface(parcels.geometry.values)
    inv = ~grid.transform
    starts: set[tuple[int, int]] = set()
    for point in points:
        if point is None or point.is_empty:
            continue
        col_f, row_f = inv * (point.x, point.y)
        row = round((row_f - size / 2) / align) * align
        col = round((col_f - size / 2) / align) * align
        if row_f < 0 or col_f < 0 or row_f >= ny or col_f >= nx:
            continue  # the parcel lies outside the grid
        row = min(max(row, 0), (ny - size) // align * align)
        col = min(max(col, 0), (nx - size) // align * align)
        starts.add((row, col))
    return [Patch(r, c, grid[r : r + size, c : c + size]) for r, c in sorted(starts)]


# Stripe width of the build's patch order, in base pixels: 4096 px at 10 m is 4 of the 1024 px blocks of a 10 m
# COG and 2 of a 20 m COG (Earth Search, Planetary Computer).
STRIPE_PX = 2048


def stripe_order(patches: list[Patch], grid_width: int, width: int = STRIPE_PX, offset: int = 0) -> list[Patch]:
    """The patches in vertical stripes of ``width`` px, top to bottom within each stripe, stripes left to right.

    Neighbours in the list are then neighbours on the ground whatever the AOI's width, so the shards made of
    consecutive patches read compact areas, and a worker walking down a stripe decodes each source block once.
    ``offset`` (px) moves the stripe edges onto the products' block edges. A grid no wider than one stripe keeps
    row-major order.
    """
    if grid_width <= width:
        return sorted(patches, key=lambda p: (p.row, p.col))
    return sorted(patches, key=lambda p: ((p.col + offset) // width, p.row, p.col))


def extract_patches(values: XrT, patches: Sequence[Patch]) -> list[XrT]:
    """Each patch's window of ``values`` (a cube, label layers or mask on any grid nested with the patches'),
    lazy, with its own grid: ``extract_patches(cubes["s2_20m"], patches)[0].odc.geobox`` is the patch at 20 m."""
    grid = grid_of(values)
    return [values.isel(y=ys, x=xs) for ys, xs in (p.window_in(grid) for p in patches)]
