"""A built dataset as a lazy xarray ``Dataset`` with real coordinates, to ``.sel`` and plot in a notebook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from odc.geo.xr import assign_crs

from eoshard.pipeline.errors import DatasetError, ManifestError
from eoshard.pipeline.shards.layout import MANIFEST_FILE, DatasetLayout, LabelLayout
from eoshard.pipeline.shards.reader import open_shards

BASE = ""  # the suffix of the base grid's dimensions (``y``, ``x``)


def open_dataset(path: Path | str) -> xr.Dataset:
    """The kept samples of the dataset at ``path`` (read lazily from its Zarr store) with their coordinates.

    Dimensions are those of ``docs/format.md`` (``sample, time, band_<group>, y_<group>, x_<group>``; base-grid
    arrays ``y, x``). Coordinates: ``sample`` (the sample keys), ``time`` (the dataset's dates; ``time_s1`` the Sentinel-1 dates of format 1.1), ``band_<group>``,
    per sample ``split``, ``lmdb_part``, ``row``, ``col`` and its affine ``transform`` (``a, b, c, d, e, f``),
    and the pixel-centre ``easting_<group>`` / ``northing_<group>`` (``easting`` / ``northing`` on the base grid)
    of every sample in the dataset's CRS (attribute ``crs``); the ``class`` layer carries CF's ``flag_values`` and
    ``flag_meanings`` (the class names). ``sample_image(ds, key, group)`` gives one sample
    as a DataArray on its own ``GeoBox``, ready to plot. Dask chunks hold a Zarr shard's samples each.
    """
    with open_shards(path) as shards:
        layout = shards.layout
        shards.zarr_group()  # a DatasetError when the dataset has no Zarr store
        index = shards.index(columns=["key", "zarr_index", "split", "lmdb_part", "row", "col"])
    assert layout.zarr is not None
    _refuse_missing_shards(Path(path), layout.zarr.path, layout.checksums)
    store = Path(path) / layout.zarr.path
    raw = xr.open_zarr(str(store), consolidated=False, chunks=None)
    slots = index["zarr_index"].to_numpy()
    token = tokenize(str(store.resolve()), layout.checksums, slots)
    ds = _kept_samples(raw, slots, layout.zarr.shard_size, token, where=str(path))
    try:
        return _described(ds, layout, index)
    except ValueError as err:  # xarray's "conflicting sizes", numpy's unreadable date
        raise ManifestError(
            f"{Path(path) / MANIFEST_FILE} does not describe its Zarr store ({err}): the file was changed, or is "
            "another dataset's; restore it, or rebuild the dataset"
        ) from err


def _described(ds: xr.Dataset, layout: DatasetLayout, index: pd.DataFrame) -> xr.Dataset:
    """``ds`` with the coordinates and attributes of ``layout`` and the samples' ``index``."""
    keys = index["key"].astype(str).to_numpy()
    sensor_times = {
        f"time_{s}": np.array([np.datetime64(d, "ns") for d in dates]) for s, dates in layout.sensor_dates.items()
    }
    ds = ds.assign_coords(
        {
            "sample": keys,
            "time": np.array([np.datetime64(d, "ns") for d in layout.dates]),
            "split": ("sample", index["split"].astype(str).to_numpy()),
            "lmdb_part": ("sample", index["lmdb_part"].astype(str).to_numpy()),
            "row": ("sample", index["row"].to_numpy()),
            "col": ("sample", index["col"].to_numpy()),
            **sensor_times,
        }
    )
    origins = [layout.grid.transform * (c, r) for r, c in zip(index["row"], index["col"], strict=True)]
    res = abs(layout.grid.resolution.x)
    ds = ds.assign_coords(transform=(("sample", "affine"), _transforms(origins, res)), affine=list("abcdef"))
    for name, spec in layout.groups.items():
        ds = ds.assign_coords({f"band_{name}": list(spec.bands)})
        ds = _pixel_centres(ds, origins, spec.resolution, f"_{name}")
    if "y" in ds.dims:
        ds = _pixel_centres(ds, origins, res, BASE)
    if layout.hr is not None:
        ds = ds.assign_coords(band_hr=list(layout.hr["bands"]))
        ds = _pixel_centres(ds, origins, float(layout.hr["resolution"]), "_hr")
    if layout.labels is not None and "class" in ds.data_vars:
        ds["class"].attrs = class_flags(layout.labels)
    ds.attrs = {"name": layout.name, "crs": str(layout.grid.crs), "format_version": layout.format_version}
    return ds


def _kept_samples(raw: xr.Dataset, slots: np.ndarray, shard_size: int, token: str, where: str = "") -> xr.Dataset:
    """The samples at ``slots`` (sorted) of ``raw`` (lazy, not yet dask), each array a dask chunk per Zarr shard.

    A chunk per shard, not per sample (zarr's inner chunk): a shard is read and decoded in one go, and a
    whole-dataset reduction has ``shard_size`` times fewer tasks. The chunks read the slots through `KeptSlots`, so
    dask folds a later ``.isel`` into the read: one sample reads one sample, not its shard. ``where``: the dataset,
    as an error about a shard that cannot be read names it.
    """
    ds = raw.isel(sample=slots)
    _, per_shard = np.unique(slots // shard_size, return_counts=True)
    for name, variable in raw.data_vars.items():
        if variable.dims[:1] != ("sample",):
            ds[name] = ds[name].chunk()
            continue
        chunks = (tuple(int(n) for n in per_shard) or (0,), *((n,) for n in variable.shape[1:]))
        data = da.from_array(
            KeptSlots(variable.variable, slots, Shards(where, str(name), shard_size)),
            chunks=chunks,
            name=f"open_dataset-{name}-{token}",
        )
        ds[name] = ds[name].copy(data=data)
    return ds


@dataclass(frozen=True)
class Shards:
    """Where an array's Zarr shards are, as an error names them: dataset ``where``, array ``array``, ``size``
    slots a shard."""

    where: str
    array: str
    size: int

    def unreadable(self, lo: int, hi: int, err: Exception) -> DatasetError:
        """The error for slots ``lo..hi-1`` whose read failed with ``err`` (zarr says a damaged shard only as a
        checksum or a codec that failed, naming no file)."""
        first, last = lo // self.size, (hi - 1) // self.size
        shards = f"shard {first}" if first == last else f"shards {first}..{last}"
        return DatasetError(
            f"could not read slots {lo}..{hi - 1} of array {self.array!r} of {self.where} (its Zarr {shards}): "
            f"{type(err).__name__}: {str(err).rstrip('.')}. The file is damaged or unreadable (a disk, or a copy, that went wrong): "
            f"run `eoshard verify {self.where}`, which names every damaged file, then copy the dataset again or "
            "rebuild it"
        )


class KeptSlots:
    """A lazy array of the kept samples of ``variable``, read by slices of its slots: sample ``i`` is slot
    ``slots[i]``. Keys over kept samples that fall on consecutive slots read them as one slice (zarr's fast path);
    others read the slots' span and take the kept ones (an index array would go through zarr's orthogonal selection,
    many times slower)."""

    def __init__(self, variable: xr.Variable, slots: np.ndarray, shards: Shards) -> None:
        self.variable, self.slots, self.shards = variable, slots, shards
        self.shape = (len(slots), *variable.shape[1:])
        self.dtype, self.ndim = variable.dtype, variable.ndim

    def __getitem__(self, key: tuple[int | slice, ...]) -> np.ndarray:
        first, *rest = key if isinstance(key, tuple) else (key,)
        if isinstance(first, int | np.integer):
            slot = int(self.slots[first])
            return self._read(slot, slot + 1, (slot, *rest))
        wanted = self.slots[first]
        if len(wanted) == 0:
            return self._read(0, 0, (slice(0, 0), *rest))
        lo, hi = int(wanted.min()), int(wanted.max()) + 1
        span = self._read(lo, hi, (slice(lo, hi), *rest))
        return span if hi - lo == len(wanted) and np.all(np.diff(wanted) == 1) else span[wanted - lo]

    def _read(self, lo: int, hi: int, key: tuple[int | slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self.variable[key].values)
        except Exception as err:
            raise self.shards.unreadable(lo, hi, err) from err


def _refuse_missing_shards(path: Path, zarr_path: str, checksums: Mapping[str, str]) -> None:
    """zarr reads a missing shard file as its fill value (zeros): a dataset that lost one is refused, not read."""
    missing = [name for name in checksums if name.startswith(f"{zarr_path}/") and not (path / name).is_file()]
    if missing:
        files, are, them = ("file", "is", "it") if len(missing) == 1 else ("files", "are", "them")
        raise DatasetError(
            f"{len(missing)} Zarr shard {files} of {path} {are} missing ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); zarr would read {them} as zeros. Run `eoshard verify {path}`, "
            f"then rebuild it (`eoshard build` with its config) or restore the {files}"
        )


def class_flags(labels: LabelLayout) -> dict[str, object]:
    """CF's ``flag_values`` and ``flag_meanings`` of the class layer: every code the dataset names or counts, the
    background named ``background``, a code without a name ``class_<code>``, spaces in names as underscores."""
    codes = labels.codes()
    fallback = {labels.background: "background"}
    meanings = [labels.classes.get(str(c), fallback.get(c, f"class_{c}")).replace(" ", "_") for c in codes]
    return {
        "long_name": "class code",
        "flag_values": np.array(codes, dtype=np.int32),
        "flag_meanings": " ".join(meanings),
    }


def sample_image(ds: xr.Dataset, key: str, group: str) -> xr.DataArray:
    """Sample ``key`` of ``group`` (a band group, a label layer or ``hr``) with ``y``/``x`` coordinates and its
    ``GeoBox`` (``.odc.geobox``): ``sample_image(ds, key, "s2_10m").isel(time=0).sel(band="B04").plot()``."""
    images = sorted(str(n) for n, v in ds.data_vars.items() if {"x", f"x_{n}"} & {str(d) for d in v.dims})
    if group not in images:
        raise DatasetError(f"the dataset has no image {group!r}: its images are {images}")
    if key not in ds.indexes["sample"]:
        raise DatasetError(
            f"the dataset has no sample {key!r}: give one of its keys (ds.sample.values, e.g. {ds.sample.values[0]!r})"
        )
    values = ds[group].sel(sample=key)
    suffix = "" if "y" in values.dims else f"_{group}"
    renames = {f"y{suffix}": "y", f"x{suffix}": "x", f"band{suffix}": "band"}
    values = values.rename({k: v for k, v in renames.items() if k in values.dims and k != v})
    east, north = f"easting{suffix}", f"northing{suffix}"
    values = values.assign_coords(x=values[east].values, y=values[north].values).drop_vars([east, north])
    return assign_crs(values, ds.attrs["crs"])


def _transforms(origins: list[tuple[float, float]], res: float) -> np.ndarray:
    return np.array([[res, 0.0, x0, 0.0, -res, y0] for x0, y0 in origins], dtype=np.float64)


def _pixel_centres(ds: xr.Dataset, origins: list[tuple[float, float]], res: float, suffix: str) -> xr.Dataset:
    ydim, xdim = f"y{suffix}", f"x{suffix}"
    if ydim not in ds.dims:
        return ds
    cols = (np.arange(ds.sizes[xdim]) + 0.5) * res
    rows = (np.arange(ds.sizes[ydim]) + 0.5) * res
    east = np.array([x0 + cols for x0, _ in origins])
    north = np.array([y0 - rows for _, y0 in origins])
    return ds.assign_coords(
        {f"easting{suffix}": (("sample", xdim), east), f"northing{suffix}": (("sample", ydim), north)}
    )
