"""The main job: selection -> lazy cube -> labels -> patches -> shards (Zarr v3 and LMDB + safetensors)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import numpy as np
import xarray as xr
from distributed import Client, as_completed
from odc.geo.geobox import GeoBox

from eoshard.catalog import search
from eoshard.flows.aoi import read_aoi
from eoshard.flows.config import BuildConfig
from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.labels import rasterize_classes
from eoshard.pipeline.patches import Patch, patch_grid
from eoshard.pipeline.shards.lmdb_store import LmdbWriter
from eoshard.pipeline.shards.samples import Sample
from eoshard.pipeline.shards.zarr_store import create_store, stack_samples, write_shard

FORMAT_VERSION = "0.1"
IMAGE_ARRAY = "s2_10m"
LABEL_ARRAY = "class"


@dataclass(frozen=True)
class BuildPlan:
    """What a build will write, all lazy: the cube, the labels and the patches in shard order."""

    config: BuildConfig
    items: list[dict[str, Any]]
    grid: GeoBox
    cube: xr.DataArray
    labels: xr.DataArray | None
    patches: list[Patch]

    @property
    def dates(self) -> list[str]:
        return [str(t)[:19] for t in self.cube.time.values]

    def shards(self) -> list[list[Patch]]:
        size = self.config.output.shard_size
        return [self.patches[i : i + size] for i in range(0, len(self.patches), size)]


@dataclass(frozen=True)
class BuildResult:
    path: Path
    n_samples: int
    n_dates: int
    bands: tuple[str, ...]
    manifest: dict[str, Any]


def plan_build(config: BuildConfig) -> BuildPlan:
    """Search, then set up the lazy cube, labels and patches; reads no pixels."""
    area, area_crs = read_aoi(config.aoi)
    area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
    items = search(
        config.catalog.source,
        area=area_4326,
        start=config.period.start,
        end=config.period.end,
        collection=config.catalog.collection,
        max_cloud=config.catalog.max_cloud,
    )
    grid = grid_for_area(area, area_crs, resolution=config.grid.resolution, crs=config.grid.crs)
    cube = open_cube(list(items), grid, config.bands, chunksize=config.grid.chunksize)
    labels = None
    if config.labels is not None:
        parcels = gpd.read_file(config.labels.path, layer=config.labels.layer)
        labels = rasterize_classes(
            parcels, grid, class_column=config.labels.class_column, chunksize=config.grid.chunksize
        )
    patches = patch_grid(grid, config.patches.size, config.patches.stride)
    return BuildPlan(config, [i.to_dict() for i in items], grid, cube, labels, patches)


def _window(array: xr.DataArray, patch: Patch, grid: GeoBox) -> Any:
    """The dask array of ``array`` under ``patch`` (pixel offsets on the full grid)."""
    ny, nx = patch.geobox.shape
    return array.data[..., patch.row : patch.row + ny, patch.col : patch.col + nx]


def _materialize_shard(
    out: str,
    shard_index: int,
    shard_size: int,
    keys: Sequence[str],
    transforms: Sequence[tuple[float, ...]],
    crs: str,
    bands: Sequence[str],
    dates: Sequence[str],
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    write_zarr: bool,
) -> list[tuple[str, bytes]]:
    """Runs on a worker: write one whole Zarr shard, return the samples' safetensors bytes for LMDB."""
    samples = [
        Sample(
            key=key,
            bands={b: img[:, i] for i, b in enumerate(bands)},
            labels={} if labels is None else {LABEL_ARRAY: labels[n]},
            dates=dates,
            crs=crs,
            transform=transform,
        )
        for n, (key, transform, img) in enumerate(zip(keys, transforms, images, strict=True))
    ]
    if write_zarr:
        arrays: list[dict[str, np.ndarray]] = [{IMAGE_ARRAY: img} for img in images]
        if labels is not None:
            for a, lab in zip(arrays, labels, strict=True):
                a[LABEL_ARRAY] = lab
        write_shard(Path(out) / "data.zarr", shard_index, shard_size, stack_samples(arrays))
    return [(s.key, s.to_safetensors()) for s in samples]


def run_build(
    plan: BuildPlan, client: Client, on_progress: Callable[[int, int], None] | None = None
) -> BuildResult:
    """Compute and write every shard on the cluster; LMDB is written here, its one writer."""
    config = plan.config
    out = config.output.path
    out.mkdir(parents=True, exist_ok=True)
    bands = tuple(config.bands)
    size = config.patches.size
    n_time = plan.cube.sizes["time"]
    write_zarr = "zarr" in config.output.formats
    if write_zarr:
        layouts: dict[str, tuple[tuple[int, ...], str]] = {
            IMAGE_ARRAY: ((n_time, len(bands), size, size), "uint16")
        }
        if plan.labels is not None:
            layouts[LABEL_ARRAY] = ((size, size), "int32")
        create_store(out / "data.zarr", len(plan.patches), layouts, shard_size=config.output.shard_size,
                     attrs={"bands": list(bands), "dates": plan.dates, "keys": [p.key for p in plan.patches]})  # fmt: skip
    tasks = []
    for k, shard in enumerate(plan.shards()):
        images = [_window(plan.cube, p, plan.grid) for p in shard]
        labels = None if plan.labels is None else [_window(plan.labels, p, plan.grid) for p in shard]
        tasks.append(
            dask.delayed(_materialize_shard, pure=True)(
                str(out),
                k,
                config.output.shard_size,
                [p.key for p in shard],
                [tuple(p.geobox.transform)[:6] for p in shard],
                str(plan.grid.crs),
                bands,
                plan.dates,
                images,
                labels,
                write_zarr,
            )
        )
    futures = client.compute(tasks)
    done = 0
    writer = LmdbWriter(out / "data.lmdb") if "lmdb" in config.output.formats else None
    try:
        for future in as_completed(futures):
            records = future.result()
            if writer is not None:
                writer.put_many(records)
            done += 1
            if on_progress is not None:
                on_progress(done, len(futures))
    finally:
        if writer is not None:
            writer.close()
    manifest = _manifest(plan)
    (out / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return BuildResult(out, len(plan.patches), n_time, bands, manifest)


def _manifest(plan: BuildPlan) -> dict[str, Any]:
    config = plan.config
    classes: dict[str, str] = {}
    if config.labels is not None and config.labels.class_name_column:
        parcels = gpd.read_file(config.labels.path, layer=config.labels.layer, ignore_geometry=True)
        pairs = parcels[[config.labels.class_column, config.labels.class_name_column]].drop_duplicates()
        classes = {str(int(c)): str(n) for c, n in sorted(pairs.itertuples(index=False, name=None))}
    return {
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "crs": str(plan.grid.crs),
        "transform": list(plan.grid.transform)[:6],
        "shape": list(plan.grid.shape),
        "patch_size": config.patches.size,
        "bands": list(config.bands),
        "dtype": "uint16",
        "nodata": 0,
        "resolution": abs(plan.grid.resolution.x),
        "dates": plan.dates,
        "products": [i["id"] for i in plan.items],
        "keys": [p.key for p in plan.patches],
        "n_samples": len(plan.patches),
        "formats": {
            "zarr": {
                "path": "data.zarr",
                "image": IMAGE_ARRAY,
                "label": LABEL_ARRAY,
                "shard_size": config.output.shard_size,
            }
            if "zarr" in config.output.formats
            else None,
            "lmdb": {"path": "data.lmdb"} if "lmdb" in config.output.formats else None,
        },
        "labels": None if config.labels is None else {"layer": LABEL_ARRAY, "background": 0, "classes": classes},
    }
