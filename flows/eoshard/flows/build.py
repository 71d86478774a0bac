"""The main job: selection -> lazy cubes -> labels -> patches -> shards (Zarr v3 and LMDB + safetensors)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
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
from eoshard.pipeline.labels import rasterize_labels
from eoshard.pipeline.patches import Patch, patch_grid
from eoshard.pipeline.shards.lmdb_store import LmdbWriter
from eoshard.pipeline.shards.samples import Sample
from eoshard.pipeline.shards.zarr_store import create_store, stack_samples, write_shard

FORMAT_VERSION = "0.2"


@dataclass(frozen=True)
class BuildPlan:
    """What a build will write, all lazy: the cubes per resolution group, the labels and the patches."""

    config: BuildConfig
    items: list[dict[str, Any]]
    grid: GeoBox
    cubes: dict[str, xr.DataArray]
    labels: xr.Dataset | None
    patches: list[Patch]

    @property
    def dates(self) -> list[str]:
        first = next(iter(self.cubes.values()))
        return [str(t)[:19] for t in first.time.values]

    @property
    def factors(self) -> dict[str, int]:
        """Zoom factor of each group relative to the base grid."""
        base = abs(self.grid.resolution.x)
        return {name: round(abs(float(c.x[1] - c.x[0])) / base) for name, c in self.cubes.items()}

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
    """Search, then set up the lazy cubes, labels and patches; reads no pixels."""
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
    cubes = open_cube(list(items), grid, config.bands, chunksize=config.grid.chunksize)
    labels = None
    if config.labels is not None:
        parcels = gpd.read_file(config.labels.path, layer=config.labels.layer)
        labels = rasterize_labels(
            parcels,
            grid,
            class_column=config.labels.class_column,
            id_column=config.labels.id_column,
            chunksize=config.grid.chunksize,
        )
    base = abs(grid.resolution.x)
    align = max(round(abs(float(c.x[1] - c.x[0])) / base) for c in cubes.values())
    patches = patch_grid(grid, config.patches.size, config.patches.stride, align=align)
    return BuildPlan(config, [i.to_dict() for i in items], grid, cubes, labels, patches)


def _materialize_shard(
    out: str,
    shard_index: int,
    shard_size: int,
    patches: Sequence[tuple[str, tuple[float, ...]]],
    crs: str,
    group_bands: Mapping[str, Sequence[str]],
    dates: Sequence[str],
    images: Mapping[str, Sequence[np.ndarray]],
    labels: Mapping[str, Sequence[np.ndarray]],
    write_zarr: bool,
) -> list[tuple[str, bytes]]:
    """Runs on a worker: write one whole Zarr shard, return the samples' safetensors bytes for LMDB."""
    samples = [
        Sample(
            key=key,
            bands={
                band: images[group][n][:, i]
                for group, bands in group_bands.items()
                for i, band in enumerate(bands)
            },
            labels={layer: values[n] for layer, values in labels.items()},
            dates=dates,
            crs=crs,
            transform=transform,
        )
        for n, (key, transform) in enumerate(patches)
    ]
    if write_zarr:
        per_sample = [
            {**{g: images[g][n] for g in images}, **{layer: labels[layer][n] for layer in labels}}
            for n in range(len(patches))
        ]
        write_shard(Path(out) / "data.zarr", shard_index, shard_size, stack_samples(per_sample))
    return [(s.key, s.to_safetensors()) for s in samples]


def _layouts(plan: BuildPlan) -> dict[str, tuple[tuple[int, ...], str]]:
    size = plan.config.patches.size
    n_time = len(plan.dates)
    layouts: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, cube in plan.cubes.items():
        px = size // plan.factors[name]
        layouts[name] = ((n_time, cube.sizes["band"], px, px), str(cube.dtype))
    if plan.labels is not None:
        for layer, values in plan.labels.data_vars.items():
            layouts[str(layer)] = ((size, size), str(values.dtype))
    return layouts


