"""The main job: selection -> lazy cubes -> labels -> patches -> shards (Zarr v3 and LMDB + safetensors)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dask
import geopandas as gpd
import pystac
import xarray as xr
from distributed import Client
from odc.geo.geobox import GeoBox
from pyogrio.errors import DataSourceError
from rasterio.enums import Resampling

from eoshard.catalog import search
from eoshard.flows.aoi import read_aoi
from eoshard.flows.config import BuildConfig, ConfigError
from eoshard.flows.products import find_products
from eoshard.flows.redaction import public_config
from eoshard.flows.refresh.lock import LockInfo, build_lock
from eoshard.flows.shard_runner import run_shards
from eoshard.pipeline.cube import onto_grid, open_cube, stackstac_ready
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.indices import compute_indices, formula
from eoshard.pipeline.labels import prepare_parcels, rasterize_labels
from eoshard.pipeline.masks import open_valid_mask
from eoshard.pipeline.paired import nested_grid, open_paired
from eoshard.pipeline.patches import Patch, parcel_centred, patch_grid, select_labelled
from eoshard.pipeline.sensors import S1, band_sensor
from eoshard.pipeline.shards.lmdb_store import part_name
from eoshard.pipeline.shards.samples import FORMAT_VERSION, RESERVED_TENSORS
from eoshard.pipeline.shards.task import ShardSpec, materialize_shard

INDEX_GROUP = "indices"  # the group of cube.indices, at the base resolution


@dataclass(frozen=True)
class BuildPlan:
    """What a build will write, all lazy: the cubes per resolution group, the labels and the patches."""

    config: BuildConfig
    items: list[dict[str, Any]]
    grid: GeoBox
    cubes: dict[str, xr.DataArray]
    labels: xr.Dataset | None
    patches: list[Patch]
    hr: xr.DataArray | None = None  # the paired finer source, (band, y, x) on the nested grid
    hr_items: list[dict[str, Any]] = field(default_factory=list)
    valid: xr.DataArray | None = None  # the SCL valid mask, (time, y, x) on the base grid, with mask: scl

    @property
    def dates(self) -> list[str]:
        first = next(iter(self.cubes.values()))
        return [str(t)[:19] for t in first.time.values]

    @property
    def factors(self) -> dict[str, int]:
        """Zoom factor of each group relative to the base grid."""
        base = abs(self.grid.resolution.x)
        return {name: round(abs(float(c.x[1] - c.x[0])) / base) for name, c in self.cubes.items()}

    @property
    def groups(self) -> dict[str, list[str]]:
        return {name: [str(b) for b in cube.band.values] for name, cube in self.cubes.items()}

    @property
    def hr_factor(self) -> int:
        """How many HR pixels one base pixel holds along each axis."""
        assert self.config.hr is not None
        return round(self.config.grid.resolution / self.config.hr.resolution)

    def label_factor(self, layer: str) -> int:
        assert self.labels is not None
        return self.grid.shape[0] // self.labels[layer].sizes["y"]

    def shards(self) -> list[list[Patch]]:
        size = self.config.output.shard_size
        return [self.patches[i : i + size] for i in range(0, len(self.patches), size)]

    def lmdb_part(self, shard: int) -> str | None:
        if "lmdb" not in self.config.output.formats:
            return None
        return part_name(shard % self.config.output.lmdb_parts)

    def layouts(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Per-slot shape and dtype of every Zarr array (see docs/format.md)."""
        size, n_time = self.config.patches.size, len(self.dates)
        layouts: dict[str, tuple[tuple[int, ...], str]] = {}
        for name, cube in self.cubes.items():
            px = size // self.factors[name]
            layouts[name] = ((n_time, cube.sizes["band"], px, px), str(cube.dtype))
        if self.labels is not None:
            for layer, values in self.labels.data_vars.items():
                px = size // self.label_factor(str(layer))
                layouts[str(layer)] = ((px, px), str(values.dtype))
        if self.hr is not None:
            px = size * self.hr_factor
            layouts["hr"] = ((self.hr.sizes["band"], px, px), str(self.hr.dtype))
        layouts["valid_mask"] = ((n_time, size, size), "bool")
        layouts["valid_fraction"] = ((n_time,), "float32")
        layouts["time_mask"] = ((n_time,), "bool")
        layouts["sample_mask"] = ((), "bool")
        return layouts

    def nan_fill(self) -> tuple[str, ...]:
        """The float arrays (reflectance groups, indices): NaN is their nodata and Zarr fill value."""
        arrays = {**self.cubes, **({"hr": self.hr} if self.hr is not None else {})}
        return tuple(name for name, values in arrays.items() if values.dtype.kind == "f")

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the output: a rerun with the same fingerprint resumes, another one is refused."""
        keys = "\n".join(p.key for p in self.patches).encode()
        hr = {"hr_products": sorted(i["id"] for i in self.hr_items)} if self.hr is not None else {}
        return {
            **hr,
            "format_version": FORMAT_VERSION,
            "config": public_config(self.config, exclude={"output": {"path"}, "refresh": True}),
            "dates": self.dates,
            "products": sorted(i["id"] for i in self.items),
            "keys_sha256": hashlib.sha256(keys).hexdigest(),
            "layouts": {k: [list(s), d] for k, (s, d) in self.layouts().items()},
        }


@dataclass(frozen=True)
class BuildResult:
    path: Path
    n_samples: int
    n_dates: int
    bands: tuple[str, ...]
    manifest: dict[str, Any]


def search_products(config: BuildConfig) -> pystac.ItemCollection:
    """The products of the config's catalog, AOI, period and cloud limit (sorted by datetime, id)."""
    area, area_crs = read_aoi(config.aoi)
    area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
    return find_products(config, area_4326)


