"""Target grids: an odc-geo ``GeoBox`` over an area of interest, aligned so Sentinel-2 grids nest.

geopandas and xarray load when a function needs them: the shard tasks' workers use the grid arithmetic alone
(design record 0020).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

import shapely
from odc.geo import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox

from eoshard.pipeline.errors import GridError

if TYPE_CHECKING:
    import xarray as xr

# Sentinel-2 tile origins are multiples of 60 m, so snapping to 60 m keeps the 10, 20 and 60 m grids nested
# and pixel-aligned with the products (no resampling where the CRS matches).
S2_ALIGNMENT_M = 60.0
XrT = TypeVar("XrT", "xr.DataArray", "xr.Dataset")


def utm_crs_for(area: shapely.Geometry, area_crs: CRS | str = "EPSG:4326") -> CRS:
    """The UTM zone (WGS 84) that holds the centroid of ``area``."""
    import geopandas as gpd

    centroid = gpd.GeoSeries([area], crs=str(area_crs)).to_crs(4326).iloc[0].centroid
    lon, lat = centroid.x, centroid.y
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return CRS(f"EPSG:{(32600 if lat >= 0 else 32700) + zone}")


def reproject_area(area: shapely.Geometry, area_crs: CRS | str, crs: CRS | str) -> shapely.Geometry:
    """``area`` in ``crs``, densified first so that curved edges keep their extent."""
    import geopandas as gpd

    densified = shapely.segmentize(area, max_segment_length=_segment_length(area))
    return gpd.GeoSeries([densified], crs=str(area_crs)).to_crs(str(crs)).iloc[0]


def _segment_length(area: shapely.Geometry) -> float:
    x0, y0, x1, y1 = area.bounds
    return max(x1 - x0, y1 - y0, 1e-9) / 64.0


def grid_for_area(
    area: shapely.Geometry,
    area_crs: CRS | str = "EPSG:4326",
    *,
    resolution: float = 10.0,
    crs: CRS | str | None = None,
    alignment: float = S2_ALIGNMENT_M,
) -> GeoBox:
    """A north-up grid covering ``area`` whose edges are multiples of ``alignment`` metres.

    ``resolution`` must divide ``alignment`` so every coarser Sentinel-2 pixel holds whole fine pixels.
    """
    if area.is_empty or area.area == 0:
        raise GridError(
            f"the area of interest is empty (got {area.wkt[:80]}): give a polygon or a bbox with an extent"
        )
    ratio = alignment / resolution if resolution > 0 else 0.0
    if resolution <= 0 or abs(ratio - round(ratio)) > 1e-9:
        raise GridError(
            f"resolution {resolution} m does not divide the {alignment:g} m alignment: "
            "use 60, 20, 10, 5, 2.5 m or another divisor of 60"
        )
    if CRS(area_crs).geographic:
        minx, miny, maxx, maxy = area.bounds
        if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):  # noqa: SIM300
            raise GridError(
                f"the area's bounds {tuple(round(v, 3) for v in area.bounds)} are not longitude and latitude, as "
                f"its CRS {area_crs} says: pass area_crs, the CRS its coordinates are in (e.g. a GeoDataFrame's .crs)"
            )
    target = CRS(crs) if crs is not None else utm_crs_for(area, area_crs)
    if target.geographic or set(target.units) != {"metre"}:
        raise GridError(
            f"the grid's CRS {target} is not projected in metres (its axes are in {', '.join(target.units)}): "
            "give a projected CRS such as the UTM zone of the AOI (the default) or leave crs out"
        )
    x0, y0, x1, y1 = reproject_area(area, area_crs, target).bounds
    snapped = BoundingBox(
        math.floor(x0 / alignment) * alignment,
        math.floor(y0 / alignment) * alignment,
        math.ceil(x1 / alignment) * alignment,
        math.ceil(y1 / alignment) * alignment,
        target,
    )
    return GeoBox.from_bbox(snapped, target, resolution=resolution)


def group_grid(base: GeoBox, resolution: float) -> GeoBox:
    """The grid of a group of ``resolution`` metres nested in ``base``: same origin, whole base pixels per pixel.

    Coarser groups (20, 60 m on a 10 m base) are ``base`` zoomed out; finer ones (2.5 m) zoomed in.
    """
    return base if resolution == abs(base.resolution.x) else _zoomed(base, zoom_factor(base, resolution))


def zoom_factor(base: GeoBox, resolution: float) -> float:
    """Base pixels per group pixel (2 for 20 m on 10 m), or the inverse of group pixels per base pixel (0.25
    for 2.5 m on 10 m); a resolution that does not nest is a ``GridError``."""
    ratio = resolution / abs(base.resolution.x)
    whole = ratio if ratio >= 1 else 1 / ratio
    if resolution <= 0 or abs(whole - round(whole)) > 1e-9:
        raise GridError(
            f"a {resolution:g} m group does not nest in the {abs(base.resolution.x):g} m grid: "
            "use a resolution that is a whole multiple or a whole divisor of the grid's"
        )
    return float(round(whole)) if ratio >= 1 else 1 / round(whole)


def group_factor(base: GeoBox, grid: GeoBox) -> int:
    """How many base pixels one pixel of the coarser nested ``grid`` holds along each axis."""
    factor = zoom_factor(base, abs(grid.resolution.x))
    if factor < 1:
        raise GridError(f"the {abs(grid.resolution.x):g} m grid is finer than the base grid: no zoom-out factor")
    return int(factor)


def _zoomed(base: GeoBox, factor: float) -> GeoBox:
    if factor >= 1:
        ny, nx = base.shape
        f = round(factor)
        if ny % f or nx % f:
            res = f * abs(base.resolution.x)
            raise GridError(
                f"the {ny} x {nx} px grid at {abs(base.resolution.x):g} m holds no whole number of {res:g} m pixels "
                f"({f} x {f} px each): make its width and height multiples of {f} px, e.g. with grid_for_area's "
                f"alignment at a multiple of {res:g} m (the default, 60 m, nests every Sentinel-2 band)"
            )
        return base.zoom_out(factor)
    n = round(1 / factor)
    ny, nx = base.shape
    return base.zoom_to((ny * n, nx * n))


def attach_grid(values: XrT, grid: GeoBox) -> XrT:
    """``values`` (laid out on ``grid``) with its ``spatial_ref`` coordinate: ``values.odc.geobox`` is then ``grid``,
    and a window of them (``isel``) knows its own grid, one-pixel windows included (``GeoTransform``)."""
    if grid.crs is None:
        raise GridError(f"the grid {grid} has no CRS: make it with grid_for_area or give GeoBox a crs")
    from odc.geo.xr import xr_coords

    return values.assign_coords(spatial_ref=xr_coords(grid)["spatial_ref"])


def grid_of(values: xr.DataArray | xr.Dataset) -> GeoBox:
    """The ``GeoBox`` that a cube, label layer or patch carries (its ``spatial_ref`` and ``y``/``x``)."""
    import odc.geo.xr  # noqa: F401  (gives xarray objects their ``.odc`` accessor)

    geobox = values.odc.geobox
    if not isinstance(geobox, GeoBox) or geobox.crs is None:
        raise GridError(
            "the values carry no grid (no spatial_ref coordinate with a CRS, or no regular y/x coordinates): "
            "make them with eoshard.pipeline (open_cube, rasterize_labels) or give them one with attach_grid"
        )
    return geobox


def nested_grid(grid: GeoBox, factor: int) -> GeoBox:
    """``grid`` with each pixel cut into ``factor`` x ``factor``: same extent, so every patch nests exactly."""
    if factor < 1:
        raise GridError(f"the finer grid needs an integer zoom factor >= 1, got {factor}")
    return group_grid(grid, abs(grid.resolution.x) / factor)
