"""Real recorded items of Earth Search v1/c1 and Planetary Computer read end to end through the cube.

Each item keeps its recorded metadata; only the hrefs point at local files written exactly as the assets
declare (tests/real_items.py). Values are checked against rasterio reads of those files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import from_bounds

from eoshard.pipeline.assets import GeorefMismatchError, check_asset_georef, check_assets, read_asset_georef
from eoshard.pipeline.bands import canonical_assets, canonical_band, canonical_keys
from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.errors import BandError, PipelineError, UnsupportedProductError
from eoshard.pipeline.items import stackstac_ready
from eoshard.pipeline.landsat import QA_PIXEL_INVALID, qa_bits
from eoshard.pipeline.masks import open_qa_valid_mask
from eoshard.pipeline.reflectance import Radiometry, radiometry_of
from eoshard.pipeline.sensors import sensor_bands
from tests.real_items import localise, recorded_item, window_grid

C1 = ("earth-search__sentinel-2-c1-l2a", "S2B_T32VKL_20250717T112116_L2A")
V1 = ("earth-search__sentinel-2-l2a", "S2B_32VKL_20250717_0_L2A")
PC_OLD = ("planetarycomputer__sentinel-2-l2a", "S2A_MSIL2A_20190101T000001_N0212_R116_T58UFE_20201007T214651.SAFE")
PC_NEW = ("planetarycomputer__sentinel-2-l2a", "S2A_MSIL2A_20240228T025651_R032_T53VML_20240228T071454")


def _read(path: str, grid) -> np.ndarray:  # type: ignore[no-untyped-def]
    with rasterio.open(path) as ds:
        return ds.read(1, window=from_bounds(*grid.extent.boundingbox, transform=ds.transform))


@pytest.mark.parametrize(
    ("request_name", "band"),
    [("red", "B04"), ("B04", "B04"), ("b4", "B04"), ("nir", "B08"), ("nir08", "B8A"), ("swir16", "B11"),
     ("scl", "SCL"), ("visual", "TCI"), ("vv", "vv")],
)  # fmt: skip
def test_requested_names_map_to_one_vocabulary(request_name: str, band: str) -> None:
    assert canonical_band(request_name) == band


def test_each_catalog_convention_gets_the_canonical_keys() -> None:
    c1 = canonical_keys(recorded_item(*C1)["assets"])
    assert c1 == {
        "AOT": "aot", "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
        "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B09": "nir09", "B11": "swir16", "B12": "swir22",
        "B8A": "nir08", "SCL": "scl", "TCI": "visual", "WVP": "wvp",
    }  # fmt: skip
    pc = canonical_keys(recorded_item(*PC_OLD)["assets"])
    # Planetary Computer: native-resolution keys win over the resampled copies (B04 over B04_20m, SCL-20m)
    assert (pc["B04"], pc["B05"], pc["SCL"], pc["AOT"], pc["TCI"]) == (
        "B04",
        "B05",
        "SCL-20m",
        "AOT-10m",
        "visual-10m",
    )


@pytest.mark.parametrize("recorded", [C1, V1])
def test_earth_search_red_and_b04_give_the_same_bytes(recorded: tuple[str, str], tmp_path: Path) -> None:
    item = recorded_item(*recorded)
    grid = window_grid(item, "red", 5000, 5000, 64)
    local = localise(item, ["red", "nir", "scl"], tmp_path, grid)
    by_common = {
        k: v.compute(scheduler="synchronous") for k, v in open_cube([local], grid, ["red", "nir", "scl"]).items()
    }
    by_id = {
        k: v.compute(scheduler="synchronous") for k, v in open_cube([local], grid, ["B04", "B08", "SCL"]).items()
    }
    assert list(by_common) == ["s2_10m", "s2_20m"]
    assert list(by_common["s2_10m"].band.values) == ["B04", "B08"]
    for name in by_common:
        assert by_common[name].values.tobytes() == by_id[name].values.tobytes()
    expected = _read(local["assets"]["red"]["href"], grid)
    np.testing.assert_array_equal(by_common["s2_10m"].values[0, 0], expected)
    assert (expected != 0).all()


@pytest.mark.parametrize("recorded", [C1, V1])
def test_earth_search_reflectance_is_dn_times_scale_plus_offset(recorded: tuple[str, str], tmp_path: Path) -> None:
    """The issue's case: 1866 read as 'red' with reflectance on must be 0.0866, not 1866.0."""
    item = recorded_item(*recorded)
    assert radiometry_of(item, "red").scale == 0.0001 and radiometry_of(item, "red").offset == -0.1
    grid = window_grid(item, "red", 5000, 5000, 32)
    local = localise(item, ["red"], tmp_path, grid)
    cube = open_cube([local], grid, ["red"], reflectance=True)["s2_10m"].compute(scheduler="synchronous")
    dn = _read(local["assets"]["red"]["href"], grid).astype(np.float64)
    assert cube.attrs["units"] == "reflectance" and cube.dtype == np.float32
    assert int(cube.boa_offset.values[0]) == -1000
    np.testing.assert_array_equal(cube.values[0, 0], ((dn - 1000) / 10_000).astype(np.float32))
    np.testing.assert_allclose(cube.values[0, 0], dn * 0.0001 - 0.1, rtol=0, atol=1e-7)
    assert np.float32((1866 - 1000) / 10_000) == np.float32(0.0866)


