"""Patch grids, labelled windows and parcel-centred windows on a small UTM grid."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
from odc.geo.geobox import GeoBox

from eoshard.pipeline.errors import GridError
from eoshard.pipeline.patches import labelled_fractions, parcel_centred, patch_grid, select_labelled, stripe_order

GRID = GeoBox.from_bbox((500000, 4000000, 501200, 4000600), "EPSG:32633", resolution=10)  # 60 x 120 px


def test_patch_grid_covers_whole_windows_with_keys_from_geometry() -> None:
    patches = patch_grid(GRID, 24, 12, align=6)
    assert [(p.row, p.col) for p in patches[:3]] == [(0, 0), (0, 12), (0, 24)]
    assert len(patches) == 4 * 9  # rows 0..36 step 12, cols 0..96 step 12
    assert patches[1].key == "32633_10_500120_4000600"
    assert patches[1].window(6) == (slice(0, 4), slice(2, 6))
    with pytest.raises(GridError, match="multiples of 6 px"):
        patch_grid(GRID, 20, align=6)


def _parcels(*boxes: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"class": list(range(1, len(boxes) + 1))}, geometry=[shapely.box(*b) for b in boxes], crs=32633
    )


def test_labelled_windows_need_the_minimum_share_of_parcels() -> None:
    patches = patch_grid(GRID, 30)  # 2 x 4 windows of 300 m
    # covers the first window fully and a quarter of the second (x 500300..500375 of 500300..500600)
    parcels = _parcels((500000, 4000300, 500375, 4000600))
    fractions = labelled_fractions(patches, parcels)
    assert fractions.tolist() == [1.0, 0.25, 0, 0, 0, 0, 0, 0]
    assert [p.key for p in select_labelled(patches, parcels, 0.0)] == [patches[0].key, patches[1].key]
    assert [p.key for p in select_labelled(patches, parcels, 0.5)] == [patches[0].key]


def test_parcel_centred_windows_snap_to_the_coarsest_grid_and_stay_inside() -> None:
    parcels = _parcels(
        (500500, 4000200, 500540, 4000260),  # centre (500520, 4000230): col 52, row 37
        (500000, 4000580, 500020, 4000600),  # at the top-left corner: moved inside
        (500505, 4000205, 500535, 4000255),  # same window as the first
        (600000, 4000000, 600010, 4000010),  # outside the grid: no window
    )
    patches = parcel_centred(GRID, parcels, 24, align=6)
    assert [(p.row, p.col) for p in patches] == [(0, 0), (24, 42)]
    # the first parcel's centre (row 37, col 52) lies inside its window, at most half a coarse pixel off centre
    first = patches[1]
    assert first.row <= 37 < first.row + 24 and first.col <= 52 < first.col + 24
    assert all(p.row % 6 == 0 and p.col % 6 == 0 for p in patches)


def test_stripe_order_walks_down_stripes_aligned_to_the_blocks() -> None:
    grid = GeoBox.from_bbox((0, 0, 100, 40), "EPSG:32632", resolution=10)  # 4 x 10 px
    patches = patch_grid(grid, 2)  # 2 rows x 5 columns of 2 px patches
    assert stripe_order(patches, grid.shape[1], width=20) == patches  # one stripe: row-major order kept
    ordered = stripe_order(patches, grid.shape[1], width=4, offset=2)  # stripe edges at columns 2 and 6
    assert [(p.row, p.col) for p in ordered] == [
        (0, 0), (2, 0),  # columns -2..1
        (0, 2), (0, 4), (2, 2), (2, 4),  # columns 2..5, top to bottom
        (0, 6), (0, 8), (2, 6), (2, 8),  # columns 6..9
    ]  # fmt: skip
    assert sorted(ordered, key=lambda p: (p.row, p.col)) == patches