def run_build(
    plan: BuildPlan, client: Client, on_progress: Callable[[int, int], None] | None = None
) -> BuildResult:
    """Compute and write every shard on the cluster; LMDB is written here, its one writer."""
    config = plan.config
    out = config.output.path
    out.mkdir(parents=True, exist_ok=True)
    write_zarr = "zarr" in config.output.formats
    group_bands = {name: [str(b) for b in cube.band.values] for name, cube in plan.cubes.items()}
    if write_zarr:
        create_store(
            out / "data.zarr",
            len(plan.patches),
            _layouts(plan),
            shard_size=config.output.shard_size,
            attrs={"groups": group_bands, "dates": plan.dates, "keys": [p.key for p in plan.patches]},
        )
    tasks = []
    for k, shard in enumerate(plan.shards()):
        images = {
            name: [cube.data[..., p.window(plan.factors[name])[0], p.window(plan.factors[name])[1]] for p in shard]
            for name, cube in plan.cubes.items()
        }
        labels = (
            {}
            if plan.labels is None
            else {
                str(layer): [values.data[p.window()] for p in shard]
                for layer, values in plan.labels.data_vars.items()
            }
        )
        patches = [(p.key, tuple(p.geobox.transform)[:6]) for p in shard]
        tasks.append(
            dask.delayed(_materialize_shard, pure=True)(
                str(out),
                k,
                config.output.shard_size,
                patches,
                str(plan.grid.crs),
                group_bands,
                plan.dates,
                images,
                labels,
                write_zarr,
            )
        )
    futures = client.compute(tasks)
    writer = LmdbWriter(out / "data.lmdb") if "lmdb" in config.output.formats else None
    try:
        for done, future in enumerate(as_completed(futures), start=1):
            records = future.result()
            if writer is not None:
                writer.put_many(records)
            if on_progress is not None:
                on_progress(done, len(futures))
    finally:
        if writer is not None:
            writer.close()
    manifest = _manifest(plan, group_bands)
    (out / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return BuildResult(out, len(plan.patches), len(plan.dates), tuple(config.bands), manifest)


def _class_names(config: BuildConfig) -> dict[str, str]:
    if config.labels is None or not config.labels.class_name_column:
        return {}
    parcels = gpd.read_file(config.labels.path, layer=config.labels.layer, ignore_geometry=True)
    pairs = parcels[[config.labels.class_column, config.labels.class_name_column]].drop_duplicates()
    return {str(int(c)): str(n) for c, n in sorted(pairs.itertuples(index=False, name=None))}


def _manifest(plan: BuildPlan, group_bands: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    config = plan.config
    size = config.patches.size
    groups = {
        name: {
            "bands": list(group_bands[name]),
            "resolution": abs(plan.grid.resolution.x) * plan.factors[name],
            "shape": [
                len(plan.dates),
                len(group_bands[name]),
                size // plan.factors[name],
                size // plan.factors[name],
            ],
            "dtype": str(cube.dtype),
            "nodata": 0,
        }
        for name, cube in plan.cubes.items()
    }
    layers = {} if plan.labels is None else {str(k): str(v.dtype) for k, v in plan.labels.data_vars.items()}
    return {
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "crs": str(plan.grid.crs),
        "transform": list(plan.grid.transform)[:6],
        "shape": list(plan.grid.shape),
        "patch_size": size,
        "bands": list(config.bands),
        "groups": groups,
        "dtype": "uint16",
        "nodata": 0,
        "resolution": abs(plan.grid.resolution.x),
        "dates": plan.dates,
        "products": [i["id"] for i in plan.items],
        "keys": [p.key for p in plan.patches],
        "n_samples": len(plan.patches),
        "formats": {
            "zarr": {"path": "data.zarr", "shard_size": config.output.shard_size}
            if "zarr" in config.output.formats
            else None,
            "lmdb": {"path": "data.lmdb"} if "lmdb" in config.output.formats else None,
        },
        "labels": None
        if plan.labels is None
        else {"layers": layers, "background": 0, "classes": _class_names(config)},
    }