@pytest.mark.parametrize(("recorded", "offset"), [(PC_OLD, 0), (PC_NEW, -1000)])
def test_planetary_computer_offset_comes_from_the_baseline(
    recorded: tuple[str, str], offset: int, tmp_path: Path
) -> None:
    item = recorded_item(*recorded)
    assert "raster:bands" not in item["assets"]["B04"]  # Planetary Computer declares no scale/offset
    grid = window_grid(item, "B04", 3000, 3000, 32)
    local = localise(item, ["B04"], tmp_path, grid)
    cube = open_cube([local], grid, ["red"], reflectance=True)["s2_10m"].compute(scheduler="synchronous")
    dn = _read(local["assets"]["B04"]["href"], grid).astype(np.float32)
    assert int(cube.boa_offset.values[0]) == offset
    np.testing.assert_array_equal(cube.values[0, 0], (dn + np.float32(offset)) / np.float32(10_000))


def test_a_product_off_the_grid_does_not_break_the_stack(tmp_path: Path) -> None:
    """The issue's AlignmentError {1, 2}: stackstac dropped the product outside and the labels went wrong."""
    inside = recorded_item(*C1)
    grid = window_grid(inside, "red", 5000, 5000, 32)
    local = localise(inside, ["red"], tmp_path, grid)
    outside = recorded_item("earth-search__sentinel-2-c1-l2a", "S2B_T34RCT_20240517T091933_L2A")  # Libya
    outside["assets"]["red"]["href"] = str(tmp_path / "never-read.tif")
    cube = open_cube([local, outside], grid, ["red"])["s2_10m"].compute(scheduler="synchronous")
    assert list(cube.acquisition.values) == ["sentinel-2b_2024-05-17_R", "sentinel-2b_2025-07-17_R"]
    assert (cube.values[0] == 0).all()  # the product off the grid gives a nodata step, as one missing part of it
    np.testing.assert_array_equal(cube.values[1, 0], _read(local["assets"]["red"]["href"], grid))


def test_a_file_in_another_crs_than_its_item_is_named(tmp_path: Path) -> None:
    """The issue's silent case: the COG says EPSG:32633 while the item says 32632."""
    item = recorded_item(*C1)
    grid = window_grid(item, "red", 5000, 5000, 32)
    local = localise(item, ["red", "nir"], tmp_path, grid)
    read_asset_georef(local, "red")  # as declared: no error
    with rasterio.open(local["assets"]["red"]["href"], "r+") as ds:
        ds.crs = CRS.from_epsg(32633)
    href = local["assets"]["red"]["href"]
    with pytest.raises(GeorefMismatchError) as caught:
        check_assets([canonical_assets(local)], ["B08", "B04"])
    assert str(caught.value) == (
        f"product S2B_T32VKL_20250717T112116_L2A asset B04 ({href}): the item says EPSG:32632, the file says "
        "EPSG:32633; its pixels would land in the wrong place: fix the item's proj:* fields (or the file), or "
        "leave the product out"
    )
    assert isinstance(caught.value, ValueError)


def test_a_transform_or_shape_unlike_the_items_is_named() -> None:
    item = recorded_item(*C1)
    declared = Affine(*item["assets"]["red"]["proj:transform"][:6])
    check_asset_georef(item, "red", "EPSG:32632", declared, (10980, 10980))
    with pytest.raises(GeorefMismatchError, match=(
        r"asset red \(.*B04.tif\): the item says transform \(10.0, 0.0, 199980.0, 0.0, -10.0, 6600000.0\), "
        r"shape \(10980, 10980\), the file says transform \(10.0, 0.0, 200000.0, 0.0, -10.0, 6600000.0\), "
        r"shape \(10978, 10980\);"
    )):  # fmt: skip
        check_asset_georef(item, "red", "EPSG:32632", declared * Affine.translation(2, 0), (10978, 10980))


CDSE = ("cdse__sentinel-2-l2a", "S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH_20230612T214223")


def test_cdse_stac_1_1_fields_are_read_as_the_stac_1_0_ones() -> None:
    """CDSE declares ``raster:scale``/``raster:offset``/``nodata``/``data_type`` and ``proj:code`` on each asset."""
    item = recorded_item(*CDSE)
    keys = canonical_keys(item["assets"])
    assert (keys["B04"], keys["B8A"], keys["SCL"], keys["B01"]) == ("B04_10m", "B8A_20m", "SCL_20m", "B01_20m")
    ready = stackstac_ready(item)
    assert ready["properties"]["proj:epsg"] == 32636
    assert ready["assets"]["B04"]["raster:bands"] == [
        {"scale": 0.0001, "offset": -0.1, "nodata": 0, "data_type": "uint16"}
    ]
    assert ready["assets"]["SCL"]["raster:bands"] == [{"nodata": 0, "data_type": "uint8"}]
    assert radiometry_of(ready, "B04") == Radiometry(0.0001, -0.1, "raster:bands")
    assert "raster:bands" not in item["assets"]["B04_10m"]  # the caller's item is left as it was


