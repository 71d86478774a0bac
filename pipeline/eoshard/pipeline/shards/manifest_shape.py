"""The shape of ``dataset.json`` (docs/format.md), checked before any reader uses a value of it.

A manifest edited by hand or by another tool reached the readers with a value of another type (a patch size of
``null``, a list where the counts of a split were): ``eoshard inspect`` and ``verify`` then failed with a
``KeyError`` or ``TypeError`` from deep inside. The layout is now validated here first, and the error names the
field, what it should be and what came. Sections that are records keep any keys they hold (``extra="allow"``);
only what the readers use is typed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eoshard.pipeline.errors import ManifestError

Count = Annotated[int, Field(ge=0)]
Size = Annotated[int, Field(ge=1)]


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class _Patch(_Record):
    size: Size
    mode: str


class _Splits(_Record):
    counts: dict[str, Count]


class _Group(_Record):
    bands: list[str] = Field(min_length=1)
    resolution: float
    factor: Size
    shape: Annotated[list[Count], Field(min_length=4, max_length=4)]
    dtype: str
    expressions: dict[str, str] | None = None


class _Layer(_Record):
    dtype: str
    resolution: float


class _Labels(_Record):
    layers: dict[str, _Layer]
    classes: dict[str, str]
    class_counts: dict[str, Count]
    background: int


class _Hr(_Record):
    bands: list[str] = Field(min_length=1)
    tensors: list[str] = Field(min_length=1)
    resolution: float
    factor: Size
    shape: Annotated[list[Count], Field(min_length=3, max_length=3)]
    dtype: str
    products: list[str]


class _Zarr(_Record):
    path: str
    shard_size: Size
    n_shards: Count
    n_slots: Count


class _Lmdb(_Record):
    path: str
    parts: list[str]


class _Formats(_Record):
    zarr: _Zarr | None = None
    lmdb: _Lmdb | None = None


class _Manifest(_Record):
    format_version: str
    name: str
    crs: str
    transform: Annotated[list[float], Field(min_length=6, max_length=9)]
    shape: Annotated[list[Size], Field(min_length=2, max_length=2)]
    resolution: float
    patch: _Patch
    bands: list[str] = Field(min_length=1)
    groups: dict[str, _Group] = Field(min_length=1)
    dates: list[str]
    products: list[str]
    timeseries: dict[str, Any]
    n_samples: Count
    n_candidates: Count
    keys: list[str]
    dropped: dict[str, Count]
    splits: _Splits
    statistics: dict[str, dict[str, Any]]
    labels: _Labels | None
    hr: _Hr | None
    formats: _Formats
    checksums: dict[str, str]
    sensor_dates: dict[str, list[str]] | None = None
    band_metadata: dict[str, dict[str, Any]] | None = None


def check_manifest_shape(data: dict[str, Any], source: str) -> None:
    """A ``ManifestError`` naming the first field of ``data`` whose type or value the format does not allow."""
    try:
        _Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "missing":
            what = f"{where} is missing"
        else:
            shown = repr(first["input"])
            shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
            what = f"{where}: {first['msg'][0].lower()}{first['msg'][1:]}, got {shown}"
        raise ManifestError(
            f"{source}: {what} (docs/format.md): the file is broken or was not written by eoshard; rebuild the "
            "dataset (or restore dataset.json)"
        ) from None
