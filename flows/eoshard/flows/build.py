"""The main job: selection -> lazy cubes -> labels -> patches -> shards (Zarr v3 and LMDB + safetensors)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import geopandas as gpd
import pystac
import xarray as xr
from distributed import Client
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from eoshard.catalog import EmptySelectionError, search
from eoshard.catalog.credentials import redact_url
from eoshard.catalog.stac_api import ApiOptions
from eoshard.flows.aoi import read_aoi
from eoshard.flows.config import BuildConfig, ConfigError
from eoshard.flows.label_files import check_labels, class_names, labels_digest, read_labels
from eoshard.flows.masking import resolve_bands, resolve_mask
from eoshard.flows.products import find_products, select_products
from eoshard.flows.redaction import public_config
from eoshard.flows.refresh.lock import LockInfo, build_lock
from eoshard.flows.shard_runner import DirectShard, GraphShard, run_shards
from eoshard.flows.signing import modifier_of
from eoshard.pipeline.assets import check_assets
from eoshard.pipeline.cube import band_groups, onto_grid, open_cube, stackstac_ready
from eoshard.pipeline.direct import GroupSource, forget_remote_files, group_source, paired_source, store_name
from eoshard.pipeline.errors import BUILD_AGAIN, LEAVE_OUT, shown_href
from eoshard.pipeline.grid import grid_for_area, grid_of, group_factor, group_grid, nested_grid
from eoshard.pipeline.indices import compute_indices, formula
from eoshard.pipeline.labels import label_source, prepare_parcels, rasterize_labels
from eoshard.pipeline.landsat import QA_BAND, band_scalings, qa_bits
from eoshard.pipeline.masks import open_qa_valid_mask, open_valid_mask, qa_nodata
from eoshard.pipeline.paired import open_paired
from eoshard.pipeline.patches import STRIPE_PX, Patch, parcel_centred, patch_grid, select_labelled, stripe_order
from eoshard.pipeline.sensors import DN_DTYPE, LS, NODATA, S1, S2, group_sensor, is_main, item_sensor
from eoshard.pipeline.settings import check_settings
from eoshard.pipeline.shards.derived import Derived, GroupUnits
from eoshard.pipeline.shards.lmdb_store import part_name
from eoshard.pipeline.shards.reads import PatchOrder, ShardSources
from eoshard.pipeline.shards.samples import RESERVED_TENSORS, format_version, sensor_layouts
from eoshard.pipeline.shards.task import ShardSpec, materialize_shard

# Config fields that do not change what a build writes: where it goes, refresh options, and how pixels are read
# (a build may resume, or be refreshed, with the other reader).
FINGERPRINT_EXCLUDE: dict[str, Any] = {"output": {"path"}, "refresh": True, "cube": {"reads"}}
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
    valid: xr.DataArray | None = None  # the SCL or QA_PIXEL valid mask, (time, y, x) on the base grid
    sources: ShardSources | None = None  # what direct shard tasks read (None: the tasks compute the cubes' graph)
    # code -> name, and the SHA-256 (``label_files.labels_digest``, in the fingerprint), of the labels' parcels
    class_names: Mapping[str, str] = field(default_factory=dict)
    labels_sha256: str | None = None
    # each checked file's size in bytes when planned, by product and band (in the fingerprint): a file replaced
    # since is refused by the reads, and a rerun after it by the fingerprint
    file_sizes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def dates(self) -> list[str]:
        """The Sentinel-2 (or Landsat) dates: the dataset's ``dates`` (the time axis of format 1.0)."""
        main = [dates for sensor, dates in self.sensor_dates.items() if is_main(sensor)]
        return main[0] if main else next(iter(self.sensor_dates.values()))

    @cached_property
    def sensor_dates(self) -> dict[str, list[str]]:
        """Each sensor's own dates (the time steps of its groups), Sentinel-2 first."""
        out: dict[str, list[str]] = {}
        for name, cube in self.cubes.items():
            out.setdefault(group_sensor(name), [str(t)[:19] for t in cube.time.values])
        return out

    @property
    def other_dates(self) -> dict[str, list[str]]:
        """The dates of the sensors besides the optical one (``{"s1": [...]}``; empty: a format 1.0 dataset)."""
        return {sensor: dates for sensor, dates in self.sensor_dates.items() if not is_main(sensor)}

    @cached_property
    def factors(self) -> dict[str, int]:
        """Zoom factor of each group relative to the base grid (computed once per plan)."""
        return group_factors(self.grid, self.cubes)

    @cached_property
    def grids(self) -> dict[str, GeoBox]:
        """The grid of each array the shard tasks cut: the groups, ``hr``, ``valid``, ``labels`` (once per plan)."""
        arrays = {"hr": self.hr, "valid": self.valid, "labels": self.labels, **self.cubes}
        return {name: grid_of(values) for name, values in arrays.items() if values is not None}

    def window(self, name: str, patch: Patch) -> tuple[slice, slice]:
        """The patch's rows and columns on the grid of array ``name`` (coarser or finer, see ``grids``)."""
        return patch.window_in(self.grids[name])

    @property
    def groups(self) -> dict[str, list[str]]:
        return {name: [str(b) for b in cube.band.values] for name, cube in self.cubes.items()}

    @property
    def hr_factor(self) -> int:
        """How many HR pixels one base pixel holds along each axis."""
        assert self.config.hr is not None
        return round(self.config.grid.resolution / self.config.hr.resolution)

    def label_factor(self, layer: str) -> int:
        """How many base pixels one label pixel spans along each axis (1 on the base grid or a finer one)."""
        assert self.labels is not None
        return max(1, self.grid.shape[0] // self.labels[layer].sizes["y"])

    def label_zoom(self, layer: str) -> int:
        """How many label pixels one base pixel holds along each axis (``labels.resolution``; 1 on the base grid)."""
        assert self.labels is not None
        return max(1, self.labels[layer].sizes["y"] // self.grid.shape[0])

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
            layouts[name] = ((cube.sizes["time"], cube.sizes["band"], px, px), str(cube.dtype))
        if self.labels is not None:
            for layer, values in self.labels.data_vars.items():
                px = size * self.label_zoom(str(layer)) // self.label_factor(str(layer))
                layouts[str(layer)] = ((px, px), str(values.dtype))
        if self.hr is not None:
            px = size * self.hr_factor
            layouts["hr"] = ((self.hr.sizes["band"], px, px), str(self.hr.dtype))
        layouts["valid_mask"] = ((n_time, size, size), "bool")
        layouts["valid_fraction"] = ((n_time,), "float32")
        layouts["time_mask"] = ((n_time,), "bool")
        for sensor, dates in self.other_dates.items():
            layouts.update(sensor_layouts(sensor, len(dates), size))
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
        others = {"sensor_dates": self.other_dates} if self.other_dates else {}
        labels = {"labels_sha256": self.labels_sha256} if self.labels_sha256 is not None else {}
        sizes = {"file_sizes": {k: dict(v) for k, v in self.file_sizes.items()}} if self.file_sizes else {}
        return {
            **hr,
            **others,
            **labels,
            **sizes,
            "format_version": format_version(self.other_dates),
            "config": public_config(self.config, exclude=FINGERPRINT_EXCLUDE),
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


def selected_products(config: BuildConfig) -> pystac.ItemCollection:
    """The products the build uses: the same choice as ``eoshard select`` on this config (or its saved selection)."""
    area, area_crs = read_aoi(config.aoi)
    return select_products(config, gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0])


def plan_build(
    config: BuildConfig,
    items: Sequence[pystac.Item] | None = None,
    checked: Collection[str] | None = None,
    then: str = BUILD_AGAIN,
    leave_out: str | None = LEAVE_OUT,
) -> BuildPlan:
    """Search (unless ``items`` are given), then set up the lazy cubes, labels and patches; reads no pixels but the
    files' headers. ``then``: what an error about a file that could not be read says to do once it is dealt with;
    ``leave_out``: how to leave its product out (None: no such advice)."""
    check_settings()  # the shard tasks' tuning variables, as this process read them (its workers' are theirs)
    forget_remote_files()  # a notebook's second build reads the files as they are now, not as the first found them
    area, area_crs = read_aoi(config.aoi)
    products = list(selected_products(config) if items is None else items)
    config = resolve_bands(config, products)  # Landsat products: their own band names (B04/red/SR_B4 -> red)
    config = resolve_mask(config, products)  # timeseries.mask: auto -> scl, qa_pixel or nodata, as they allow
    if config.s1 is not None and not any(item_sensor(stackstac_ready(i)) == S1 for i in products):
        products += list(s1_products(config, gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]))
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
    names: dict[str, str] = {}
    digest = None
    if config.labels is not None:
        # prepared once (repaired with one warning): the labels, the patch selection and the shard sources share it
        parcels = prepare_parcels(read_labels(config), grid, config.labels.class_column)
        check_labels(config, parcels, grid)
        # from the rows the labels are made of: a class only a row without a geometry has would shift the codes
        names = class_names(
            parcels, config.labels.class_column, config.labels.class_name_column, config.labels.class_codes
        )
        digest = labels_digest(config, parcels)
        labels = rasterize_labels(
            parcels,
            label_grid(config, grid),
            class_column=config.labels.class_column,
            id_column=config.labels.id_column,
            chunksize=config.grid.chunksize,
            class_codes=config.labels.class_codes,
        )
    _check_index_names(config, [] if labels is None else [str(k) for k in labels.data_vars])
    align = max(group_factors(grid, cubes).values())
    order = _patch_order(config, grid, products)
    patches = stripe_order(
        _select_patches(config, grid, align, parcels), grid.shape[1], width=order.width or grid.shape[1],
        offset=order.offset,
    )  # fmt: skip
    area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
    hr, hr_items = _open_hr(config, grid, area_4326)
    valid = None
    if config.timeseries.mask == "scl":
        valid = open_valid_mask([i for i in products if item_sensor(stackstac_ready(i)) == S2], grid, invalid=config.timeseries.scl_invalid, engine=config.cube.engine,
                                chunksize=config.grid.chunksize)  # fmt: skip
    elif config.timeseries.mask == "qa_pixel":
        valid = open_qa_valid_mask(products, grid, qa_bits(config.timeseries.qa_pixel_invalid),
                                   engine=config.cube.engine, chunksize=config.grid.chunksize)  # fmt: skip
    ready = [stackstac_ready(i) for i in products]
    # each file's CRS/transform/shape is its item's (headers only), the mask's too: a misplaced mask keeps the wrong
    # dates; ``checked``: only these products' files
    checks = [d for d in ready if checked is None or d["id"] in checked]
    mask_band = {"scl": ["SCL"], "qa_pixel": [QA_BAND]}.get(config.timeseries.mask, [])
    bands = [*config.bands, *(b for b in mask_band if b not in config.bands)]
    sizes = check_assets(checks, bands, then=then, leave_out=leave_out)
    plan = BuildPlan(
        config, ready, grid, cubes, labels, patches, hr, hr_items, valid, class_names=names, labels_sha256=digest,
        file_sizes=sizes,
    )  # fmt: skip
    if not direct_reads(config):
        return plan
    return replace(plan, sources=shard_sources(plan, parcels, order))


def _patch_order(config: BuildConfig, grid: GeoBox, items: Sequence[pystac.Item]) -> PatchOrder:
    """Stripes of ``STRIPE_PX`` with edges on the products' block edges (one stripe when the grid is narrower)."""
    step = None if config.patches.mode == "parcels" else config.patches.stride or config.patches.size
    if grid.shape[1] <= STRIPE_PX:
        return PatchOrder(0, 0, step)
    return PatchOrder(STRIPE_PX, block_phase(grid, items), step)


def s1_products(config: BuildConfig, area_4326: Any) -> pystac.ItemCollection:
    """The Sentinel-1 products of the config's ``s1`` section in its AOI and period."""
    assert config.s1 is not None
    try:
        return search(config.s1.source, area=area_4326, start=config.period.start, end=config.period.end,
                      collection=config.s1.collection, kind=config.s1.kind,
                      options=ApiOptions(modifier=modifier_of(config.s1.modifier)))  # fmt: skip
    except EmptySelectionError as err:
        raise EmptySelectionError(
            f"s1: no Sentinel-1 product of {redact_url(config.s1.source)} (collection {config.s1.collection}) in the "
            f"AOI and period {config.period.start}..{config.period.end} ({err}): check the s1 section, or drop it "
            "and the Sentinel-1 bands"
        ) from err


def sensor_items(items: Sequence[dict[str, Any]], sensor: str) -> list[dict[str, Any]]:
    """The products of one sensor (a group reads its own sensor's products only)."""
    return [i for i in items if item_sensor(i) == sensor]


def direct_reads(config: BuildConfig) -> bool:
    """Whether the shard tasks read their pixels directly (else from the lazy cubes' graph)."""
    cube = config.cube
    return cube.reads == "direct" and cube.engine == "stackstac"


def shard_sources(plan: BuildPlan, parcels: gpd.GeoDataFrame | None, order: PatchOrder) -> ShardSources:
    """The read recipes of the plan's cubes, SCL mask and HR mosaic, its parcels and its patch order, for direct
    shard tasks."""
    config, grid = plan.config, plan.grid
    chunk = config.grid.chunksize
    derived = derived_values(plan)
    cubes = {name: cube for name, cube in plan.cubes.items() if name != INDEX_GROUP}
    groups = cube_sources(
        cubes, plan.items, grid, plan.factors, chunksize=chunk, resampling=config.cube.resampling,
        units=derived.units if derived is not None else None,
    )  # fmt: skip
    labels = None
    if parcels is not None and config.labels is not None:
        labels = label_source(
            parcels, label_grid(config, grid), class_column=config.labels.class_column,
            id_column=config.labels.id_column, class_codes=config.labels.class_codes,
        )  # fmt: skip
    scl, scl_factor = None, 1
    if plan.valid is not None and config.timeseries.mask == "scl":
        ((_, (res, _)),) = band_groups(sensor_items(plan.items, S2), ["SCL"], grid).items()
        scl_factor = round(res / abs(grid.resolution.x))
        scl = group_source(
            sensor_items(plan.items, S2), grid if scl_factor == 1 else grid.zoom_out(scl_factor), ["SCL"],
            chunksize=max(64, int(chunk / scl_factor)), dtype="uint8",
        )  # fmt: skip
    qa, qa_factor = None, 1
    if plan.valid is not None and config.timeseries.mask == "qa_pixel":
        items = sensor_items(plan.items, LS)
        ((_, (res, _)),) = band_groups(items, [QA_BAND], grid).items()
        qa_factor = round(res / abs(grid.resolution.x))
        qa = group_source(
            items, grid if qa_factor == 1 else grid.zoom_out(qa_factor), [QA_BAND],
            chunksize=max(64, int(chunk / qa_factor)), dtype="uint16", nodata=qa_nodata(items),
        )  # fmt: skip
    hr = None
    if plan.hr is not None and config.hr is not None:
        hr = paired_source(
            plan.hr_items, nested_grid(grid, plan.hr_factor), list(config.hr.bands), chunksize=chunk,
            dtype=str(plan.hr.dtype),
        )  # fmt: skip
    return ShardSources(
        grid, groups, dict(plan.factors), labels, scl, scl_factor, tuple(config.timeseries.scl_invalid), hr,
        plan.hr_factor if plan.hr is not None else 1,
        plan.label_zoom(labels.layers[0]) if labels is not None else 1,
        store_name(str(config.output.path.absolute())),
        order=order, qa=qa, qa_factor=qa_factor, qa_bits=qa_bits(config.timeseries.qa_pixel_invalid),
        derived=derived, file_sizes=planned_sizes(plan),
    )  # fmt: skip


def cube_sources(
    cubes: Mapping[str, xr.DataArray], items: Sequence[dict[str, Any]], grid: GeoBox, factors: Mapping[str, int],
    *, chunksize: int, resampling: str, units: Mapping[str, GroupUnits] | None = None,
) -> dict[str, GroupSource]:  # fmt: skip
    """The read recipes of ``cubes`` (``open_cube``'s groups on ``grid``, opened with ``chunksize``): a group whose
    ``units`` convert the numbers (reflectance) is read as the digital numbers it is made from."""
    sources = {}
    for name, cube in cubes.items():
        f = factors[name]
        dtype, nodata = str(cube.dtype), float(cube.attrs.get("nodata", 0))
        if units is not None and units[name].converted:  # read as digital numbers, then converted
            dtype, nodata = DN_DTYPE, float(NODATA)
        sources[name] = group_source(
            sensor_items(items, group_sensor(name)), grid if f == 1 else grid.zoom_out(f), [str(b) for b in cube.band.values],
            chunksize=max(64, int(chunksize / f)), resampling=resampling, dtype=dtype, nodata=nodata,
        )  # fmt: skip
    return sources


def planned_sizes(plan: BuildPlan) -> dict[str, int]:
    """The checked files' sizes by href without query (signing again changes only the query)."""
    return {
        shown_href(str(item["assets"][band]["href"])): size
        for item in plan.items
        for band, size in plan.file_sizes.get(str(item["id"]), {}).items()
    }


def derived_values(plan: BuildPlan) -> Derived | None:
    """How the shard tasks make the cubes' reflectance and indices from the digital numbers they read (None: the
    cubes hold the numbers as read)."""
    cube = plan.config.cube
    if not cube.reflectance and not cube.indices:
        return None
    cubes = {name: values for name, values in plan.cubes.items() if name != INDEX_GROUP}
    units = group_units(cubes, plan.items, reflectance=cube.reflectance)
    return Derived(units, dict(sorted((cube.indices or {}).items())), INDEX_GROUP)


def group_units(
    cubes: Mapping[str, xr.DataArray], items: Sequence[dict[str, Any]], *, reflectance: bool
) -> dict[str, GroupUnits]:
    """How each of ``cubes`` (opened with ``reflectance`` or not) holds the digital numbers its products store."""
    units = {}
    for name, values in cubes.items():
        sensor, bands = group_sensor(name), tuple(str(b) for b in values.band.values)
        offsets = tuple(int(v) for v in values["boa_offset"].values) if sensor == S2 else ()
        scaling = band_scalings(sensor_items(items, LS), bands) if sensor == LS and reflectance else []
        units[name] = GroupUnits(sensor, bands, reflectance, offsets, tuple(scaling))
    return units


def block_phase(grid: GeoBox, items: Sequence[pystac.Item | Mapping[str, Any]]) -> int:
    """How many base pixels the grid's first column lies right of a stripe edge aligned with the products' blocks
    (their grids start on the tile's edge); 0 when no product is in the grid's CRS."""
    epsg = grid.crs.epsg if grid.crs is not None else None
    base = abs(grid.resolution.x)
    for item in items:
        data = stackstac_ready(item)
        for asset in data["assets"].values():
            transform = asset.get("proj:transform") or data["properties"].get("proj:transform")
            if data["properties"]["proj:epsg"] == epsg and transform:
                return round((grid.transform.c - float(transform[2])) / base) % STRIPE_PX
    return 0


def label_grid(config: BuildConfig, grid: GeoBox) -> GeoBox:
    """The grid of the label layers: the base grid, or the grid nested in it at ``labels.resolution``."""
    if config.labels is None or config.labels.resolution is None:
        return grid
    return nested_grid(grid, round(config.grid.resolution / config.labels.resolution))


def group_factors(grid: GeoBox, cubes: Mapping[str, xr.DataArray]) -> dict[str, int]:
    """How many base pixels one pixel of each group holds along each axis."""
    return {name: group_factor(grid, grid_of(cube)) for name, cube in cubes.items()}


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
        options=ApiOptions(modifier=modifier_of(config.hr.modifier)),
    )
    hr_grid = group_grid(grid, config.hr.resolution)
    mosaic = open_paired(list(items), hr_grid, config.hr.bands, chunksize=config.grid.chunksize)
    return mosaic, [stackstac_ready(i) for i in items]


