"""The band table and how ``band_metadata`` describes stored values (digital numbers, reflectance, indices, SAR)."""

from __future__ import annotations

import pytest

from eoshard.pipeline.bandinfo import BANDS, band_info, band_metadata
from eoshard.pipeline.shards.describe import manifest_band_metadata


def test_every_sentinel2_band_has_a_wavelength_inside_the_msi_range_and_its_native_gsd() -> None:
    s2 = {name: info for name, info in BANDS.items() if info.sensor == "s2"}
    assert list(s2) == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    wavelengths = [info.wavelength_nm for info in s2.values()]
    assert wavelengths == sorted(wavelengths) and wavelengths[0] > 440 and wavelengths[-1] < 2210
    assert {n for n, i in s2.items() if i.gsd_m == 10} == {"B02", "B03", "B04", "B08"}
    assert {n for n, i in s2.items() if i.gsd_m == 60} == {"B01", "B09", "B10"}


def test_sentinel1_polarisations_share_the_c_band_wavelength_in_any_case() -> None:
    vv, vh = band_info("vv"), band_info("VH")
    assert vv is not None and vh is not None
    assert vv.wavelength_nm == vh.wavelength_nm == pytest.approx(55.4656e6, rel=1e-4)  # 5.405 GHz
    assert (vv.gsd_m, vv.bandwidth_nm) == (10.0, None)
    assert band_info("red") is None


def test_digital_numbers_reflectance_indices_and_unknown_bands() -> None:
    dn = band_metadata(["B04", "vv", "red"], reflectance=False)
    assert (dn["B04"]["units"], dn["B04"]["scale"], dn["B04"]["offset_applied"]) == ("DN", 1e-4, False)
    assert (dn["vv"]["sensor"], dn["vv"]["units"], dn["vv"]["db"]) == ("sentinel-1", "linear", False)
    assert (dn["red"]["wavelength_nm"], dn["red"]["units"]) == (None, "DN")
    refl = band_metadata(["B04"], reflectance=True, indices={"ndvi": "(B08 - B04) / (B08 + B04)"})
    assert (refl["B04"]["units"], refl["B04"]["offset_applied"]) == ("reflectance", True)
    assert list(refl) == ["B04", "ndvi"] and refl["ndvi"]["index"] == "(B08 - B04) / (B08 + B04)"


def test_the_manifest_says_reflectance_by_the_dtype_of_its_image_groups() -> None:
    groups = {"s2_10m": {"dtype": "float32"}, "indices": {"dtype": "float32", "expressions": {"ndvi": "ndvi"}}}
    described = manifest_band_metadata({"bands": ["B04"], "groups": groups})
    assert (described["B04"]["units"], described["ndvi"]["units"]) == ("reflectance", "1")
    dn = {"s2_10m": {"dtype": "uint16"}, "indices": {"dtype": "float32", "expressions": {"ndvi": "ndvi"}}}
    assert manifest_band_metadata({"bands": ["B04"], "groups": dn})["B04"]["units"] == "DN"
