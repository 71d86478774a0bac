"""What a shard task reads: per resolution group, the products of each time step in mosaic order.

Made once by the driver from the same item dicts and ordering rules as the cube engines, so a window read
directly equals the window of the lazy cube.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox

from eoshard.pipeline.items import (
    Bounds,
    acquisition_key,
    acquisition_order,
    asset_bounds,
    grid_epsg,
    prepare_items,
)


@dataclass(frozen=True)
class AssetSource:
    """One band file of one product: its href and its footprint in the grid's CRS (None: unknown, always read)."""

    href: str
    bounds: Bounds | None


@dataclass(frozen=True)
class ProductSource:
    id: str
    assets: Mapping[str, AssetSource]  # band -> file


@dataclass(frozen=True)
class GroupSource:
    """A ``(time, band, y, x)`` group as the cube engines mosaic it: per time step, products with the last on top.

    ``chunksize`` is the stackstac chunk size of the group: products that need warping are read in those
    chunks, so that GDAL's approximate transformer gives the cube's values bit for bit.
    """

    grid: GeoBox
    bands: tuple[str, ...]
    dtype: str
    nodata: float
    resampling: str
    chunksize: int
    steps: tuple[tuple[ProductSource, ...], ...]

    def with_hrefs(self, hrefs: Mapping[str, str]) -> GroupSource:
        """The same recipe with each asset href found in ``hrefs`` replaced (the items signed again)."""
        steps = tuple(
            tuple(
                replace(p, assets={b: replace(a, href=hrefs.get(a.href, a.href)) for b, a in p.assets.items()})
                for p in step
            )
            for step in self.steps
        )
        return replace(self, steps=steps)


def _product(item: Mapping[str, Any], bands: Sequence[str], epsg: int) -> ProductSource:
    assets = {b: AssetSource(str(item["assets"][b]["href"]), asset_bounds(item, b, epsg)) for b in bands}
    return ProductSource(str(item["id"]), assets)


def group_source(
    items: Sequence[Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int,
    resampling: str = "nearest",
    dtype: str = "uint16",
    nodata: float = 0,
) -> GroupSource:
    """The read recipe of ``open_band_group(items, grid, bands, ...)``: same products, order and time steps."""
    dicts = prepare_items(items, grid, bands)
    epsg = grid_epsg(grid)
    steps = []
    for key in acquisition_order(dicts):
        members = [d for d in dicts if acquisition_key(d) == key]
        steps.append(tuple(_product(d, bands, epsg) for d in members))
    return GroupSource(grid, tuple(bands), dtype, float(nodata), resampling, chunksize, tuple(steps))


def paired_source(
    items: Sequence[Mapping[str, Any]], grid: GeoBox, bands: Sequence[str], *, chunksize: int, dtype: str
) -> GroupSource:
    """The read recipe of ``open_paired``: one step, every product, the newest on top."""
    dicts = sorted(items, key=lambda d: (str(d["properties"].get("datetime")), d["id"]))
    epsg = grid_epsg(grid)
    step = tuple(_product(d, bands, epsg) for d in dicts)
    return GroupSource(grid, tuple(bands), str(np.dtype(dtype)), 0.0, "nearest", chunksize, (step,))