def plan_build(config: BuildConfig, items: Sequence[pystac.Item] | None = None) -> BuildPlan:
    """Search (unless ``items`` are given), then set up the lazy cubes, labels and patches; reads no pixels."""
    sar = [b for b in config.bands if band_sensor(b) == S1]
    if sar:
        raise ConfigError(
            f"bands {sar} are Sentinel-1 bands (float32 backscatter), which the build does not store yet: "
            "drop them from bands, and open Sentinel-1 cubes in Python with eoshard.pipeline.cube.open_cube "
            "(Sentinel-1 products and bands give an s1_10m group)"
        )
    area, area_crs = read_aoi(config.aoi)
    products = list(search_products(config) if items is None else items)
    grid = grid_for_area(area, area_crs, resolution=config.grid.resolution, crs=config.grid.crs)
    cubes = open_cube(
        products,
        grid,
        config.bands,
        chunksize=config.grid.chunksize,
        single_resolution=config.grid.single_resolution,
        engine=config.cube.engine,
        resampling=Resampling[config.cube.resampling],
        reflectance=config.cube.reflectance,
    )
    if config.cube.indices:
        cubes[INDEX_GROUP] = index_cube(cubes, grid, config.cube.indices)
    labels = parcels = None
    if config.labels is not None:
        parcels = read_labels(config)
        labels = rasterize_labels(
            parcels,
            grid,
            class_column=config.labels.class_column,
            id_column=config.labels.id_column,
            chunksize=config.grid.chunksize,
        )
    _check_index_names(config, [] if labels is None else [str(k) for k in labels.data_vars])
    base = abs(grid.resolution.x)
    align = max(round(abs(float(c.x[1] - c.x[0])) / base) for c in cubes.values())
    patches = _select_patches(config, grid, align, parcels)
    area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
    hr, hr_items = _open_hr(config, grid, area_4326)
    valid = None
    if config.timeseries.mask == "scl":
        valid = open_valid_mask(products, grid, invalid=config.timeseries.scl_invalid, engine=config.cube.engine,
                                chunksize=config.grid.chunksize)  # fmt: skip
    ready = [stackstac_ready(i) for i in products]
    return BuildPlan(config, ready, grid, cubes, labels, patches, hr, hr_items, valid)


