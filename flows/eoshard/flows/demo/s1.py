"""Sentinel-1 RTC-like products of the demo world: float32 VV/VH backscatter COGs on the demo tiles' grids.

Values are linear gamma0 backscatter (power, not dB) drawn from the land cover: water is dark, forest bright
in VH, fields brighten in VH as their crop grows (the S2 phenology), plus a per-overpass soil-moisture offset,
an orbit (incidence) offset and multiplicative speckle, all from fixed seeds. Nodata is 0.0 (as GRD products
use 0; no valid backscatter is exactly 0) and is declared in ``raster:bands``. One product per tile and
overpass, in the tile's UTM CRS and 10 m grid; the items go to their own ItemCollection (``s1/items.json``,
collection ``sentinel-1-rtc``), so the Sentinel-2 catalog stays as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pystac
from shapely.geometry import box, mapping

from eoshard.flows.demo.cog import write_cog
from eoshard.flows.demo.scene import Tile, _vegetation, tile_layers
from eoshard.flows.demo.world import World

S1_COLLECTION = "sentinel-1-rtc"
S1_BANDS = ("vv", "vh")
S1_NODATA = 0.0
_SCHEMAS = [
    "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
]
# land cover -> (VV dB, VH dB): bare field, full-grown crop, forest/unlabelled land, water, roads
_DB = {"bare": (-13.0, -23.0), "crop": (-10.0, -15.5), "forest": (-8.0, -13.5), "water": (-22.0, -28.0),
       "road": (-9.0, -17.0)}  # fmt: skip


@dataclass(frozen=True)
class Overpass:
    """One Sentinel-1 overpass: start time, relative orbit and pass direction, swath edge (world x), seed."""

    start: datetime
    relative_orbit: int
    orbit_state: str
    swath_edge_x: float | None
    seed: int


def overpasses() -> list[Overpass]:
    """Four overpasses on two relative orbits: two on Sentinel-2 days (04-08, 05-18), two not."""
    d, a = "descending", "ascending"
    return [
        Overpass(datetime(2024, 4, 8, 5, 25, 12, tzinfo=UTC), 95, d, None, 2000),
        Overpass(datetime(2024, 4, 14, 17, 2, 41, tzinfo=UTC), 117, a, None, 2001),
        Overpass(datetime(2024, 4, 20, 5, 25, 13, tzinfo=UTC), 95, d, 723_900.0, 2002),
        Overpass(datetime(2024, 5, 18, 17, 2, 44, tzinfo=UTC), 117, a, None, 2003),
    ]


def render_backscatter(world: World, tile: Tile, op: Overpass) -> dict[str, np.ndarray]:
    """``{"vv", "vh"}``: float32 linear backscatter on the tile's 10 m grid, 0.0 outside the swath."""
    layers = tile_layers(world, tile)
    wx, wy, codes, index, cover = layers.wx, layers.wy, layers.codes, layers.index, layers.cover
    veg = _vegetation(codes, index, op.start.timetuple().tm_yday)
    rng = np.random.default_rng(op.seed * 1000 + tile.epsg)
    moisture = rng.uniform(-1.0, 1.0)  # dB, the whole scene: rain before the overpass or not
    incidence = 0.6 if op.orbit_state == "ascending" else 0.0
    out = {}
    for i, band in enumerate(S1_BANDS):
        db = _DB["bare"][i] + moisture + veg * (_DB["crop"][i] - _DB["bare"][i])
        db = np.where(codes == 0, _DB["forest"][i], db)
        db = np.where(cover == 1, _DB["water"][i], db)
        db = np.where(cover == 2, _DB["road"][i], db)
        speckle = 10.0 * np.log10(rng.gamma(8.0, 1.0 / 8.0, size=db.shape))  # 8 looks, in dB
        # 0.2 dB steps keep the COGs small (few distinct values); every value is strictly positive
        values = np.power(10.0, np.round((db + incidence + speckle) * 5.0) / 50.0).astype(np.float32)
        if op.swath_edge_x is not None:
            values[wx + 0.2 * (wy - 5_322_000) > op.swath_edge_x] = S1_NODATA
        out[band] = values
    return out


def _item(root: Path, world: World, tile: Tile, op: Overpass) -> pystac.Item:
    t = op.start.strftime("%Y%m%dT%H%M%S")
    item_id = f"S1A_IW_GRDH_1SDV_{t}_R{op.relative_orbit:03d}_rtc_T{tile.name}"
    x0, y1 = tile.x0, tile.y0
    x1, y0 = x0 + tile.size * 10, y1 - tile.size * 10
    footprint = gpd.GeoSeries([box(x0, y0, x1, y1)], crs=tile.epsg).to_crs(4326).iloc[0]
    props: dict[str, Any] = {
        "platform": "sentinel-1a", "constellation": "sentinel-1", "instruments": ["c-sar"],
        "sar:instrument_mode": "IW", "sar:frequency_band": "C", "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD", "sar:observation_direction": "right", "s1:processing_level": "RTC",
        "sat:orbit_state": op.orbit_state, "sat:relative_orbit": op.relative_orbit,
        "proj:code": f"EPSG:{tile.epsg}", "proj:epsg": tile.epsg,
    }  # fmt: skip
    item = pystac.Item(item_id, mapping(footprint), list(footprint.bounds), op.start, props,
                       stac_extensions=list(_SCHEMAS), collection=S1_COLLECTION)  # fmt: skip
    folder = root / item_id
    folder.mkdir(parents=True, exist_ok=True)
    for band, values in render_backscatter(world, tile, op).items():
        path = folder / f"{band}.tif"
        write_cog(path, values, tile.epsg, tile.transform(10), overviews=False)
        raster = {"nodata": S1_NODATA, "data_type": "float32", "spatial_resolution": 10, "unit": "linear gamma0"}
        extra = {
            "proj:shape": list(tile.shape(10)),
            "proj:transform": list(tile.transform(10))[:6],
            "raster:bands": [raster],
        }
        title = f"{band.upper()}: terrain-corrected gamma0 backscatter"
        asset = pystac.Asset(
            str(path.resolve()), title=title, media_type=pystac.MediaType.COG, roles=["data"], extra_fields=extra
        )
        item.add_asset(band, asset)
    return item


def write_s1(root: Path, world: World, tiles: tuple[Tile, ...]) -> Path:
    """Write one product per tile and overpass under ``root`` and their ItemCollection ``root/items.json``."""
    root.mkdir(parents=True, exist_ok=True)
    items = [_item(root, world, tile, op) for op in overpasses() for tile in tiles]
    path = root / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(), indent=1))
    return path
