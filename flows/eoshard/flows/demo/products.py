"""Write the demo world as a static STAC catalog of Sentinel-2 L2A-like products with COG assets."""

from __future__ import annotations

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pystac
import rasterio
import shapely
from rasterio.features import shapes
from shapely.geometry import box, mapping, shape

from eoshard.flows.demo.cog import write_cog
from eoshard.flows.demo.gpkg import write_gpkg
from eoshard.flows.demo.hr import write_hr
from eoshard.flows.demo.s1 import write_s1
from eoshard.flows.demo.scene import (
    BAND_RESOLUTIONS,
    BOA_ADD_OFFSET,
    QUANTIFICATION,
    SCL_RESOLUTION,
    Acquisition,
    Scene,
    Tile,
    render_scene,
)
from eoshard.flows.demo.world import AOI_BOUNDS_LONLAT, PARCELS_CRS, make_world

COLLECTION_ID = "sentinel-2-l2a"
TILES = (Tile("32UQU", 32632, 719_760.0, 5_325_840.0), Tile("33UUP", 32633, 274_200.0, 5_325_900.0))
_SCHEMAS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
]
_WAVELENGTHS = {"B01": 0.443, "B02": 0.49, "B03": 0.56, "B04": 0.665, "B05": 0.704, "B06": 0.74, "B07": 0.783,
                "B08": 0.842, "B8A": 0.865, "B09": 0.945, "B11": 1.61, "B12": 2.19}  # fmt: skip
_COMMON = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge", "B06": "rededge",
           "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22"}  # fmt: skip


@dataclass(frozen=True)
class DemoData:
    """Paths of what ``write_demo_data`` made."""

    root: Path
    catalog: Path
    aoi: Path
    parcels: Path
    n_items: int
    hr: Path | None = None  # ItemCollection of the 2.5 m products (see demo/hr.py)
    s1: Path | None = None  # ItemCollection of the Sentinel-1 RTC-like products (see demo/s1.py)


def acquisitions() -> list[Acquisition]:
    """Nine overpasses every 20 days over the 2024 season: some clear, some cloudy, two cut by the swath edge."""
    clouds = [0.03, 0.7, 0.12, 0.0, 0.9, 0.05, 0.35, 0.02, 0.5]
    edges = {2: 724_300.0, 5: 722_800.0}
    first = datetime(2024, 4, 8, 10, 20, 21, tzinfo=UTC)
    return [
        Acquisition(first + timedelta(days=20 * i), c, edges.get(i), seed=1000 + i) for i, c in enumerate(clouds)
    ]


def _write_cog(path: Path, array: np.ndarray, tile: Tile, resolution: int) -> None:
    write_cog(path, array, tile.epsg, tile.transform(resolution))


def _footprint(scene: Scene, tile: Tile) -> shapely.Geometry:
    """The valid-data footprint in EPSG:4326, traced from the SCL layer."""
    valid = (scene.arrays["SCL"] != 0).astype(np.uint8)
    polys = [
        shape(g) for g, v in shapes(valid, mask=valid.astype(bool), transform=tile.transform(SCL_RESOLUTION)) if v
    ]
    union = shapely.union_all(polys).simplify(20.0)
    return gpd.GeoSeries([union], crs=tile.epsg).to_crs(4326).iloc[0]


def _product_id(platform: str, acq: Acquisition, tile: Tile, baseline: str, generated: datetime) -> str:
    t = acq.start.strftime("%Y%m%dT%H%M%S")
    return f"S2{platform}_MSIL2A_{t}_N{baseline.replace('.', '')}_R065_T{tile.name}_{generated:%Y%m%dT%H%M%S}"


def _asset(band: str, href: str, tile: Tile) -> pystac.Asset:
    res = SCL_RESOLUTION if band == "SCL" else BAND_RESOLUTIONS[band]
    raster: dict[str, Any] = {"nodata": 0, "data_type": "uint8" if band == "SCL" else "uint16",
                              "spatial_resolution": res}  # fmt: skip
    extra: dict[str, Any] = {"proj:shape": list(tile.shape(res)), "proj:transform": list(tile.transform(res))[:6],
                             "gsd": res}  # fmt: skip
    if band != "SCL":
        raster.update(scale=1.0 / QUANTIFICATION, offset=-BOA_ADD_OFFSET / QUANTIFICATION)
        extra["eo:bands"] = [{"name": band, "common_name": _COMMON[band], "center_wavelength": _WAVELENGTHS[band]}]
    extra["raster:bands"] = [raster]
    roles = ["data"]
    return pystac.Asset(href, title=band, media_type=pystac.MediaType.COG, roles=roles, extra_fields=extra)


