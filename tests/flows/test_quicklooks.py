"""Quicklooks colour each class code the same way in every panel, the background grey, with a legend."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
from shapely.geometry import box

from eoshard.flows.quicklooks import _BACKGROUND_COLOUR, ClassColours, spread_over_the_aoi

LABELS = {"background": 0, "classes": {"3": "maize"}, "class_counts": {"0": 5, "3": 7, "101": 2}}


def test_codes_that_are_not_contiguous_get_their_own_colours() -> None:
    colours = ClassColours(LABELS)
    assert colours.codes.tolist() == [0, 3, 101]
    assert colours.indices(np.array([[101, 0], [3, 3]])).tolist() == [[2, 0], [1, 1]]
    assert colours.colours[0] == _BACKGROUND_COLOUR
    assert len(set(colours.colours)) == 3


def test_the_legend_names_each_code_and_the_background() -> None:
    labels = [patch.get_label() for patch in ClassColours(LABELS).legend()]
    assert labels == ["0 background", "3 maize", "101"]


def test_a_named_class_without_pixels_keeps_its_place_in_the_legend() -> None:
    labels = {**LABELS, "classes": {"3": "maize", "7": "rice"}}
    assert [patch.get_label() for patch in ClassColours(labels).legend()] == [
        "0 background",
        "3 maize",
        "7 rice",
        "101",
    ]


def _grid_index(cols: int, rows: int, size: float = 640.0) -> gpd.GeoDataFrame:
    """An index as the build writes it: patches row by row from the north-west, footprints in a UTM zone."""
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    footprints = [box(720240 + c * size, 5324600 - r * size, 720240 + (c + 1) * size, 5325240 - r * size)
                  for r, c in cells]  # fmt: skip
    return gpd.GeoDataFrame({"row": [r for r, _ in cells], "col": [c for _, c in cells]}, geometry=footprints,
                            crs="EPSG:32632")  # fmt: skip


def test_the_quicklooks_spread_over_the_aoi_not_down_one_column() -> None:
    """The demo's 9 x 7 patches: of 8 samples evenly spaced in the index's order, 7 were the last patches of 7
    rows, the AOI's east edge; spread along a Hilbert curve they reach most rows and columns."""
    index = _grid_index(9, 7)
    picked = spread_over_the_aoi(index, 8)
    assert len(picked) == 8 and picked.index.is_unique and picked.index.is_monotonic_increasing
    assert picked["row"].nunique() >= 6 and picked["col"].nunique() >= 6, picked[["row", "col"]]
    every_ninth = index.iloc[np.linspace(0, len(index) - 1, 8).astype(int)]  # what inspect drew before
    assert every_ninth["col"].nunique() == 2


def test_a_dataset_of_no_more_samples_than_asked_shows_them_all() -> None:
    index = _grid_index(3, 2)
    assert spread_over_the_aoi(index, 6).index.tolist() == list(range(6))
    assert spread_over_the_aoi(index, 64).index.tolist() == list(range(6))
