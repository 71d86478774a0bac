"""Text class columns of real parcel files become integer codes; the names are kept with them."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from eoshard.pipeline.classes import ClassColumnError, encode_classes
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.labels import UnclassifiedParcelsWarning, rasterize_labels
from tests.conftest import shared_path


def _slovenia() -> gpd.GeoDataFrame:
    return gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))


def test_text_names_get_codes_in_sorted_order_and_blank_is_background() -> None:
    parcels = _slovenia()
    codes, names = encode_classes(parcels["LULC_NAME"], column="LULC_NAME")
    assert names == {1: "artificial surface", 2: "cultivated land", 3: "forest", 4: "grassland", 5: "schrubland"}
    # the file's own LULC_ID and the names partition the parcels the same way; its blank name is LULC_ID 0
    pairs = set(zip(parcels["LULC_ID"], codes, strict=True))
    assert pairs == {(0, 0), (8, 1), (1, 2), (2, 3), (3, 4), (4, 5)}
    assert codes.dtype == np.int64


def test_integer_codes_pass_unchanged() -> None:
    parcels = _slovenia()
    codes, names = encode_classes(parcels["LULC_ID"])
    np.testing.assert_array_equal(codes, parcels["LULC_ID"].to_numpy())
    assert names == {}


def test_a_mapping_gives_the_codes_and_names_it_lacks_are_listed() -> None:
    lpis = gpd.read_file(shared_path("parcels", "fr_rpg_lpis_iacs_193parcels_epsg2154.gpkg"))
    mapping = {"MIS": 10, "BTH": 20}
    with pytest.raises(ClassColumnError, match=r"class column 'code_cultu' has 22 name\(s\) that labels.class_codes does not map "
                       r"\(e.g. \['AVP', 'BOR', 'BTA', 'BVF', 'CZH'\]; it maps \['BTH', 'MIS'\]\): add them to class_codes"):  # fmt: skip
        encode_classes(lpis["code_cultu"], mapping, "code_cultu")
    full = {name: 100 + i for i, name in enumerate(sorted(lpis["code_cultu"].unique()))} | mapping
    codes, names = encode_classes(lpis["code_cultu"], full, "code_cultu")
    assert int((codes == 10).sum()) == 59 and int((codes == 20).sum()) == 24  # 59 maize, 24 soft wheat parcels
    assert names[20] == "BTH" and len(names) == 24
    grouped = full | {"MIS": 20, "AVP": 20}  # maize, soft wheat and another crop in one class, named by all three
    codes, names = encode_classes(lpis["code_cultu"], grouped, "code_cultu")
    avp = int((lpis["code_cultu"] == "AVP").sum())
    assert names[20] == "AVP | BTH | MIS" and 10 not in names and int((codes == 20).sum()) == 59 + 24 + avp > 83


def test_a_categorical_column_reads_as_its_values() -> None:
    """GeoParquet's dictionary columns come back as pandas categoricals; a missing one crashed the fill with ''."""
    text = pd.Series(["maize", None, "wheat", "maize"], dtype="category")
    codes, names = encode_classes(text, column="crop")
    assert codes.tolist() == [1, 0, 2, 1] and names == {1: "maize", 2: "wheat"}
    numbers = pd.Series([3, 5, 3], dtype="category")
    assert encode_classes(numbers)[0].tolist() == [3, 5, 3] and encode_classes(numbers)[1] == {}
    with pytest.raises(ClassColumnError, match=r"class column 'crop' is empty for 1 parcel"):
        encode_classes(pd.Series([3, None, 5], dtype="category"), column="crop")


def test_negative_codes_are_refused() -> None:
    with pytest.raises(ClassColumnError, match=r"class column 'c' holds negative codes \(e.g. \[-3, -1\]\)"):
        encode_classes(pd.Series([2, -1, -3, 0]), column="c")


def test_non_integer_numbers_are_refused_with_advice() -> None:
    with pytest.raises(ClassColumnError, match=r"holds non-integer numbers \(e.g. \[0.5\]\)"):
        encode_classes(pd.Series([1.0, 0.5, 2.0]), column="c")


def test_lists_or_objects_are_refused() -> None:
    """A GeoJSON property may hold a list: it became the class name "[1, 2]" and renumbered the integer codes."""
    with pytest.raises(
        ClassColumnError,
        match=r"'c' holds lists or objects, not single values \(e.g. \['\[1, 2\]', \"\{'a': 3\}\"\]\)",
    ):
        encode_classes(pd.Series([2, [1, 2], {"a": 3}, 5]), column="c")


def test_a_text_class_column_rasterizes() -> None:
    """The issue's case: `crop: wheat` ended in `ValueError: invalid literal for int()`."""
    parcels = _slovenia()
    area = parcels.geometry.union_all().envelope
    grid = grid_for_area(area, parcels.crs, resolution=10)
    said = r"^4 of the 88 parcels on the grid have no class in column '(LULC_NAME|code)'"  # LULC_ID 0, no name
    with pytest.warns(UnclassifiedParcelsWarning, match=said):
        layers = rasterize_labels(parcels, grid, class_column="LULC_NAME", chunksize=256)
    with pytest.warns(UnclassifiedParcelsWarning, match=said):
        by_id = rasterize_labels(parcels.assign(code=parcels["LULC_ID"].map({0: 0, 8: 1, 1: 2, 2: 3, 3: 4, 4: 5})),
                                 grid, class_column="code", chunksize=256)  # fmt: skip
    np.testing.assert_array_equal(layers["class"].values, by_id["class"].values)
    assert set(np.unique(layers["class"].values)) <= {0, 1, 2, 3, 4, 5}
