"""The attributes of a Zarr scene (``bands``, ``crs``, ``transform``, ``nodata``, ``dates``), each checked as
predict uses it: a field of another shape is named with what came, before any pixel is read (they were a
``ValueError`` or ``TypeError`` from deep in predict, or a class map with a degenerate grid)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eoshard.training.errors import InputError

Finite = Annotated[float, Field(allow_inf_nan=False)]


class SceneAttrs(BaseModel):
    """What predict reads from a Zarr scene's attributes; others are left alone."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    bands: list[str] | None = None
    crs: str | None = Field(None, min_length=1)
    transform: list[Finite] | None = None
    nodata: float | str | None = None
    dates: list[str] | None = None

    @field_validator("transform")
    @classmethod
    def _affine(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return None
        if len(value) not in (6, 9) or (len(value) == 9 and value[6:] != [0, 0, 1]):
            raise ValueError("expected the 6 numbers a, b, c, d, e, f of an affine transform (rasterio's order)")
        a, b, _, d, e, _ = value[:6]
        if a * e - b * d == 0:
            raise ValueError("expected a transform whose pixels have an area (a*e - b*d is 0)")
        return value

    @field_validator("nodata")
    @classmethod
    def _number(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                raise ValueError("expected a number, or 'nan' for floats") from None
        return value

    @field_validator("dates")
    @classmethod
    def _iso(cls, value: list[str] | None) -> list[str] | None:
        for date in value or []:
            try:
                datetime.fromisoformat(date)
            except ValueError:
                raise ValueError(
                    f"expected ISO 8601 dates (2024-05-18 or 2024-05-18T10:20:21Z), not {date!r}"
                ) from None
        return value

    @property
    def nodata_value(self) -> float | None:
        return None if self.nodata is None else float(self.nodata)


def scene_attrs(path: Path, attrs: dict[str, Any], channels: int) -> SceneAttrs:
    """The checked attributes of the Zarr scene at ``path`` whose array has ``channels`` bands per date; an
    ``InputError`` that names the attribute, what it must be and what came."""
    try:
        checked = SceneAttrs.model_validate(attrs)
    except ValidationError as err:
        first = err.errors()[0]
        name = ".".join(str(part) for part in first["loc"][:1]) or "attributes"
        came = attrs.get(name, first["input"])
        msg = first["msg"].removeprefix("Value error, ").replace("Input should be", "expected")
        raise InputError(
            f"{path}: the Zarr attribute {name!r} is {came!r:.80}: {msg}; fix the attribute (what "
            "`eoshard predict --scene` writes: bands, crs, transform, nodata, dates)"
        ) from None
    if checked.bands is not None and len(checked.bands) != channels:
        raise InputError(
            f"{path}: the Zarr attribute 'bands' names {len(checked.bands)} bands where the array has {channels} "
            "per date: name each band once, in the array's order"
        )
    return checked
