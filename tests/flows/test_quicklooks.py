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


def _farthest(index: gpd.GeoDataFrame, picked: gpd.GeoDataFrame, size: float = 640.0) -> float:
    """How far the patch farthest from every pick lies from its nearest one, in patch widths."""
    centres = np.column_stack([index.geometry.centroid.x, index.geometry.centroid.y])
    chosen = np.column_stack([picked.geometry.centroid.x, picked.geometry.centroid.y])
    return float(np.sqrt(((centres[:, None] - chosen[None]) ** 2).sum(axis=2)).min(axis=1).max() / size)


def test_the_quicklooks_spread_over_the_aoi_not_down_one_column() -> None:
    """The demo's 9 x 7 patches: of 8 samples evenly spaced in the index's order, 7 were the last patches of 7
    rows, the AOI's east edge; spread along a Hilbert curve they leave no patch more than 2.3 patches away."""
    index = _grid_index(9, 7)
    picked = spread_over_the_aoi(index, 8)
    assert len(picked) == 8 and picked.index.is_unique and picked.index.is_monotonic_increasing
    assert picked["row"].nunique() >= 5 and picked["col"].nunique() >= 6, picked[["row", "col"]]
    assert _farthest(index, picked) < 2.3
    every_ninth = index.iloc[np.linspace(0, len(index) - 1, 8).astype(int)]  # what inspect drew before
    assert every_ninth["col"].nunique() == 2 and _farthest(index, every_ninth) > 5


def test_the_quicklooks_of_a_quarter_tile_reach_into_every_part_of_it() -> None:
    """A quarter tile's 42 x 42 patches: no 8 picks can leave every patch closer than about 11 patch widths to one
    (the best covering of a square by 8 discs); these leave 11.2. The middles of the Hilbert runs lay on the edges
    between the runs and left 15."""
    index = _grid_index(42, 42)
    picked = spread_over_the_aoi(index, 8)
    assert _farthest(index, picked) < 12
    along = np.argsort(index.geometry.hilbert_distance().to_numpy(), kind="stable")
    middles = index.iloc[along[((np.arange(8) + 0.5) * len(index) / 8).astype(int)]]  # the choice before
    assert _farthest(index, middles) > 14


def test_a_dataset_of_no_more_samples_than_asked_shows_them_all() -> None:
    index = _grid_index(3, 2)
    assert spread_over_the_aoi(index, 6).index.tolist() == list(range(6))
    assert spread_over_the_aoi(index, 64).index.tolist() == list(range(6))
