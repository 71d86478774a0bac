"""Landsat Collection 2 Level-2: band names, scaling to physical units, and the QA_PIXEL cloud bits.

Band names are the STAC common names that Planetary Computer, Earth Search and USGS use as asset keys (``red``,
``nir08``, ``qa_pixel``). USGS file names with Landsat 8-9 OLI numbers (``SR_B4``, ``ST_B10``, ``QA_PIXEL``) and the
Sentinel-2 id of the same common name (``B04``, which is how a config stores ``red``) resolve to them; a Sentinel-2
band Landsat lacks (``B08``/``nir``, the red edges) is refused. See docs/design/0019-landsat.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from eoshard.pipeline.bands import ALIASES, CANONICAL, canonical_band
from eoshard.pipeline.errors import BandError, PipelineError

if TYPE_CHECKING:  # the band names are read by the config, which should not load xarray
    import xarray as xr

# Surface reflectance bands (OLI 1-7), surface temperature, and the quality bands, as the C2 L2 STAC items key them
REFLECTANCE_BANDS = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
LS_BANDS = frozenset({*REFLECTANCE_BANDS, "lwir11", "qa_pixel", "qa_radsat", "qa_aerosol"})
# USGS file-name bands: Landsat 8-9 OLI numbering (Landsat 4-7 number them differently: ask those by common name)
USGS_NAMES = {
    **{f"sr_b{n}": band for n, band in enumerate(REFLECTANCE_BANDS, start=1)},
    "st_b10": "lwir11", "qa_pixel": "qa_pixel", "qa_radsat": "qa_radsat", "qa_aerosol": "qa_aerosol",
}  # fmt: skip
# Sentinel-2 ids whose common name Landsat shares (a config stores ``red`` as ``B04``)
FROM_S2 = {s2: name for name, s2 in ALIASES.items() if name in REFLECTANCE_BANDS}
QA_BAND = "qa_pixel"
# USGS C2 L2 QA_PIXEL bits (Landsat 8-9 OLI/TIRS; bit 2 is unused on Landsat 4-7)
QA_PIXEL_BITS: dict[str, int] = {
    "fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "cloud_shadow": 4, "snow": 5, "clear": 6, "water": 7,
}  # fmt: skip
QA_PIXEL_INVALID = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")


def landsat_name(key: str) -> str | None:
    """The Landsat band ``key`` names (``red`` for ``SR_B4``, ``QA_PIXEL``, ``red``), or None."""
    low = key.lower()
    return low if low in LS_BANDS else USGS_NAMES.get(low)


def landsat_band(name: str) -> str:
    """The Landsat name of what a user asks: ``red`` for ``red``, ``SR_B4``, ``B4`` or ``B04``.

    A Sentinel-2 band without a Landsat counterpart is refused; other names (custom assets) pass unchanged.
    """
    own = landsat_name(name)
    if own is not None:
        return own
    s2 = canonical_band(name)
    if s2 in FROM_S2:
        return FROM_S2[s2]
    if s2 in CANONICAL:
        raise BandError(
            f"band {name!r} is Sentinel-2 {s2}, which Landsat C2 L2 has no counterpart of: Landsat bands are "
            f"{', '.join(sorted(LS_BANDS))} (or SR_B1..SR_B7, ST_B10, QA_PIXEL); its near infrared is nir08 (SR_B5)"
        )
    return name


def landsat_bands(names: Sequence[str]) -> list[str]:
    """:func:`landsat_band` of each name; two names of one band are refused."""
    bands = [landsat_band(b) for b in names]
    twice = sorted({f"{a} ({b})" for a, b in zip(names, bands, strict=True) if bands.count(b) > 1})
    if twice:
        raise BandError(f"bands {twice} name the same Landsat band twice: list each band once")
    return bands


def landsat_assets(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the item dict with the Landsat name of each USGS-named asset key beside it (``red`` for
    ``SR_B4``); keys already present are never replaced."""
    assets = dict(item.get("assets", {}))
    for key in list(assets):
        name = landsat_name(key)
        if name is not None:
            assets.setdefault(name, assets[key])
    return {**item, "assets": assets}


def qa_bits(names: Iterable[str]) -> int:
    """The QA_PIXEL bit mask of ``names`` (``fill``, ``cloud``...), refused when one is not a QA_PIXEL bit."""
    unknown = sorted(set(names) - set(QA_PIXEL_BITS))
    if unknown:
        raise ValueError(f"QA_PIXEL bits {unknown} do not exist: use names of {QA_PIXEL_BITS}")
    return sum(1 << QA_PIXEL_BITS[n] for n in set(names))


def qa_valid(qa: Any, bits: int) -> Any:
    """Valid where none of ``bits`` is set (numpy or lazy xarray)."""
    return (qa & bits) == 0


def band_scaling(dicts: Sequence[Mapping[str, Any]], band: str) -> tuple[float, float] | None:
    """The ``raster:bands`` scale and offset every product declares for ``band`` (None when none does)."""
    found: set[tuple[float, float] | None] = set()
    for data in dicts:
        raster = (data["assets"].get(band, {}).get("raster:bands") or [{}])[0]
        scale = raster.get("scale")
        found.add(None if scale is None else (float(scale), float(raster.get("offset") or 0.0)))
    if len(found) > 1:
        raise PipelineError(
            f"the Landsat products declare different scale/offset for {band}: {sorted(map(str, found))}; a cube "
            "band has one scaling: select products of one collection, or build without cube.reflectance"
        )
    return found.pop() if found else None


def to_physical(cube: xr.DataArray, dicts: Sequence[Mapping[str, Any]]) -> xr.DataArray:
    """Float32 ``DN * scale + offset`` per band as the products declare it (reflectance, kelvin for ``lwir11``);
    bands without a scale (``qa_pixel``) keep their values; nodata -> NaN; lazy."""
    return scaled(cube, band_scalings(dicts, [str(b) for b in cube.band.values]))


def band_scalings(dicts: Sequence[Mapping[str, Any]], bands: Sequence[str]) -> list[tuple[float, float]]:
    """``(scale, offset)`` of each of ``bands`` as the products declare it, ``(1, 0)`` for a band without."""
    return [band_scaling(dicts, b) or (1.0, 0.0) for b in bands]


def scaled(cube: xr.DataArray, scaling: Sequence[tuple[float, float]]) -> xr.DataArray:
    """Float32 ``DN * scale + offset`` with each band's ``scaling``, nodata -> NaN (``to_physical``'s values, for a
    lazy cube or a window in memory)."""
    import xarray as xr

    scale = xr.DataArray(np.array([s for s, _ in scaling], dtype=np.float32), dims="band")
    offset = xr.DataArray(np.array([o for _, o in scaling], dtype=np.float32), dims="band")
    out = (cube.astype(np.float32) * scale + offset).where(cube != cube.attrs.get("nodata", 0))
    out = out.astype(np.float32, copy=False).transpose(*cube.dims)
    out.attrs = {**cube.attrs, "nodata": float("nan"), "units": "reflectance"}
    return out
