"""Projection and raster fields of items checked where items enter the pipeline (``stackstac_ready``)."""

from __future__ import annotations

from typing import Any

import pytest

from eoshard.pipeline.item_fields import ItemFieldError
from eoshard.pipeline.items import prepare_items, stackstac_ready
from tests.real_items import recorded_item, recorded_items, window_grid

C1 = ("earth-search__sentinel-2-c1-l2a", "S2B_T32VKL_20250717T112116_L2A")
RECORDINGS = ["earth-search__sentinel-2-c1-l2a", "earth-search__sentinel-2-l2a", "earth-search__sentinel-2-l1c",
              "earth-search__sentinel-1-grd", "planetarycomputer__sentinel-2-l2a", "cdse__sentinel-2-l2a",
              "earth-search-v0", "landsat-c2-l2"]  # fmt: skip


def test_every_recorded_item_of_every_catalog_passes() -> None:
    counted = 0
    for name in RECORDINGS:
        for item in recorded_items(name):
            stackstac_ready(item)
            counted += 1
    assert counted == 35 + 33 + 31 + 42 + 460 + 1 + 14 + 1


REMEDY = (
    "; fix the item (a saved selection is JSON you can edit, or select again from a catalog that publishes it "
    "correctly), or leave the product out (its id under catalog.exclude in the config)"
)


@pytest.mark.parametrize(
    ("where", "value", "said"),
    [
        (("assets", "red", "proj:shape"), [1e65], "asset 'red': proj:shape [1e+65] is not [rows, columns] (2 whole "
         "numbers of 1 or more)"),
        (("assets", "red", "proj:shape"), [10980, 0], "asset 'red': proj:shape [10980, 0] is not [rows, columns] "
         "(2 whole numbers of 1 or more)"),
        (("assets", "red", "proj:shape"), True, "asset 'red': proj:shape True is not [rows, columns] (2 whole "
         "numbers of 1 or more)"),
        (("assets", "red", "proj:transform"), [], "asset 'red': proj:transform [] is not an affine transform (6 or 9 "
         "finite numbers: a, b, c, d, e, f[, 0, 0, 1])"),
        (("assets", "scl", "proj:transform"), [0, 0, 300000, 0, -20, 6600000], "asset 'scl': proj:transform [0, 0, "
         "300000, 0, -20, 6600000] has no area (a * e - b * d is 0)"),
        (("properties", "proj:bbox"), [1, 2, "3", 4], "proj:bbox [1, 2, '3', 4] is not a bounding box (4 or 6 finite "
         "numbers)"),
        (("assets", "red", "raster:bands"), {"scale": 0.01}, "asset 'red': raster:bands {'scale': 0.01} is not a list "
         "of objects (one per band of the file)"),
        (("assets", "red", "raster:bands"), [{"nodata": "none"}], "asset 'red': raster:bands[0].nodata 'none' is not "
         "a number (or 'nan', 'inf', '-inf')"),
        (("assets", "red", "raster:bands"), [{"scale": float("nan")}], "asset 'red': raster:bands[0].scale nan is not "
         "a finite number"),
        (("assets", "red", "raster:bands"), [{"data_type": "uint17"}], "asset 'red': raster:bands[0].data_type "
         "'uint17' is not one of cfloat32, cfloat64, cint16, cint32, float16, float32, float64, int16, int32, int64, "
         "int8, other, uint16, uint32, uint64, uint8"),
        (("assets", "red", "gsd"), -10, "asset 'red': gsd -10 is not a size in metres (a number above 0)"),
    ],
)  # fmt: skip
def test_a_broken_field_is_refused_by_product_field_and_value(
    where: tuple[str, ...], value: Any, said: str
) -> None:
    item = recorded_item(*C1)
    fields = item
    for key in where[:-1]:
        fields = fields[key]
    fields[where[-1]] = value
    with pytest.raises(ItemFieldError) as told:
        stackstac_ready(item)
    assert str(told.value) == f"product {C1[1]} {said}{REMEDY}"


def test_nodata_may_be_nan_as_the_raster_extension_allows() -> None:
    item = recorded_item(*C1)
    item["assets"]["red"]["raster:bands"][0]["nodata"] = "nan"
    assert stackstac_ready(item)["assets"]["B04"]["raster:bands"][0]["nodata"] == "nan"


def test_an_asset_of_several_bands_is_refused_only_when_read() -> None:
    """Earth Search's ``visual`` (TCI) file holds 3 bands: items that have one build from their other bands."""
    item = recorded_item(*C1)
    assert len(item["assets"]["visual"]["raster:bands"]) == 3
    grid = window_grid(item, "red", 0, 0, 64)
    assert [d["id"] for d in prepare_items([item], grid, ["B04"])] == [C1[1]]
    with pytest.raises(ItemFieldError) as told:
        prepare_items([item], grid, ["B04", "TCI"])
    assert str(told.value) == (
        f"product {C1[1]} asset 'TCI': raster:bands describes 3 bands, eoshard reads files of one band (name the "
        f"single-band assets in bands){REMEDY}"
    )


def test_an_hr_asset_whose_raster_bands_are_empty_is_refused(demo_data) -> None:
    """The paired HR source reads its items apart from the cube (stackstac's ValueError before)."""
    import json

    from affine import Affine
    from odc.geo.geobox import GeoBox

    from eoshard.pipeline.paired import open_paired

    items = json.loads(demo_data.hr.read_text())["features"]
    grid = GeoBox((64, 64), Affine(2.5, 0, 720240, 0, -2.5, 5325240), "EPSG:32632")
    assert open_paired(items, grid, ["green"]).shape == (1, 64, 64)
    items[1]["assets"]["green"]["raster:bands"] = []
    with pytest.raises(ItemFieldError) as told:
        open_paired(items, grid, ["green"])
    assert str(told.value) == (
        f"product {items[1]['id']} asset 'green': raster:bands describes 0 bands, eoshard reads files of one band "
        f"(name the single-band assets in bands){REMEDY}"
    )
