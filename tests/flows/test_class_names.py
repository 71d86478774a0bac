"""The class names a dataset records, from the real parcel files' class and name columns."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from eoshard.flows.label_files import class_names
from tests.conftest import shared_path


def test_a_name_column_names_the_codes_of_a_text_class_column() -> None:
    """Austria's crop codes are text ("109"): codes 1, 2, ... in text order, named by SNAR_BEZEICHNUNG (they were
    named "109", "110", ..., the name column ignored)."""
    at = gpd.read_file(shared_path("parcels", "fiboa", "at", "inspire_schlaege_2025-1_polygon.gpkg.zip"))
    names = class_names(at, "SNAR_CODE", "SNAR_BEZEICHNUNG", None)
    texts = sorted(at["SNAR_CODE"].dropna().astype(str).str.strip().unique())
    expected = at.drop_duplicates("SNAR_CODE").set_index("SNAR_CODE")["SNAR_BEZEICHNUNG"]
    assert names == {str(i): expected[t] for i, t in enumerate(texts, start=1)}
    assert names["1"] == "SILOMAIS" and expected.index[expected == "SILOMAIS"].tolist() == ["109"]
    assert class_names(at, "SNAR_CODE", None, None)["1"] == "109"  # no name column: the text names its code


def test_a_code_named_two_ways_takes_the_name_most_parcels_give() -> None:
    si = gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))
    assert class_names(si, "LULC_ID", "LULC_NAME", None) == {
        "1": "cultivated land", "2": "forest", "3": "grassland", "4": "schrubland", "8": "artificial surface",
    }  # fmt: skip
    forest = si.index[si["LULC_ID"] == 2]
    renamed = si.copy()
    renamed.loc[forest[:1], "LULC_NAME"] = "woods"  # one parcel of code 2 says "woods", the others "forest"
    assert class_names(renamed, "LULC_ID", "LULC_NAME", None)["2"] == "forest"
    tie = pd.DataFrame({"c": [5, 5], "n": ["b", "a"]})
    assert class_names(tie, "c", "n", None) == {"5": "a"}


def test_the_background_code_is_never_named_after_a_class() -> None:
    """Parcels of integer code 0 are background: their name column ("winter_wheat") named every background pixel."""
    parcels = pd.DataFrame({"c": [0, 0, 1, 1], "n": ["winter_wheat", "winter_wheat", "maize", "maize"]})
    assert class_names(parcels, "c", "n", None) == {"1": "maize"}