def test_an_item_whose_assets_disagree_on_the_crs_is_refused_by_name() -> None:
    item = recorded_item(*CDSE)
    item["assets"]["B08_10m"]["proj:code"] = "EPSG:32637"
    with pytest.raises(PipelineError, match=r"S2B_MSIL2A_20200322.*its assets declare \[32636, 32637\]"):
        stackstac_ready(item)


LANDSAT = ("landsat-c2-l2", "LC09_L2SP_010065_20220129_02_T1")


def test_landsat_bands_resolve_as_landsat_names_them() -> None:
    """``red``, ``SR_B4``, ``B4`` and ``B04`` (how a config stores ``red``) are Landsat's red; ``nir`` (Sentinel-2
    B08) has no Landsat counterpart and is refused; a Sentinel-2 product keeps ``red`` as ``B04``."""
    landsat = [stackstac_ready(recorded_item(*LANDSAT))]
    assert [sensor_bands(landsat, [b])[0] for b in ("red", "SR_B4", "B4", "B04")] == ["red"] * 4
    assert sensor_bands(landsat, ["B04", "B8A", "SR_B6", "swir22", "QA_PIXEL"]) == [
        "red", "nir08", "swir16", "swir22", "qa_pixel"
    ]  # fmt: skip
    with pytest.raises(BandError, match=r"band 'B08' is Sentinel-2 B08, which Landsat C2 L2 has no counterpart"):
        sensor_bands(landsat, ["B08"])
    with pytest.raises(BandError, match=r"\['SR_B4 \(red\)', 'red \(red\)'\] name the same Landsat band twice"):
        sensor_bands(landsat, ["red", "SR_B4"])
    sentinel = [stackstac_ready(recorded_item("earth-search-v0", "S2B_32VKL_20250717_0_L2A"))]
    assert sensor_bands(sentinel, ["red", "nir08"]) == ["B04", "B8A"]
    assert "B04" not in landsat[0]["assets"]  # no Sentinel-2 key beside a Landsat asset
    assert radiometry_of(landsat[0], "red") == Radiometry(2.75e-05, -0.2, "raster:bands")


def test_landsat_and_sentinel_2_products_are_refused_together() -> None:
    landsat = recorded_item(*LANDSAT)
    sentinel = recorded_item("earth-search-v0", "S2B_32VKL_20250717_0_L2A")
    grid = window_grid(landsat, "red", 4000, 4000, 64)
    with pytest.raises(UnsupportedProductError, match=(
        r"1 of the 2 products are Landsat scenes \(e.g. LC09_L2SP_010065_20220129_02_T1\) and 1 are Sentinel-2 "
        r"products \(e.g. S2B_32VKL_20250717_0_L2A\): expected products of one sensor.*build each sensor's"
    )):  # fmt: skip
        open_cube([landsat, sentinel], grid, ["red"])


def test_landsat_lazy_cube_reads_dn_reflectance_and_the_qa_pixel_mask(tmp_path: Path) -> None:
    """The cube API on Landsat: a lazy ``ls_30m`` group of the files' values, reflectance = DN * 2.75e-05 - 0.2
    (``raster:bands``), and the QA_PIXEL mask (fill, dilated cloud, cirrus, cloud, shadow) from the bits."""
    item = recorded_item(*LANDSAT)
    grid = window_grid(item, "red", 4000, 4000, 64)
    local = localise(item, ["red", "nir08", "qa_pixel"], tmp_path, grid)
    cubes = open_cube([local], grid, ["SR_B4", "nir08"], chunksize=64)
    cube = cubes["ls_30m"]
    assert list(cubes) == ["ls_30m"] and list(cube.band.values) == ["red", "nir08"] and cube.chunks is not None
    with rasterio.open(local["assets"]["red"]["href"]) as src:
        dn = src.read(1, window=from_bounds(*grid.extent.boundingbox, transform=src.transform))
    with rasterio.open(local["assets"]["qa_pixel"]["href"]) as src:
        qa = src.read(1, window=from_bounds(*grid.extent.boundingbox, transform=src.transform))
    np.testing.assert_array_equal(cube.isel(time=0).sel(band="red").values, dn)
    reflectance = open_cube([local], grid, ["red"], chunksize=64, reflectance=True)["ls_30m"]
    assert reflectance.dtype == np.float32
    np.testing.assert_allclose(reflectance.isel(time=0, band=0).values, dn * 2.75e-05 - 0.2, rtol=0, atol=1e-7)
    valid = open_valid_mask_of_landsat(local, grid)
    cloudy = (qa & 0b11111) != 0  # independently: bits 0-4
    assert cloudy.any() and (~cloudy).any()
    np.testing.assert_array_equal(valid.isel(time=0).values, ~cloudy)


def open_valid_mask_of_landsat(local: dict[str, Any], grid: Any) -> Any:
    return open_qa_valid_mask([local], grid, qa_bits(QA_PIXEL_INVALID), chunksize=64)
