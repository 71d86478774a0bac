"""The projection and raster fields of an item that place and decode its pixels, checked where items enter the
pipeline: a hand-edited selection or a catalog's slip otherwise ends deep in stackstac or the planner."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eoshard.pipeline.errors import LEAVE_OUT, PipelineError

# the raster extension's data types (https://github.com/stac-extensions/raster)
DATA_TYPES = frozenset(
    ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64",
     "cint16", "cint32", "cfloat32", "cfloat64", "other")
)  # fmt: skip


class ItemFieldError(PipelineError, ValueError):
    """A product's projection or raster field is not what the STAC extensions define."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, counts: tuple[int, ...]) -> bool:
    return isinstance(value, list | tuple) and len(value) in counts and all(_number(v) for v in value)


def _transform(value: Any) -> str | None:
    if not _numbers(value, (6, 9)):
        return "is not an affine transform (6 or 9 finite numbers: a, b, c, d, e, f[, 0, 0, 1])"
    a, b, _, d, e, _ = value[:6]
    return "has no area (a * e - b * d is 0)" if a * e - b * d == 0 else None


def _shape(value: Any) -> str | None:
    if not _numbers(value, (2,)) or not all(float(v).is_integer() and v >= 1 for v in value):
        return "is not [rows, columns] (2 whole numbers of 1 or more)"
    return None


def _bbox(value: Any) -> str | None:
    return None if _numbers(value, (4, 6)) else "is not a bounding box (4 or 6 finite numbers)"


def _positive(value: Any) -> str | None:
    return None if _number(value) and value > 0 else "is not a size in metres (a number above 0)"


def _finite(value: Any) -> str | None:
    return None if _number(value) else "is not a finite number"


def _nodata(value: Any) -> str | None:
    if _number(value) or (isinstance(value, str) and value.lower() in ("nan", "inf", "-inf")):
        return None
    return "is not a number (or 'nan', 'inf', '-inf')"


def _data_type(value: Any) -> str | None:
    if isinstance(value, str) and value in DATA_TYPES:
        return None
    return f"is not one of {', '.join(sorted(DATA_TYPES))}"


_PROJECTION = {"proj:transform": _transform, "proj:shape": _shape, "proj:bbox": _bbox}
# STAC 1.1 puts a single band's raster fields on the asset itself
_ASSET = {"gsd": _positive, "raster:scale": _finite, "raster:offset": _finite, "nodata": _nodata,
          "data_type": _data_type}  # fmt: skip
_RASTER_BAND = {"scale": _finite, "offset": _finite, "nodata": _nodata, "data_type": _data_type,
                "spatial_resolution": _positive}  # fmt: skip


def _problems(fields: Mapping[str, Any], checks: Mapping[str, Any]) -> list[str]:
    return [
        f"{key} {fields[key]!r:.80} {problem}"
        for key, check in checks.items()
        if fields.get(key) is not None and (problem := check(fields[key])) is not None
    ]


def _asset_problems(asset: Mapping[str, Any]) -> list[str]:
    found = _problems(asset, {**_PROJECTION, **_ASSET})
    rasters = asset.get("raster:bands")
    if rasters is None:
        return found
    if not isinstance(rasters, list) or not all(isinstance(r, Mapping) for r in rasters):
        return [*found, f"raster:bands {rasters!r:.80} is not a list of objects (one per band of the file)"]
    return found + [f"raster:bands[{i}].{p}" for i, r in enumerate(rasters) for p in _problems(r, _RASTER_BAND)]


def check_item_fields(data: Mapping[str, Any]) -> None:
    """Raise ``ItemFieldError`` naming the product, the field, what it holds and what the STAC projection and
    raster extensions define, for the item's projection fields and those of each of its assets."""
    where = [("", _problems(data["properties"], _PROJECTION))]
    where += [(f"asset {k!r}: ", _asset_problems(a)) for k, a in data["assets"].items() if isinstance(a, Mapping)]
    for prefix, problems in where:
        if problems:
            raise _refused(data, f"{prefix}{problems[0]}")


def check_one_band(data: Mapping[str, Any], assets: Sequence[str]) -> None:
    """Raise ``ItemFieldError`` where one of the ``assets`` read declares a file of several bands (or none)."""
    for key in assets:
        rasters = data["assets"].get(key, {}).get("raster:bands")
        if isinstance(rasters, list) and len(rasters) != 1:
            said = f"raster:bands describes {len(rasters)} bands, eoshard reads files of one band"
            raise _refused(data, f"asset {key!r}: {said} (name the single-band assets in bands)")


def _refused(data: Mapping[str, Any], problem: str) -> ItemFieldError:
    return ItemFieldError(
        f"product {data.get('id')} {problem}; fix the item (a saved selection is JSON you can edit, or select "
        f"again from a catalog that publishes it correctly), or {LEAVE_OUT}"
    )
