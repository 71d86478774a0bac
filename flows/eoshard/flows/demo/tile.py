"""A tile-scale benchmark world: part of a Sentinel-2 tile over a season, laid out as Earth Search serves it.

COGs with 1024 px internal tiles, DEFLATE with the horizontal predictor and overviews; 4 bands at 10 m, 6 at 20 m
and the SCL; 12 acquisitions with clouds and shadows; tens of thousands of parcels; a static STAC catalog.
Deterministic: the same scale writes the same bytes.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pystac
import rasterio
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import box, mapping

from eoshard.flows.demo.gpkg import write_gpkg
from eoshard.flows.demo.scene import BOA_ADD_OFFSET, QUANTIFICATION, SCL_CLOUD_HIGH, SCL_CLOUD_MEDIUM, SCL_SHADOW
from eoshard.flows.demo.world import CLASSES

# Side of the written square in 10 m pixels; "quarter" is a quarter of a 10980 px tile.
SCALES: dict[str, int] = {"tile": 10980, "quarter": 5490, "sixteenth": 2745, "small": 1098}
EPSG = 32632
ORIGIN = (600_000.0, 5_400_000.0)  # the tile's upper-left corner (a multiple of 60 m, as MGRS tiles are)
BANDS_10 = ("B02", "B03", "B04", "B08")
BANDS_20 = ("B05", "B06", "B07", "B8A", "B11", "B12")
SCL = "SCL"
COG_BLOCK = 1024
N_DATES = 12
COLLECTION_ID = "sentinel-2-l2a"
# surface reflectance of bare soil and full vegetation per band (BANDS_10 + BANDS_20 order)
_SOIL = np.array([0.10, 0.13, 0.17, 0.26, 0.21, 0.23, 0.25, 0.27, 0.33, 0.28], dtype=np.float32)
_VEG = np.array([0.03, 0.07, 0.04, 0.44, 0.10, 0.30, 0.40, 0.45, 0.22, 0.11], dtype=np.float32)
_CLOUD = np.float32(0.62)


@dataclass(frozen=True)
class TileWorld:
    """Paths of what ``write_tile_world`` made."""

    root: Path
    catalog: Path
    aoi: Path
    parcels: Path
    config: Path
    size: int
    n_items: int
    n_parcels: int


def _transform(resolution: int) -> Affine:
    return Affine(resolution, 0.0, ORIGIN[0], 0.0, -resolution, ORIGIN[1])


def make_parcels(size: int, seed: int = 7) -> gpd.GeoDataFrame:
    """Fields of about 8 ha in road-separated blocks over the square: quadrilaterals, a crop code and name each
    (the demo world's crops)."""
    rng = np.random.default_rng(seed)
    extent = size * 10.0
    x0, y1 = ORIGIN
    polys, codes = [], []
    for bx in np.arange(0.0, extent, 820.0):
        for by in np.arange(0.0, extent, 610.0):
            cols = np.sort(rng.uniform(0.2, 0.8, int(rng.integers(1, 3))))
            xs = np.r_[0.0, cols, 1.0] * min(820.0, extent - bx)
            for xa, xb in itertools.pairwise(xs):
                rows = np.sort(rng.uniform(0.2, 0.8, int(rng.integers(1, 3))))
                ys = np.r_[0.0, rows, 1.0] * min(610.0, extent - by)
                for ya, yb in itertools.pairwise(ys):
                    if xb - xa < 60 or yb - ya < 60 or rng.random() < 0.07:
                        continue
                    inset = rng.uniform(4.0, 14.0, 8)  # roads, hedges and digitising: corners moved inwards
                    corners = [
                        (x0 + bx + xa + inset[0], y1 - by - ya - inset[1]),
                        (x0 + bx + xb - inset[2], y1 - by - ya - inset[3]),
                        (x0 + bx + xb - inset[4], y1 - by - yb + inset[5]),
                        (x0 + bx + xa + inset[6], y1 - by - yb + inset[7]),
                    ]
                    polys.append(shapely.Polygon(corners))
                    codes.append(int(rng.integers(1, 7)))
    ids = np.arange(1, len(polys) + 1, dtype=np.int64)
    return gpd.GeoDataFrame(
        {
            "parcel_id": ids,
            "class_code": np.array(codes, dtype=np.int32),
            "class_name": [CLASSES[c] for c in codes],
        },
        geometry=polys,
        crs=f"EPSG:{EPSG}",
    )


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1): random values on a coarse lattice, bilinearly interpolated."""
    ny, nx = shape[0] // cell + 2, shape[1] // cell + 2
    coarse = rng.random((ny, nx), dtype=np.float32)
    ys = np.arange(shape[0], dtype=np.float32) / cell
    xs = np.arange(shape[1], dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    # along the lattice's rows first, then between them: per pixel the same operations as from its four lattice
    # values (the same bits), on (ny, W) values instead of four gathers of (H, W)
    across = coarse[:, x0] * (1 - fx) + coarse[:, x0 + 1] * fx
    return across[y0] * (1 - fy) + across[y0 + 1] * fy


def _dates() -> list[datetime]:
    first = datetime(2024, 4, 3, 10, 30, 31, tzinfo=UTC)
    return [first + timedelta(days=15 * i) for i in range(N_DATES)]


_CLOUD_COVER = (0.02, 0.35, 0.0, 0.6, 0.1, 0.05, 0.85, 0.0, 0.2, 0.45, 0.03, 0.15)


def _write_cog(path: Path, array: np.ndarray, resolution: int, threads: str) -> None:
    profile = {
        "driver": "COG", "dtype": array.dtype.name, "count": 1, "width": array.shape[1], "height": array.shape[0],
        "crs": f"EPSG:{EPSG}", "transform": _transform(resolution), "nodata": 0, "compress": "DEFLATE",
        "predictor": 2, "blocksize": COG_BLOCK, "overviews": "AUTO", "overview_resampling": "nearest",
        "num_threads": threads,
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array, 1)


def _band(rng: np.random.Generator, b: int, veg: np.ndarray, clouds: np.ndarray, res: int) -> np.ndarray:
    """Band ``b``'s digital numbers where ``veg`` is the vegetation fraction."""
    surface = _SOIL[b] * (1 - veg) + _VEG[b] * veg
    # in place, in the order of ``(surface * (1 + 0.12 * (smooth - 0.5)) + noise) * Q + offset`` (the same bits):
    # fresh temporaries of a whole band cost more than the arithmetic
    dn = _smooth(rng, surface.shape, 40 // (res // 10))
    dn -= 0.5
    dn *= 0.12
    dn += 1.0
    noise = rng.standard_normal(surface.shape, dtype=np.float32)
    noise *= np.float32(0.006)
    dn *= surface
    dn += noise
    dn[clouds] = _CLOUD + noise[clouds] * 4
    dn *= QUANTIFICATION
    dn += BOA_ADD_OFFSET
    return np.clip(dn, 1, 65535, out=dn).astype(np.uint16)


def _render(
    classes: dict[int, np.ndarray], date: datetime, cover: float, seed: int
) -> Iterator[tuple[str, np.ndarray]]:
    """The 10 bands and the SCL of one acquisition from the class maps at 10 and 20 m, one at a time (a whole
    tile's bands at once, with their float intermediates, took 10 GB)."""
    rng = np.random.default_rng(seed)
    doy = date.timetuple().tm_yday
    peaks = np.array([0, 140, 215, 115, 170, 225, 190], dtype=np.float32)  # class -> day of peak green
    widths = np.array([1, 45, 40, 40, 200, 45, 35], dtype=np.float32)
    fraction = np.exp(-(((doy - peaks) / widths) ** 2)).astype(np.float32) * 0.9
    fraction[0] = 0.15  # background: grass and trees between the fields
    clouds: dict[int, np.ndarray] = {}
    for res, shape in ((20, classes[20].shape), (10, classes[10].shape)):
        lattice = np.random.default_rng(seed + 7)  # the same clouds at both resolutions
        field = _smooth(lattice, shape, 1200 // res)
        clouds[res] = field > np.quantile(field, 1.0 - cover) if cover > 0 else np.zeros(shape, dtype=bool)
    for b, band in enumerate(BANDS_10 + BANDS_20):
        res = 10 if band in BANDS_10 else 20
        yield band, _band(rng, b, fraction[classes[res]], clouds[res], res)
    scl = np.where(classes[20] > 0, 4, 5).astype(np.uint8)
    shadow = np.roll(clouds[20], (8, -8), axis=(0, 1)) & ~clouds[20]
    scl[shadow] = SCL_SHADOW
    scl[clouds[20]] = SCL_CLOUD_HIGH
    scl[clouds[20] & (rng.random(clouds[20].shape) < 0.2)] = SCL_CLOUD_MEDIUM
    yield SCL, scl


def _item(index: int, date: datetime, cover: float, size: int, folder: Path) -> pystac.Item:
    item_id = f"S2{'AB'[index % 2]}_MSIL2A_{date:%Y%m%dT%H%M%S}_N0510_R108_T32UPU_{date:%Y%m%d}T141516"
    extent = box(ORIGIN[0], ORIGIN[1] - size * 10, ORIGIN[0] + size * 10, ORIGIN[1])
    footprint = gpd.GeoSeries([extent], crs=EPSG).to_crs(4326).iloc[0]
    props: dict[str, Any] = {
        "platform": f"sentinel-2{'ab'[index % 2]}", "constellation": "sentinel-2", "eo:cloud_cover": cover * 100,
        "s2:nodata_pixel_percentage": 0.0, "s2:mgrs_tile": "32UPU", "s2:processing_baseline": "05.10",
        "sat:relative_orbit": 108, "proj:code": f"EPSG:{EPSG}", "proj:epsg": EPSG,
    }  # fmt: skip
    item = pystac.Item(item_id, mapping(footprint), list(footprint.bounds), date, props, collection=COLLECTION_ID)
    for band in (*BANDS_10, *BANDS_20, SCL):
        res = 10 if band in BANDS_10 else 20
        n = size * 10 // res
        extra = {
            "proj:shape": [n, n], "proj:transform": list(_transform(res))[:6], "gsd": res,
            "raster:bands": [{"nodata": 0, "data_type": "uint8" if band == SCL else "uint16",
                              "spatial_resolution": res}],
        }  # fmt: skip
        href = folder / item_id / f"{band}.tif"
        item.add_asset(
            band, pystac.Asset(str(href.resolve()), media_type=pystac.MediaType.COG, extra_fields=extra)
        )
    return item


_BYTES_PER_PIXEL = 64  # what rendering a product holds at once per 10 m pixel (52 measured), beside the classes


def _processes(size: int, dates: int) -> int:
    """Products rendered at once by default: one per core, as many as the available memory holds; one where a
    product takes under a second (starting a process costs about as much)."""
    if size < SCALES["sixteenth"]:
        return 1
    import psutil

    fits = psutil.virtual_memory().available // (_BYTES_PER_PIXEL * size * size + 2**28)
    return max(1, min(os.cpu_count() or 1, dates, int(fits)))


Job = tuple[Path, datetime, float, int, int]  # a product's folder, date, cloud cover, seed and 10 m side


def _write_product(classes: dict[int, np.ndarray], job: Job, threads: str = "ALL_CPUS") -> None:
    """The 10 bands and SCL of one product, as COGs in its folder, compressed on GDAL's ``threads``."""
    folder, date, cover, seed, size = job
    for band, array in _render(classes, date, cover, seed):
        _write_cog(folder / f"{band}.tif", array, 20 if array.shape[0] < size else 10, threads)


_CLASSES: dict[int, np.ndarray] = {}  # a rendering process's class maps, given once when it starts


def _keep_classes(classes: dict[int, np.ndarray]) -> None:
    _CLASSES.update(classes)


def _write_pooled(job: Job, threads: str) -> None:
    _write_product(_CLASSES, job, threads)


def _write_products(
    classes: dict[int, np.ndarray], jobs: list[Job], processes: int, on_progress: Callable[[int, int], None] | None
) -> None:
    """Every product of ``jobs``, ``processes`` at a time (spawned: the caller may hold threads, such as a progress
    bar's, and GDAL's state, which a fork would copy mid-use)."""
    if processes <= 1:
        for done, job in enumerate(jobs, start=1):
            _write_product(classes, job)
            if on_progress is not None:
                on_progress(done, len(jobs))
        return
    context = multiprocessing.get_context("spawn")
    threads = str(max(1, (os.cpu_count() or 1) // processes))  # ALL_CPUS in each process would oversubscribe
    with ProcessPoolExecutor(processes, context, initializer=_keep_classes, initargs=(classes,)) as pool:
        try:
            futures = [pool.submit(_write_pooled, job, threads) for job in jobs]
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()  # a failed product (a full disk) raises here
                if on_progress is not None:
                    on_progress(done, len(jobs))
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the products not started are not written
            raise


_CONFIG = """\
# A build of this world, written with it by `eoshard demo-data --scale {scale}`: eoshard build {path}
# (the build of benchmarks/bench_tile.py). Relative paths are relative to this file.
name: tile-world-{scale}
catalog:
  source: catalog/catalog.json
  collection: {collection}
  max_cloud: 100
aoi: aoi.geojson
period:
  start: 2024-04-01
  end: 2024-10-31
bands: [{bands}]
labels:
  path: parcels.gpkg
  class_column: class_code
  class_name_column: class_name
  id_column: parcel_id
patches:
  size: 128
timeseries:
  mask: scl
output:
  path: dataset
  shard_size: 16
{splits}"""
_SMALL_SPLITS = """\
splits:
  block_size: 2560  # the default 5120 m blocks are too few in 11 km for a test split
"""


def write_tile_world(
    root: Path,
    scale: str = "quarter",
    *,
    dates: int = N_DATES,
    on_progress: Callable[[int, int], None] | None = None,
    processes: int | None = None,
) -> TileWorld:
    """Write the world of ``scale`` (see ``SCALES``) under ``root``: ``catalog/``, ``parcels.gpkg``, ``aoi.geojson``
    and ``build.yaml``, a build of all of it (10 bands, labels, 128 px patches) into ``root/dataset``.

    ``dates`` (at most 12) keeps the first acquisitions only, for quick tests; ``on_progress(done, total)`` is
    called before the first product and after each one. ``processes`` render products at once (default: one
    per core, as many as the available memory holds, one at the small scale); each product has its own seed, so
    the bytes are the same whatever the number.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    size = SCALES[scale]
    root = Path(root)
    parcels = make_parcels(size)
    folder = root / "catalog" / COLLECTION_ID
    shapes = list(zip(parcels.geometry, parcels.class_code, strict=True))
    classes = {
        res: rasterize(shapes, out_shape=(size * 10 // res,) * 2, transform=_transform(res), fill=0, dtype="uint8")
        for res in (10, 20)
    }
    collection = pystac.Collection(
        COLLECTION_ID, f"Sentinel-2 L2A-like benchmark products, {scale} of a tile",
        pystac.Extent(pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
                      pystac.TemporalExtent([[_dates()[0], _dates()[-1]]])),
        license="CC-BY-4.0",
    )  # fmt: skip
    catalog = pystac.Catalog("eoshard-tile", f"eoshard tile-scale benchmark world ({scale})")
    catalog.add_child(collection)
    if on_progress is not None:
        on_progress(0, dates)
    jobs = []
    for i, (date, cover) in enumerate(zip(_dates()[:dates], _CLOUD_COVER[:dates], strict=True)):
        item = _item(i, date, cover, size, folder)
        (folder / item.id).mkdir(parents=True, exist_ok=True)
        collection.add_item(item)
        jobs.append((folder / item.id, date, cover, 100 + i, size))
    _write_products(classes, jobs, _processes(size, dates) if processes is None else processes, on_progress)
    catalog.normalize_hrefs(str(root / "catalog"))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    parcels_path = root / "parcels.gpkg"
    write_gpkg(parcels, parcels_path)
    inset = 95.0  # the AOI stops short of the products' edge, as a user's AOI inside a tile does
    aoi = box(ORIGIN[0] + inset, ORIGIN[1] - size * 10 + inset, ORIGIN[0] + size * 10 - inset, ORIGIN[1] - inset)
    aoi_4326 = gpd.GeoSeries([aoi], crs=EPSG).to_crs(4326).iloc[0]
    aoi_path = root / "aoi.geojson"
    aoi_path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"scale": scale}, "geometry": mapping(aoi_4326)}]}))  # fmt: skip
    config = root / "build.yaml"
    bands = ", ".join(BANDS_10 + BANDS_20)
    splits = _SMALL_SPLITS if scale == "small" else ""
    config.write_text(
        _CONFIG.format(scale=scale, path=config, collection=COLLECTION_ID, bands=bands, splits=splits)
    )
    return TileWorld(
        root, root / "catalog" / "catalog.json", aoi_path, parcels_path, config, size, dates, len(parcels)
    )