def _item(scene: Scene, tile: Tile, acq: Acquisition, index: int, baseline: str, generated: datetime,
          folder: Path, writes: ThreadPoolExecutor) -> tuple[pystac.Item, list[Future[None]]]:  # fmt: skip
    """The product's STAC Item, its COGs handed to ``writes`` (GDAL writes them while the next scene renders)."""
    platform = "A" if index % 2 == 0 else "B"
    item_id = _product_id(platform, acq, tile, baseline, generated)
    item_dir = folder / item_id
    item_dir.mkdir(parents=True, exist_ok=True)
    footprint = _footprint(scene, tile)
    props: dict[str, Any] = {
        "platform": f"sentinel-2{platform.lower()}", "constellation": "sentinel-2", "instruments": ["msi"],
        "eo:cloud_cover": scene.cloud_cover, "s2:nodata_pixel_percentage": scene.nodata_percentage,
        "s2:mgrs_tile": tile.name, "mgrs:utm_zone": int(tile.name[:2]), "mgrs:latitude_band": tile.name[2],
        "mgrs:grid_square": tile.name[3:], "s2:processing_baseline": baseline,
        "s2:datatake_id": f"GS2{platform}_{acq.start:%Y%m%dT%H%M%S}_0{45000 + index}_N{baseline}",
        "s2:product_uri": f"{item_id}.SAFE", "s2:generation_time": generated.isoformat().replace("+00:00", "Z"),
        "sat:relative_orbit": 65, "sat:orbit_state": "descending",
        "proj:code": f"EPSG:{tile.epsg}", "proj:epsg": tile.epsg,
    }  # fmt: skip
    item = pystac.Item(item_id, mapping(footprint), list(footprint.bounds), acq.start, props,
                       stac_extensions=list(_SCHEMAS), collection=COLLECTION_ID)  # fmt: skip
    written = []
    for band, array in scene.arrays.items():
        path = item_dir / f"{band}.tif"
        res = SCL_RESOLUTION if band == "SCL" else BAND_RESOLUTIONS[band]
        written.append(writes.submit(_write_cog, path, array, tile, res))
        item.add_asset(band, _asset(band, str(path.resolve()), tile))
    return item, written


def write_demo_data(root: Path) -> DemoData:
    """Write the demo world under ``root``: ``catalog/`` (static STAC), ``parcels.gpkg``, ``aoi.geojson``,
    ``hr/`` and ``s1/`` (ItemCollections of the 2.5 m and the Sentinel-1 products)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    world = make_world()
    catalog = pystac.Catalog("eoshard-demo", "Sentinel-2 L2A-like demo products over 48.02 N 12.0 E")
    collection = pystac.Collection(
        COLLECTION_ID, "Sentinel-2 L2A-like demo products",
        pystac.Extent(pystac.SpatialExtent([[11.9, 47.95, 12.1, 48.1]]),
                      pystac.TemporalExtent([[datetime(2024, 4, 1, tzinfo=UTC), datetime(2024, 10, 1, tzinfo=UTC)]])),
        license="CC-BY-4.0",
    )  # fmt: skip
    catalog.add_child(collection)
    folder = root / "catalog" / COLLECTION_ID
    n_items = 0
    written: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as writes:
        for i, acq in enumerate(acquisitions()):
            generated = acq.start + timedelta(hours=3, minutes=11, seconds=41)
            for tile in TILES:
                scene = render_scene(world, tile, acq)
                releases = [("05.10", generated)]
                if i == 2 and tile.name == "32UQU":  # reprocessed copy of the same datatake, newer baseline
                    releases.append(("05.11", datetime(2024, 10, 2, 8, 5, 13, tzinfo=UTC)))
                for baseline, when in releases:
                    item, files = _item(scene, tile, acq, i, baseline, when, folder, writes)
                    collection.add_item(item)
                    written += files
                    n_items += 1
    for future in written:
        future.result()  # a failed write raises here
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)

    parcels_path = root / "parcels.gpkg"
    write_gpkg(world.parcels.to_crs(PARCELS_CRS), parcels_path)
    aoi_path = root / "aoi.geojson"
    aoi = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "demo AOI"}, "geometry": mapping(box(*AOI_BOUNDS_LONLAT))}]}  # fmt: skip
    aoi_path.write_text(json.dumps(aoi, indent=1))
    hr = write_hr(root / "hr", world)
    s1 = write_s1(root / "s1", world, TILES)
    return DemoData(root, root / "catalog" / "catalog.json", aoi_path, parcels_path, n_items, hr, s1)


def read_pixels(path: Path) -> np.ndarray:
    """Read a single-band COG as written (helper for checks and tests)."""
    with rasterio.open(path) as src:
        return src.read(1)
