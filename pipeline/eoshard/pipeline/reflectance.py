"""Sentinel-2 L2A digital numbers and reflectance: processing baselines and their BOA offsets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from eoshard.pipeline.errors import PipelineError

QUANTIFICATION = 10_000
# From processing baseline 04.00 (January 2022) L2A digital numbers carry an offset: DN = reflectance * 10000 + 1000.
OFFSET_BASELINE = (4, 0)
BOA_ADD_OFFSET = -1000
# The bands that hold surface reflectance (SCL, AOT, WVP and TCI do not).
REFLECTANCE_BANDS = frozenset(
    {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"}
)


def baseline_of(properties: Mapping[str, Any]) -> str:
    """The ``s2:processing_baseline`` of a product (``""`` when the item does not say)."""
    value = properties.get("s2:processing_baseline")
    return "" if value is None else str(value)


def boa_offset(baseline: str) -> int:
    """The offset to add to L2A digital numbers: -1000 from baseline 04.00 on, 0 before or when unknown."""
    if not baseline:
        return 0
    try:
        major, minor = (int(part) for part in baseline.split(".")[:2])
    except ValueError as err:
        raise PipelineError(
            f"processing baseline {baseline!r} is not of the form NN.NN: fix the items' s2:processing_baseline"
        ) from err
    return BOA_ADD_OFFSET if (major, minor) >= OFFSET_BASELINE else 0


def acquisition_baselines(dicts: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, tuple[str, int]]:
    """Per acquisition: the newest processing baseline of its products and the BOA offset they share.

    Products of one acquisition are mosaicked, so they must share the offset; a mix (an old and a
    reprocessed copy straddling 04.00) is refused.
    """
    found: dict[str, list[str]] = {}
    for key, data in zip(keys, dicts, strict=True):
        found.setdefault(key, []).append(baseline_of(data["properties"]))
    result = {}
    for key, baselines in found.items():
        offsets = {boa_offset(b) for b in baselines}
        if len(offsets) > 1:
            raise PipelineError(
                f"acquisition {key} mixes processing baselines {sorted(set(baselines))} with different BOA "
                "offsets: keep one baseline per acquisition (deduplicate the selection)"
            )
        result[key] = (max(baselines), offsets.pop())
    return result


def to_reflectance(cube: xr.DataArray) -> xr.DataArray:
    """Float32 ``(DN + boa_offset) / 10000`` for reflectance bands, nodata (0) -> NaN; lazy.

    Other bands (SCL, AOT, ...) keep their values as float32, with their nodata as NaN too.
    """
    values = cube.astype(np.float32)
    is_reflectance = xr.DataArray([str(b) in REFLECTANCE_BANDS for b in cube.band.values], dims="band")
    offset = cube["boa_offset"].astype(np.float32)
    scaled = (values + offset) / np.float32(QUANTIFICATION)
    out = xr.where(is_reflectance, scaled, values).where(cube != cube.attrs.get("nodata", 0))
    out = out.astype(np.float32).transpose(*cube.dims)
    out.attrs = {**cube.attrs, "nodata": float("nan"), "units": "reflectance"}
    return out