def _check_index_names(config: BuildConfig, layers: Sequence[str]) -> None:
    """Index names become band and LMDB tensor names: no clash with bands, label layers or per-sample tensors."""
    taken = [*config.bands, *layers, *RESERVED_TENSORS]
    clash = sorted(set(config.cube.indices) & set(taken))
    if clash:
        raise ConfigError(
            f"cube.indices name(s) {clash} are already band, label or tensor names of the dataset "
            f"(taken: {', '.join(taken)}): rename the index(es)"
        )


def index_cube(cubes: dict[str, xr.DataArray], grid: GeoBox, indices: dict[str, str]) -> xr.DataArray:
    """The indices as one float32 ``(time, band, y, x)`` group on the base grid, bands named by the config keys.

    Bands are sorted by name: the build's fingerprint (sorted JSON) does not see the order of the keys.
    An index read from coarser bands has its pixels repeated onto the base grid (exact, see ``onto_grid``).
    """
    indices = dict(sorted(indices.items()))
    layers = [onto_grid(layer, grid) for layer in compute_indices(cubes, grid, indices).values()]
    stacked = xr.Variable.concat([layer.variable for layer in layers], dim="band")
    coords = {k: v for k, v in layers[0].coords.items()}
    cube = xr.DataArray(stacked, coords={**coords, "band": list(indices)}, name=INDEX_GROUP)
    cube.attrs = {
        "crs": str(grid.crs),
        "transform": tuple(grid.transform)[:6],
        "nodata": float("nan"),
        "expressions": {name: formula(expr) for name, expr in indices.items()},
    }
    return cube.transpose("time", "band", "y", "x")


def _open_hr(
    config: BuildConfig, grid: GeoBox, area_4326: Any
) -> tuple[xr.DataArray | None, list[dict[str, Any]]]:
    """The paired HR mosaic (every HR product up to the period's end, the newest on top) on the nested grid."""
    if config.hr is None:
        return None, []
    items = search(
        config.hr.source,
        area=area_4326,
        start=date(1900, 1, 1),
        end=config.period.end,
        collection=config.hr.collection,
    )
    factor = round(config.grid.resolution / config.hr.resolution)
    mosaic = open_paired(list(items), nested_grid(grid, factor), config.hr.bands, chunksize=config.grid.chunksize)
    return mosaic, [stackstac_ready(i) for i in items]


def nested_window(patch: Patch, factor: int) -> tuple[slice, slice]:
    """The patch's rows and columns on the base grid zoomed in by ``factor``."""
    ny, nx = patch.geobox.shape
    return (
        slice(patch.row * factor, (patch.row + ny) * factor),
        slice(patch.col * factor, (patch.col + nx) * factor),
    )


def _select_patches(
    config: BuildConfig, grid: GeoBox, align: int, parcels: gpd.GeoDataFrame | None
) -> list[Patch]:
    mode = config.patches.mode
    if mode != "grid" and (parcels is None or config.labels is None):
        raise ValueError(f"patches.mode {mode!r} needs labels: add a labels section or use mode 'grid'")
    if mode == "parcels":
        assert parcels is not None and config.labels is not None
        prepared = prepare_parcels(parcels, grid, config.labels.class_column)
        return parcel_centred(grid, prepared, config.patches.size, align=align)
    patches = patch_grid(grid, config.patches.size, config.patches.stride, align=align)
    if mode == "labelled":
        assert parcels is not None and config.labels is not None
        prepared = prepare_parcels(parcels, grid, config.labels.class_column)
        patches = select_labelled(patches, prepared, config.patches.min_labelled_fraction)
    return patches


