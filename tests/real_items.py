"""Real recorded STAC items (../shared/data/stac) made readable: local GeoTIFFs exactly as each asset declares.

The recorded items point at remote COGs that tests cannot read. :func:`localise` writes, for the bands asked,
a tiled GeoTIFF with the asset's own ``proj:shape``, ``proj:transform``, CRS (the item's ``proj:epsg`` /
``proj:code``), ``raster:bands`` data type and nodata, holding seeded digital numbers (SCL classes, Landsat QA_PIXEL
values) in a window and nodata
elsewhere (sparse tiles, so a 10980 x 10980 band costs kilobytes), and rewrites the hrefs to those files.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.windows import Window

from tests.conftest import shared_path

BLOCK = 512
SCL_CLASSES = np.array([4, 5, 6, 8, 9, 10, 3], dtype=np.uint8)  # vegetation, bare, water, clouds, cirrus, shadow
# Landsat C2 QA_PIXEL values as USGS writes them (bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 shadow, 5 snow,
# 6 clear, 7 water; 8-15 confidences): clear land twice, water, dilated cloud, cloud, cloud shadow, cirrus, snow
QA_PIXEL_VALUES = np.array([21824, 21824, 21952, 21826, 22280, 23888, 55052, 30048], dtype=np.uint16)


RECORDED = Path(__file__).parent / "catalog" / "recorded"  # recordings ../shared/data lacks (see its README)


def recorded_items(name: str) -> list[dict[str, Any]]:
    """The features of ``tests/catalog/recorded/<name>.json`` (e.g. ``cdse__sentinel-2-l2a``), else of
    ``../shared/data/stac/<name>.json`` (e.g. ``earth-search__sentinel-2-c1-l2a``)."""
    path = RECORDED / f"{name}.json"
    data = json.loads((path if path.is_file() else shared_path("stac", f"{name}.json")).read_text())
    return list(data["features"])


def recorded_item(name: str, item_id: str) -> dict[str, Any]:
    """One recorded item by id (a deep copy: tests may change it)."""
    for item in recorded_items(name):
        if item["id"] == item_id:
            return copy.deepcopy(item)
    raise KeyError(f"no item {item_id} in {name}")


def _epsg(fields: dict[str, Any]) -> int | None:
    code = fields.get("proj:epsg") or fields.get("proj:code")
    return None if code is None else int(str(code).split(":")[-1])


def item_epsg(item: dict[str, Any]) -> int:
    """The item's EPSG code, else the one its assets declare (CDSE puts ``proj:code`` on the assets only)."""
    own = _epsg(item["properties"])
    if own is not None:
        return own
    (found,) = {e for a in item["assets"].values() if (e := _epsg(a)) is not None}
    return found


def raster_of(asset: dict[str, Any]) -> dict[str, Any]:
    """The asset's ``raster:bands[0]`` (STAC 1.0), or its own ``data_type``/``nodata``/``raster:scale``/
    ``raster:offset`` (STAC 1.1, CDSE) under the same keys."""
    if asset.get("raster:bands"):
        return dict(asset["raster:bands"][0])
    flat = {"data_type": "data_type", "nodata": "nodata", "raster:scale": "scale", "raster:offset": "offset"}
    return {key: asset[field] for field, key in flat.items() if field in asset}


def proj_field(item: dict[str, Any], asset_key: str, field: str) -> Any:
    """The asset's ``proj:shape``/``proj:transform``, else the item's (Landsat declares them on the item)."""
    return item["assets"][asset_key].get(field) or item["properties"][field]


def window_grid(item: dict[str, Any], asset_key: str, row: int, col: int, size: int) -> GeoBox:
    """A ``size`` x ``size`` grid on the pixels of ``asset_key`` starting at (``row``, ``col``)."""
    transform = Affine(*proj_field(item, asset_key, "proj:transform")[:6])
    return GeoBox((size, size), transform * Affine.translation(col, row), f"EPSG:{item_epsg(item)}")


def localise(
    item: dict[str, Any], asset_keys: Sequence[str], folder: Path, grid: GeoBox, seed: int = 0
) -> dict[str, Any]:
    """The item with ``asset_keys`` written under ``folder`` (data over ``grid``, nodata elsewhere)."""
    out = copy.deepcopy(item)
    out["links"] = []  # the recorded self link is the remote API's: pystac would resolve the hrefs against it
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for key in asset_keys:
        asset = out["assets"][key]
        raster = raster_of(asset)
        dtype = np.dtype(raster.get("data_type", "uint16"))
        nodata = raster.get("nodata", 0)
        height, width = proj_field(out, key, "proj:shape")
        transform = Affine(*proj_field(out, key, "proj:transform")[:6])
        left, bottom, right, top = grid.extent.boundingbox
        col0, row0 = (int(np.floor(v)) for v in ~transform * (left, top))
        col1, row1 = (int(np.ceil(v)) for v in ~transform * (right, bottom))
        shape = (row1 - row0, col1 - col0)
        if dtype == np.uint8:
            values = rng.choice(SCL_CLASSES, size=shape)
        elif key.lower() == "qa_pixel":
            values = rng.choice(QA_PIXEL_VALUES, size=shape)
        else:
            values = rng.integers(1, 12_000, size=shape, dtype=np.int64).astype(dtype)
        path = folder / f"{out['id']}_{key}.tif"
        profile = {
            "driver": "GTiff", "height": height, "width": width, "count": 1, "dtype": dtype.name,
            "crs": f"EPSG:{_epsg(asset) or item_epsg(out)}", "transform": transform, "nodata": nodata, "tiled": True,
            "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "sparse_ok": True,
        }  # fmt: skip
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(values, 1, window=Window(col0, row0, shape[1], shape[0]))
        asset["href"] = str(path)
    return out


def inner_window(item: dict[str, Any], asset_key: str, size: int) -> tuple[int, int]:
    """(row, col) of a ``size`` px window on ``asset_key``'s pixels around a point inside the item's footprint."""
    from pyproj import Transformer
    from shapely.geometry import shape

    point = shape(item["geometry"]).representative_point()
    x, y = Transformer.from_crs(4326, item_epsg(item), always_xy=True).transform(point.x, point.y)
    col, row = ~Affine(*proj_field(item, asset_key, "proj:transform")[:6]) * (x, y)
    return int(row) - size // 2, int(col) - size // 2


def write_item_collection(items: Sequence[dict[str, Any]], path: Path) -> Path:
    """The items as a FeatureCollection file, as a static catalog source."""
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}))
    return path
