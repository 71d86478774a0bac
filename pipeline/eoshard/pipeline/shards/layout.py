"""The dataset layout as one value: its files, base grid, groups, label layers and formats (``docs/format.md``).

``DatasetLayout.to_manifest()`` is ``dataset.json`` (keys in the order of the format, format version 1.0, or 1.1
with a second sensor's own dates in ``sensor_dates``) and
``DatasetLayout.from_manifest`` reads it back, refusing a broken or newer manifest with a ``ManifestError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj.exceptions import CRSError

from eoshard.pipeline.errors import ManifestError
from eoshard.pipeline.grid import group_grid
from eoshard.pipeline.shards.manifest_shape import check_manifest_shape
from eoshard.pipeline.shards.samples import FORMAT_VERSION, SENSORS_FORMAT_VERSION

# the files and folders of a dataset (docs/format.md "Files")
MANIFEST_FILE = "dataset.json"
INDEX_FILE = "index.parquet"
COLLECTION_FILE = "collection.json"
CARD_FILE = "croissant.json"  # the GeoCroissant dataset card
ZARR_DIR = "data.zarr"
LMDB_DIR = "data.lmdb"
BUILD_DIR = "_build"
VALUES_DIR = "values"  # in BUILD_DIR: LMDB values on their way from a shard task to the driver

# the keys of dataset.json, in the order the builder writes them (docs/format.md "dataset.json")
MANIFEST_KEYS = (
    "format_version", "name", "crs", "transform", "shape", "resolution", "patch", "bands", "groups", "dates",
    "products", "timeseries", "n_samples", "n_candidates", "keys", "dropped", "splits", "statistics", "labels",
    "hr", "formats", "checksums",
)  # fmt: skip
# Keys written only by format 1.1 (``sensor_dates``), or added within format 1.0 after the first datasets (absent
# from older files, kept in ``extra`` when present).
OPTIONAL_KEYS = ("sensor_dates", "radiometry", "band_metadata")
GROUP_KEYS = ("bands", "resolution", "factor", "shape", "dtype", "nodata", "expressions")
Json = dict[str, Any]


@dataclass(frozen=True)
class GroupLayout:
    """One resolution group: its bands, grid (``resolution``, ``factor`` base pixels per pixel) and slot shape."""

    name: str
    bands: tuple[str, ...]
    resolution: float
    factor: int
    shape: tuple[int, int, int, int]  # (T, C, H, W) of one sample
    dtype: str
    expressions: Mapping[str, str] | None = None  # the indices group: index -> formula

    @property
    def nodata(self) -> int | str:
        """0 for integer groups, ``"nan"`` (the JSON spelling) for float groups."""
        return "nan" if self.dtype.startswith("float") else 0

    def grid(self, base: GeoBox) -> GeoBox:
        """The group's grid, nested in the dataset's base grid."""
        return group_grid(base, self.resolution)

    def to_json(self) -> Json:
        data: Json = {
            "bands": list(self.bands),
            "resolution": self.resolution,
            "factor": self.factor,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nodata": self.nodata,
        }
        return data if self.expressions is None else {**data, "expressions": dict(self.expressions)}

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> GroupLayout:
        t, c, h, w = (int(v) for v in data["shape"])
        expressions = data.get("expressions")
        return cls(
            name, tuple(data["bands"]), float(data["resolution"]), int(data["factor"]), (t, c, h, w),
            str(data["dtype"]), None if expressions is None else dict(expressions),
        )  # fmt: skip


@dataclass(frozen=True)
class LabelLayout:
    """The label layers (name -> dtype, resolution), background value, class names and pixel counts."""

    layers: Mapping[str, tuple[str, float]]
    classes: Mapping[str, str] = field(default_factory=dict)
    class_counts: Mapping[str, int] = field(default_factory=dict)
    background: int = 0

    def codes(self) -> list[int]:
        """Every class code the dataset names or counts, and the background, in order."""
        return sorted({self.background, *map(int, self.classes), *map(int, self.class_counts)})

    def to_json(self) -> Json:
        return {
            "layers": {k: {"dtype": d, "resolution": r} for k, (d, r) in self.layers.items()},
            "background": self.background,
            "classes": dict(self.classes),
            "class_counts": dict(self.class_counts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabelLayout:
        layers = {str(k): (str(v["dtype"]), float(v["resolution"])) for k, v in data["layers"].items()}
        return cls(layers, dict(data["classes"]), dict(data["class_counts"]), int(data["background"]))


@dataclass(frozen=True)
class ZarrLayout:
    shard_size: int
    n_shards: int
    n_slots: int
    path: str = ZARR_DIR

    def to_json(self) -> Json:
        return {
            "path": self.path,
            "shard_size": self.shard_size,
            "n_shards": self.n_shards,
            "n_slots": self.n_slots,
        }


@dataclass(frozen=True)
class LmdbLayout:
    parts: tuple[str, ...]
    path: str = LMDB_DIR

    def to_json(self) -> Json:
        return {"path": self.path, "parts": list(self.parts)}


@dataclass(frozen=True)
class DatasetLayout:
    """Everything ``dataset.json`` says, typed: the base grid is a ``GeoBox``, groups and formats are values.

    Sections that are records rather than layout (patch settings, statistics, splits, the HR source) stay JSON
    objects; keys this version does not know are kept in ``extra`` and written back after the known ones.
    """

    name: str
    grid: GeoBox
    patch: Json
    bands: tuple[str, ...]
    groups: Mapping[str, GroupLayout]
    dates: tuple[str, ...]
    products: tuple[str, ...]
    timeseries: Json
    n_samples: int
    keys: tuple[str, ...]
    dropped: Json
    splits: Json
    statistics: Json
    labels: LabelLayout | None
    hr: Json | None
    zarr: ZarrLayout | None
    lmdb: LmdbLayout | None
    checksums: Mapping[str, str]
    format_version: str = FORMAT_VERSION
    sensor_dates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # other sensors' dates (1.1)
    extra: Json = field(default_factory=dict)

    @property
    def n_candidates(self) -> int:
        return len(self.keys)

    @property
    def patch_size(self) -> int:
        return int(self.patch["size"])

    def to_manifest(self) -> Json:
        """``dataset.json`` as a JSON object (``json.dumps(layout.to_manifest(), indent=2)`` is the file)."""
        grid = self.grid
        return {
            "format_version": self.format_version,
            "name": self.name,
            "crs": str(grid.crs),
            "transform": list(grid.transform)[:6],
            "shape": list(grid.shape),
            "resolution": abs(grid.resolution.x),
            "patch": self.patch,
            "bands": list(self.bands),
            "groups": {name: g.to_json() for name, g in self.groups.items()},
            "dates": list(self.dates),
            "products": list(self.products),
            "timeseries": self.timeseries,
            "n_samples": self.n_samples,
            "n_candidates": self.n_candidates,
            "keys": list(self.keys),
            "dropped": self.dropped,
            "splits": self.splits,
            "statistics": self.statistics,
            "labels": None if self.labels is None else self.labels.to_json(),
            "hr": self.hr,
            "formats": {
                "zarr": None if self.zarr is None else self.zarr.to_json(),
                "lmdb": None if self.lmdb is None else self.lmdb.to_json(),
            },
            "checksums": dict(self.checksums),
            **({"sensor_dates": {k: list(v) for k, v in self.sensor_dates.items()}} if self.sensor_dates else {}),
            **self.extra,
        }

    @classmethod
    def from_manifest(cls, data: Any, source: str = MANIFEST_FILE) -> DatasetLayout:
        """The layout of a ``dataset.json`` object; a ``ManifestError`` names what is wrong with it."""
        if not isinstance(data, dict):
            raise ManifestError(
                f"{source}: expected a JSON object, got {type(data).__name__}: rebuild the dataset"
            )
        _check_version(data.get("format_version"), source)
        missing = [k for k in MANIFEST_KEYS if k not in data]
        if missing:
            raise ManifestError(
                f"{source}: format {FORMAT_VERSION} needs the keys {missing}, which are missing: the file is "
                "broken or was not written by eoshard; rebuild the dataset (or restore dataset.json)"
            )
        check_manifest_shape(data, source)
        try:
            return _from_manifest(cls, data)
        except (KeyError, TypeError, ValueError, CRSError) as err:  # CRSError: a crs pyproj cannot read
            raise ManifestError(
                f"{source}: a value does not have the shape of format {FORMAT_VERSION} ({type(err).__name__}: "
                f"{err}): the file is broken; rebuild the dataset (or restore dataset.json)"
            ) from err

    def lmdb_paths(self, root: Path) -> list[Path]:
        """The LMDB environments, in part order (none without LMDB)."""
        return [] if self.lmdb is None else [root / self.lmdb.path / p for p in self.lmdb.parts]


def _check_version(version: Any, source: str) -> None:
    if not isinstance(version, str):
        raise ManifestError(
            f"{source}: no format_version string (got {version!r}): not an eoshard dataset manifest; "
            "rebuild the dataset"
        )
    major, minor = (int(p) if p.isdigit() else -1 for p in [*version.split("."), "0"][:2])
    own_major, own_minor = (int(p) for p in SENSORS_FORMAT_VERSION.split("."))
    if major < 0 or minor < 0:
        raise ManifestError(f"{source}: format_version {version!r} is not MAJOR.MINOR: rebuild the dataset")
    if (major, minor) > (own_major, own_minor):
        raise ManifestError(
            f"{source}: format {version} is newer than this eoshard reads ({SENSORS_FORMAT_VERSION}): "
            "upgrade eoshard to read it"
        )


def _from_manifest(cls: type[DatasetLayout], data: Mapping[str, Any]) -> DatasetLayout:
    ny, nx = (int(v) for v in data["shape"])
    grid = GeoBox((ny, nx), Affine(*(float(v) for v in data["transform"])), str(data["crs"]))
    formats = data["formats"]
    zarr, lmdb = formats.get("zarr"), formats.get("lmdb")
    return cls(
        name=str(data["name"]),
        grid=grid,
        patch=dict(data["patch"]),
        bands=tuple(data["bands"]),
        groups={str(k): GroupLayout.from_json(str(k), v) for k, v in data["groups"].items()},
        dates=tuple(data["dates"]),
        products=tuple(data["products"]),
        timeseries=dict(data["timeseries"]),
        n_samples=int(data["n_samples"]),
        keys=tuple(data["keys"]),
        dropped=dict(data["dropped"]),
        splits=dict(data["splits"]),
        statistics=dict(data["statistics"]),
        labels=None if data["labels"] is None else LabelLayout.from_json(data["labels"]),
        hr=None if data["hr"] is None else dict(data["hr"]),
        zarr=None
        if zarr is None
        else ZarrLayout(zarr["shard_size"], zarr["n_shards"], zarr["n_slots"], zarr["path"]),
        lmdb=None if lmdb is None else LmdbLayout(tuple(lmdb["parts"]), lmdb["path"]),
        checksums=dict(data["checksums"]),
        format_version=str(data["format_version"]),
        sensor_dates={str(k): tuple(v) for k, v in (data.get("sensor_dates") or {}).items()},
        extra={k: v for k, v in data.items() if k not in (*MANIFEST_KEYS, "sensor_dates")},
    )


def group_layouts(
    cubes: Mapping[str, Any],
    factors: Mapping[str, int],
    base_resolution: float,
    slot_shapes: Mapping[str, Sequence[int]],
) -> dict[str, GroupLayout]:
    """The layouts of lazy ``(time, band, y, x)`` cubes (an ``expressions`` attribute marks the indices group)."""
    layouts = {}
    for name, cube in cubes.items():
        t, c, h, w = (int(v) for v in slot_shapes[name])
        layouts[name] = GroupLayout(
            name, tuple(str(b) for b in cube.band.values), base_resolution * factors[name], factors[name],
            (t, c, h, w), str(cube.dtype), cube.attrs.get("expressions"),
        )  # fmt: skip
    return layouts
