"""A very-high-resolution source for the demo world: 2.5 m RGB (uint8) products, nested in the 10 m grid.

Two products: an older one over the whole AOI and a newer one over its western part, so that a mosaic with the
newest on top takes pixels from both. Their origins lie on multiples of 60 m, as the Sentinel-2 grids do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import box, mapping

from eoshard.flows.demo.cog import write_cog
from eoshard.flows.demo.world import AOI_BOUNDS_LONLAT, WORLD_CRS, World

HR_COLLECTION = "demo-vhr"
HR_RESOLUTION = 2.5
HR_BANDS = ("red", "green", "blue")
# class code -> RGB; 0 = bare land between parcels, 7 = water, 8 = roads
_COLOURS = np.array(
    [[150, 130, 100], [200, 190, 90], [90, 160, 60], [230, 220, 40], [70, 170, 70], [120, 150, 60],
     [160, 120, 90], [40, 70, 140], [110, 110, 110]], dtype=np.uint8,
)  # fmt: skip


def _extent() -> tuple[float, float, float, float]:
    """The AOI in the world CRS, widened to multiples of 60 m."""
    x0, y0, x1, y1 = gpd.GeoSeries([box(*AOI_BOUNDS_LONLAT)], crs=4326).to_crs(WORLD_CRS).total_bounds
    return (np.floor(x0 / 60) * 60, np.floor(y0 / 60) * 60, np.ceil(x1 / 60) * 60, np.ceil(y1 / 60) * 60)


def _render(world: World, transform: Affine, shape: tuple[int, int], seed: int) -> np.ndarray:
    """``(3, H, W)`` uint8: parcel colours by class, water, roads, and a little texture."""
    shapes = [(g, int(c)) for g, c in zip(world.parcels.geometry, world.parcels["class_code"], strict=True)]
    shapes += [(world.roads, 8), (world.water, 7)]
    classes = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8")
    rgb = _COLOURS[classes].transpose(2, 0, 1).astype(np.int16)
    texture = np.random.default_rng(seed).integers(-12, 13, size=rgb.shape, dtype=np.int16)
    return np.clip(rgb + texture, 1, 255).astype(np.uint8)  # 0 is nodata


def _item(
    root: Path, world: World, item_id: str, when: datetime, extent: tuple[float, ...], seed: int
) -> pystac.Item:
    x0, y0, x1, y1 = extent
    shape = (round((y1 - y0) / HR_RESOLUTION), round((x1 - x0) / HR_RESOLUTION))
    transform = Affine(HR_RESOLUTION, 0.0, x0, 0.0, -HR_RESOLUTION, y1)
    pixels = _render(world, transform, shape, seed)
    footprint = gpd.GeoSeries([box(*extent)], crs=WORLD_CRS).to_crs(4326).iloc[0]
    epsg = int(WORLD_CRS.split(":")[1])
    properties = {"proj:code": WORLD_CRS, "proj:epsg": epsg, "gsd": HR_RESOLUTION, "constellation": "demo-vhr"}
    item = pystac.Item(
        item_id, mapping(footprint), list(footprint.bounds), when, properties, collection=HR_COLLECTION
    )
    folder = root / item_id
    folder.mkdir(parents=True, exist_ok=True)
    for band, layer in zip(HR_BANDS, pixels, strict=True):
        path = folder / f"{band}.tif"
        write_cog(path, layer, epsg, transform)
        extra = {
            "proj:shape": list(shape),
            "proj:transform": list(transform)[:6],
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": HR_RESOLUTION}],
        }
        item.add_asset(
            band, pystac.Asset(str(path.resolve()), media_type=pystac.MediaType.COG, extra_fields=extra)
        )
    return item


def write_hr(root: Path, world: World) -> Path:
    """Write the HR products under ``root`` and their ItemCollection ``root/items.json``; returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    x0, y0, x1, y1 = _extent()
    west = (x0, y0, x0 + round((x1 - x0) / 3 / 60) * 60, y1)
    items = [
        _item(root, world, "VHR_20230804_DEMO", datetime(2023, 8, 4, 10, 31, tzinfo=UTC), (x0, y0, x1, y1), 7),
        _item(root, world, "VHR_20240612_DEMO_WEST", datetime(2024, 6, 12, 10, 42, tzinfo=UTC), west, 8),
    ]
    path = root / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(), indent=1))
    return path