def _select_patches(
    config: BuildConfig, grid: GeoBox, align: int, parcels: gpd.GeoDataFrame | None
) -> list[Patch]:
    """The config's patches in ``grid``; ``parcels`` as ``prepare_parcels`` gives them (None without labels)."""
    mode = config.patches.mode  # the config has checked that a mode other than grid has labels
    if mode == "parcels":
        assert parcels is not None
        return parcel_centred(grid, parcels, config.patches.size, align=align)
    patches = patch_grid(grid, config.patches.size, config.patches.stride, align=align)
    if mode == "labelled":
        assert parcels is not None
        patches = select_labelled(patches, parcels, config.patches.min_labelled_fraction)
    return patches


def shard_task(plan: BuildPlan, index: int, shard: list[Patch]) -> DirectShard | GraphShard:
    """The task that makes and writes shard ``index``: a ``DirectShard`` when the task reads its own pixels, else a
    ``GraphShard`` whose arguments are windows of the lazy cubes."""
    if plan.sources is not None:
        return DirectShard(shard_spec(plan, index, shard), plan.config.patches.size)
    images = {name: [cube.data[(..., *plan.window(name, p))] for p in shard] for name, cube in plan.cubes.items()}
    paired = {}
    if plan.hr is not None:
        paired = {"hr": [plan.hr.data[(slice(None), *plan.window("hr", p))] for p in shard]}
    masks = None
    if plan.valid is not None:
        masks = [plan.valid.data[(slice(None), *plan.window("valid", p))] for p in shard]
    spec = shard_spec(plan, index, shard)
    return GraphShard(materialize_shard, (spec, images, label_windows(plan, shard), paired, None, masks))


def label_windows(plan: BuildPlan, shard: list[Patch]) -> dict[str, list[Any]]:
    """The lazy label windows of a shard's patches, by layer (on a finer label grid: the nested windows)."""
    if plan.labels is None:
        return {}
    windows = [plan.window("labels", p) for p in shard]
    return {str(layer): [values.data[w] for w in windows] for layer, values in plan.labels.data_vars.items()}


def shard_spec(plan: BuildPlan, index: int, shard: list[Patch]) -> ShardSpec:
    """What the task of shard ``index`` needs besides the pixels."""
    config = plan.config
    return ShardSpec(
        out=str(config.output.path),
        index=index,
        shard_size=config.output.shard_size,
        patches=tuple(shard),
        groups=plan.groups,
        factors=plan.factors,
        dates=tuple(plan.dates),
        sensor_dates={s: tuple(d) for s, d in plan.other_dates.items()},
        sensor_rules={S1: (config.s1.min_valid_fraction, config.s1.min_dates)} if config.s1 is not None else {},
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
        spool_values=True,
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
