"""Sentinel-2 L2A digital numbers and reflectance: processing baselines and their BOA offsets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.landsat import REFLECTANCE_BANDS as LANDSAT_REFLECTANCE_BANDS

QUANTIFICATION = 10_000
# From processing baseline 04.00 (January 2022) L2A digital numbers carry an offset: DN = reflectance * 10000 + 1000.
OFFSET_BASELINE = (4, 0)
BOA_ADD_OFFSET = -1000
# The bands that hold surface reflectance (SCL, AOT, WVP and TCI do not).
REFLECTANCE_BANDS = frozenset(
    {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"}
)


# Catalog flags saying the BOA offset is already applied to the digital numbers (Earth Search v1 and v0)
OFFSET_APPLIED_FLAGS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


def baseline_of(properties: Mapping[str, Any]) -> str:
    """The processing baseline of a product (``""`` when the item does not say).

    ``s2:processing_baseline`` (Earth Search, Planetary Computer), ``sentinel:processing_baseline``
    (Earth Search v0) or ``processing:version`` (CDSE).
    """
    for key in ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version"):
        if properties.get(key) is not None:
            return str(properties[key])
    return ""


@dataclass(frozen=True)
class Radiometry:
    """How a band's digital numbers become reflectance: ``reflectance = DN * scale + offset``."""

    scale: float
    offset: float
    source: str  # "raster:bands", "earthsearch:boa_offset_applied" or "processing baseline NN.NN"

    @property
    def dn_offset(self) -> int:
        """The offset in digital numbers (``offset / scale``; -1000 from baseline 04.00 on)."""
        return round(self.offset / self.scale)


def radiometry_of(item: Mapping[str, Any], band: str) -> Radiometry:
    """The radiometry of ``band`` in ``item``, from the catalog's own fields first.

    1. ``raster:bands[0]`` ``scale`` (and ``offset``, 0 when absent) of the band's asset, as the catalog
       declares it (Earth Search v1/c1, CDSE);
    2. else a catalog flag that the offset is already in the numbers (``earthsearch:boa_offset_applied``,
       ``sentinel:boa_offset_applied`` true): offset 0;
    3. else the processing baseline: -1000 digital numbers from 04.00 on (Planetary Computer).
    """
    rasters = item["assets"].get(band, {}).get("raster:bands") or [{}]
    if rasters[0].get("scale") is not None:
        return Radiometry(float(rasters[0]["scale"]), float(rasters[0].get("offset") or 0.0), "raster:bands")
    props = item["properties"]
    for flag in OFFSET_APPLIED_FLAGS:
        if props.get(flag) is True:
            return Radiometry(1.0 / QUANTIFICATION, 0.0, flag)
    baseline = baseline_of(props)
    offset = boa_offset(baseline)
    return Radiometry(
        1.0 / QUANTIFICATION, offset / QUANTIFICATION, f"processing baseline {baseline or 'unknown'}"
    )


def product_radiometry(item: Mapping[str, Any], bands: Sequence[str]) -> dict[str, Any] | None:
    """``{scale, offset, source}`` of the first reflectance band among ``bands`` (Sentinel-2 or Landsat; None
    without one), as ``dataset.json`` records it per product."""
    for band in bands:
        if band in REFLECTANCE_BANDS or band in LANDSAT_REFLECTANCE_BANDS:
            r = radiometry_of(item, band)
            return {"scale": r.scale, "offset": r.offset, "source": r.source}
    return None


def product_offset(item: Mapping[str, Any], bands: Sequence[str]) -> int:
    """The digital-number offset shared by the reflectance ``bands`` of a product (the baseline's if none).

    The cube stores one offset per time step and divides by 10000, so the bands must share one offset and a
    scale of 1/10000; anything else is refused rather than scaled wrongly.
    """
    found = {}
    for band in bands:
        if band not in REFLECTANCE_BANDS:
            continue
        radiometry = radiometry_of(item, band)
        if abs(radiometry.scale * QUANTIFICATION - 1.0) > 1e-9:
            raise PipelineError(
                f"product {item.get('id')} band {band}: scale {radiometry.scale} (from {radiometry.source}), "
                f"expected 1/{QUANTIFICATION} as Sentinel-2 L1C/L2A use: this product is not Sentinel-2 digital "
                "numbers; build it without cube.reflectance"
            )
        found[band] = radiometry.dn_offset
    if len(set(found.values())) > 1:
        raise PipelineError(
            f"product {item.get('id')} declares different offsets per band {found}: one offset per product "
            "is supported; build without cube.reflectance to keep the digital numbers"
        )
    if found:
        return next(iter(found.values()))
    return radiometry_of(item, "").dn_offset


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


def acquisition_baselines(
    dicts: Sequence[Mapping[str, Any]], keys: Sequence[str], bands: Sequence[str] = ()
) -> dict[str, tuple[str, int]]:
    """Per acquisition: the newest processing baseline of its products and the BOA offset they share.

    The offset of each product comes from :func:`product_offset` (the catalog's ``raster:bands`` first).

    Products of one acquisition are mosaicked, so they must share the offset; a mix (an old and a
    reprocessed copy straddling 04.00) is refused.
    """
    found: dict[str, list[str]] = {}
    offsets_of: dict[str, set[int]] = {}
    for key, data in zip(keys, dicts, strict=True):
        found.setdefault(key, []).append(baseline_of(data["properties"]))
        offsets_of.setdefault(key, set()).add(product_offset(data, bands))
    result = {}
    for key, baselines in found.items():
        offsets = offsets_of[key]
        if len(offsets) > 1:
            raise PipelineError(
                f"acquisition {key} mixes processing baselines {sorted(set(baselines))} with different BOA "
                f"offsets {sorted(offsets)}: keep one baseline per acquisition (deduplicate the selection)"
            )
        result[key] = (max(baselines), offsets.pop())
    return result


def to_reflectance(cube: xr.DataArray) -> xr.DataArray:
    """Float32 ``(DN + boa_offset) / 10000`` for reflectance bands, nodata (0) -> NaN; lazy.

    Other bands (SCL, AOT, ...) keep their values as float32, with their nodata as NaN too.
    """
    values = cube.astype(np.float32)
    flags = [str(b) in REFLECTANCE_BANDS for b in cube.band.values]
    offset = cube["boa_offset"].astype(np.float32)
    scaled = (values + offset) / np.float32(QUANTIFICATION)
    if not all(flags):  # SCL, AOT, ... keep their values
        scaled = xr.where(xr.DataArray(flags, dims="band"), scaled, values)
    out = scaled.where(cube != cube.attrs.get("nodata", 0))
    out = out.astype(np.float32, copy=False).transpose(*cube.dims)
    out.attrs = {**cube.attrs, "nodata": float("nan"), "units": "reflectance"}
    return out
