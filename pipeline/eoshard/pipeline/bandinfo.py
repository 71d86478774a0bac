"""What a band is, for foundation models: wavelength, bandwidth, GSD, units, and whether offsets were applied.

Sentinel-2 MSI: centre wavelength and bandwidth of Sentinel-2A (ESA, Sentinel-2 User Handbook / MSI spectral
response, the figures the STAC ``eo:bands`` of the L2A collections carry), native ground sampling distance.
Landsat 8-9 OLI/TIRS: centre wavelength and bandwidth as the Landsat C2 L2 STAC items' ``eo:bands`` carry them.
Sentinel-1 C-SAR: one radar wavelength (5.405 GHz, 55.46 mm) for every polarisation, 10 m pixel spacing of the IW GRD
and RTC products.

``band_metadata`` puts the table together with how the build stored the values (digital numbers or reflectance,
offset applied or not); it is ``dataset.json`` ``band_metadata`` (see docs/format.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eoshard.pipeline.landsat import REFLECTANCE_BANDS as LANDSAT_REFLECTANCE
from eoshard.pipeline.sensors import LS, S1, S2, band_sensor


@dataclass(frozen=True)
class BandInfo:
    """A band of a sensor: centre wavelength and bandwidth (nm), native ground sampling distance (m)."""

    sensor: str
    common_name: str
    wavelength_nm: float
    bandwidth_nm: float | None
    gsd_m: float


_S2 = {
    "B01": ("coastal", 442.7, 21.0, 60.0),
    "B02": ("blue", 492.4, 66.0, 10.0),
    "B03": ("green", 559.8, 36.0, 10.0),
    "B04": ("red", 664.6, 31.0, 10.0),
    "B05": ("rededge1", 704.1, 15.0, 20.0),
    "B06": ("rededge2", 740.5, 15.0, 20.0),
    "B07": ("rededge3", 782.8, 20.0, 20.0),
    "B08": ("nir", 832.8, 106.0, 10.0),
    "B8A": ("nir08", 864.7, 21.0, 20.0),
    "B09": ("nir09", 945.1, 20.0, 60.0),
    "B10": ("cirrus", 1373.5, 31.0, 60.0),
    "B11": ("swir16", 1613.7, 91.0, 20.0),
    "B12": ("swir22", 2202.4, 175.0, 20.0),
}
_LANDSAT = {
    "coastal": (440.0, 20.0, 30.0), "blue": (480.0, 60.0, 30.0), "green": (560.0, 60.0, 30.0),
    "red": (650.0, 40.0, 30.0), "nir08": (870.0, 30.0, 30.0), "swir16": (1610.0, 90.0, 30.0),
    "swir22": (2200.0, 190.0, 30.0), "lwir11": (10900.0, 590.0, 100.0),
}  # fmt: skip
LANDSAT_BANDS = {name: BandInfo(LS, name, *values) for name, values in _LANDSAT.items()}
LANDSAT_SCALE, LANDSAT_OFFSET = 2.75e-05, -0.2  # C2 L2 surface reflectance
S1_WAVELENGTH_NM = 299_792_458 / 5.405e9 * 1e9  # C band, 5.405 GHz: 55.465 mm
BANDS: dict[str, BandInfo] = {
    **{name: BandInfo(S2, *values) for name, values in _S2.items()},
    **{pol: BandInfo(S1, pol.lower(), S1_WAVELENGTH_NM, None, 10.0) for pol in ("VV", "VH", "HH", "HV")},
}


def band_info(band: str) -> BandInfo | None:
    """The table's entry for ``band`` (Sentinel-1 polarisations in any case), or None for a band it does not know."""
    return BANDS.get(band.upper() if band_sensor(band) == S1 else band)


def band_metadata(
    bands: Sequence[str], *, reflectance: bool, indices: Mapping[str, str] | None = None, landsat: bool = False
) -> dict[str, dict[str, Any]]:
    """Per stored band: sensor, wavelength, bandwidth and GSD (``None`` where unknown), units, scale and offsets.

    Sentinel-2 bands are digital numbers (``units`` ``"DN"``, reflectance = (DN + offset) * ``scale``, the products'
    offset not applied) or, with ``reflectance``, surface reflectance with the offset applied. With ``landsat``, the
    bands are Landsat C2 L2's: reflectance = DN * ``scale`` + ``offset`` (2.75e-05, -0.2) for the reflectance bands. Sentinel-1 bands are
    linear backscatter (``units`` ``"linear"``: 10 * log10 gives dB). Indices are unitless ratios of reflectance.
    """
    out: dict[str, dict[str, Any]] = {}
    for band in bands:
        info = LANDSAT_BANDS.get(band) if landsat else band_info(band)
        sensor = LS if landsat else info.sensor if info is not None else band_sensor(band)
        entry: dict[str, Any] = {
            "sensor": {S1: "sentinel-1", S2: "sentinel-2", LS: "landsat"}[sensor],
            "common_name": info.common_name if info else None,
            "wavelength_nm": round(info.wavelength_nm, 1) if info else None,
            "bandwidth_nm": info.bandwidth_nm if info else None,
            "gsd_m": info.gsd_m if info else None,
        }
        if sensor == S1:
            entry.update(units="linear", scale=1.0, offset_applied=True, db=False)
        elif sensor == LS and band not in LANDSAT_REFLECTANCE:  # lwir11 (kelvin when scaled), qa_pixel (bits)
            entry.update(units="scaled" if reflectance else "DN", scale=1.0, offset_applied=reflectance)
        elif sensor == LS and not reflectance:
            entry.update(units="DN", scale=LANDSAT_SCALE, offset=LANDSAT_OFFSET, offset_applied=False)
        elif reflectance:
            entry.update(units="reflectance", scale=1.0, offset_applied=True)
        else:
            entry.update(units="DN", scale=1e-4, offset_applied=False)
        out[band] = entry
    for name, expression in sorted((indices or {}).items()):
        out[name] = {"sensor": None, "index": expression, "units": "1", "scale": 1.0, "offset_applied": True}
    return out
