"""Timeseries samples: per-date valid masks, and which dates (and samples) are kept."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

NODATA = 0

# A mask source: the images of one patch by group ``(T, C, H_g, W_g)`` and each group's zoom factor ->
# the per-date valid mask ``(T, H, W)`` on the base grid. The SCL mask of the masks stage plugs in here.
MaskSource = Callable[[Mapping[str, np.ndarray], Mapping[str, int]], np.ndarray]


def nodata_mask(images: Mapping[str, np.ndarray], factors: Mapping[str, int]) -> np.ndarray:
    """Valid where any band of any group holds data (coarser groups repeated onto the base grid)."""
    valid: np.ndarray | None = None
    for name, values in images.items():
        f = factors[name]
        present = values != NODATA
        if values.dtype.kind == "f":  # reflectance cubes hold NaN where the products have no data
            present &= ~np.isnan(values)
        group_valid = present.any(axis=1)
        if f > 1:
            group_valid = group_valid.repeat(f, axis=1).repeat(f, axis=2)
        valid = group_valid if valid is None else valid | group_valid
    assert valid is not None, "no image groups"
    return valid


# "scl", "qa_pixel": the image-derived part is the nodata mask; the SCL (or Landsat QA_PIXEL) mask itself is read on
# its own grid by the build and reaches each shard task beside the images (``materialize_shard(..., masks=...)``).
MASK_SOURCES: dict[str, MaskSource] = {"nodata": nodata_mask, "scl": nodata_mask, "qa_pixel": nodata_mask}


@dataclass(frozen=True)
class DateSelection:
    """The per-date valid mask and fraction of one patch, and which dates it keeps."""

    mask: np.ndarray  # (T, H, W) bool
    fraction: np.ndarray  # (T,) float32
    kept: np.ndarray  # (T,) bool

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())


def select_dates(mask: np.ndarray, min_valid_fraction: float, known: np.ndarray | None = None) -> DateSelection:
    """Keep the dates whose valid fraction is at least ``min_valid_fraction`` (and above zero).

    ``known`` (optional, ``(T,)``) gives the fractions of dates whose pixels are not at hand (a refresh reuses a
    sample's dropped dates without them); NaN where the fraction comes from ``mask``.
    """
    fraction = mask.reshape(mask.shape[0], -1).mean(axis=1).astype(np.float32)
    if known is not None:
        fraction = np.where(np.isnan(known), fraction, known).astype(np.float32)
    kept = (fraction >= np.float32(min_valid_fraction)) & (fraction > 0)
    return DateSelection(mask, fraction, kept)


def days_since_epoch(dates: list[str]) -> np.ndarray:
    """ISO dates -> days since 1970-01-01 (int32)."""
    return np.array([np.datetime64(d[:10], "D").astype(np.int64) for d in dates], dtype=np.int32)


def day_of_year(dates: list[str]) -> np.ndarray:
    """ISO dates -> day of year 1..366 (int16)."""
    days = np.array([np.datetime64(d[:10], "D") for d in dates])
    years = days.astype("datetime64[Y]")
    return ((days - years).astype(np.int64) + 1).astype(np.int16)