def shard_task(plan: BuildPlan, index: int, shard: list[Patch]) -> Any:
    """The lazy task that makes and writes shard ``index`` (its arguments are windows of the lazy cubes)."""
    images = {
        name: [cube.data[..., p.window(plan.factors[name])[0], p.window(plan.factors[name])[1]] for p in shard]
        for name, cube in plan.cubes.items()
    }
    paired = {}
    if plan.hr is not None:
        paired = {"hr": [plan.hr.data[(slice(None), *nested_window(p, plan.hr_factor))] for p in shard]}
    masks = None
    if plan.valid is not None:
        masks = [plan.valid.data[(slice(None), *p.window(1))] for p in shard]
    spec = shard_spec(plan, index, shard)
    return dask.delayed(materialize_shard, pure=True)(
        spec, images, label_windows(plan, shard), paired, masks=masks
    )


def label_windows(plan: BuildPlan, shard: list[Patch]) -> dict[str, list[Any]]:
    """The lazy label windows of a shard's patches, by layer."""
    if plan.labels is None:
        return {}
    return {
        str(layer): [values.data[p.window(plan.label_factor(str(layer)))] for p in shard]
        for layer, values in plan.labels.data_vars.items()
    }


def shard_spec(plan: BuildPlan, index: int, shard: list[Patch]) -> ShardSpec:
    """What the task of shard ``index`` needs besides the pixels."""
    config = plan.config
    return ShardSpec(
        out=str(config.output.path),
        index=index,
        shard_size=config.output.shard_size,
        keys=tuple(p.key for p in shard),
        origins=tuple((p.row, p.col) for p in shard),
        transforms=tuple(tuple(p.geobox.transform)[:6] for p in shard),
        crs=str(plan.grid.crs),
        groups=plan.groups,
        factors=plan.factors,
        dates=tuple(plan.dates),
        layouts=plan.layouts(),
        lmdb_part=plan.lmdb_part(index),
        write_zarr="zarr" in config.output.formats,
        mask=config.timeseries.mask,
        min_valid_fraction=config.timeseries.min_valid_fraction,
        min_dates=config.timeseries.min_dates,
        block_size=config.splits.block_size,
        fractions=config.splits.fractions,
        seed=config.splits.seed,
        paired={"hr": tuple(config.hr.bands)} if config.hr is not None else {},
        nan_fill=plan.nan_fill(),
    )


def run_build(
    plan: BuildPlan, client: Client, on_progress: Callable[[int, int], None] | None = None
) -> BuildResult:
    """Compute and write every shard not yet committed, then the index, manifest and STAC Collection.

    Under the output's build lock: a second build of the same output is refused with the holder's name (it would
    delete the temporary files this one writes); the stale lock of a killed build is taken over, as its shards are.
    """
    with build_lock(plan.config.output.path, on_stale=_took_over):
        manifest = run_shards(plan, client, shard_task, on_progress)
    return BuildResult(
        plan.config.output.path, manifest["n_samples"], len(plan.dates), tuple(plan.config.bands), manifest
    )


def _took_over(holder: LockInfo) -> None:
    logging.getLogger(__name__).warning(
        "the build %s no longer runs: its lock is taken over and its committed shards are kept", holder.describe()
    )


def read_labels(config: BuildConfig) -> gpd.GeoDataFrame:
    """The label features of ``config.labels``; a file that cannot be read, or holds none, is a ``ConfigError``."""
    assert config.labels is not None
    path, layer = config.labels.path, config.labels.layer
    try:
        parcels = gpd.read_file(path, layer=layer)
    except (DataSourceError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"labels: {path} cannot be read as vector data ({first}); expected a GeoPackage, GeoJSON, Shapefile or "
            "GeoParquet file of label polygons"
        ) from err
    if parcels.empty:
        where = f" (layer {layer})" if layer else ""
        raise ConfigError(
            f"labels: {path}{where} holds no features: expected polygons with the column "
            f"{config.labels.class_column!r}; give the file that holds them, or remove `labels:` to build without"
        )
    return parcels
