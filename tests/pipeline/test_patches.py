"""Patch grids, labelled windows and parcel-centred windows on a small UTM grid."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
from odc.geo.geobox import GeoBox

from eoshard.pipeline.errors import GridError
from eoshard.pipeline.grid import grid_for_area, group_factor, group_grid, zoom_factor
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


def test_group_grids_nest_and_a_patch_knows_its_window_in_each() -> None:
    base = GeoBox.from_bbox((600_000, 5_000_000, 601_200, 5_000_720), "EPSG:32633", resolution=10)
    assert base.shape == (72, 120)
    g20, g60, g2_5 = group_grid(base, 20.0), group_grid(base, 60.0), group_grid(base, 2.5)
    assert (g20.shape, g60.shape, g2_5.shape) == ((36, 60), (12, 20), (288, 480))
    assert g60.transform.c == base.transform.c and g60.transform.f == base.transform.f
    assert group_grid(base, 10.0) is base
    assert (zoom_factor(base, 60.0), zoom_factor(base, 2.5), group_factor(base, g20)) == (6.0, 0.25, 2)
    with pytest.raises(GridError, match="a 15 m group does not nest in the 10 m grid"):
        group_grid(base, 15.0)
    with pytest.raises(GridError, match=r"the 72 x 125 px grid at 10 m holds no whole number of 60 m pixels"):
        group_grid(GeoBox.from_bbox((600_000, 5_000_000, 601_250, 5_000_720), "EPSG:32633", resolution=10), 60.0)
    aoi = shapely.box(10.0, 50.0, 10.013, 50.011)
    assert group_grid(grid_for_area(aoi), 60.0).shape == (22, 17)  # the default 60 m alignment: 132 x 102 px
    with pytest.raises(GridError, match=r"the 125 x 95 px grid .* alignment at a multiple of 60 m"):
        group_grid(grid_for_area(aoi, alignment=50), 60.0)
    (patch,) = [p for p in patch_grid(base, 12, align=6) if (p.row, p.col) == (24, 36)]
    assert patch.window_in(base) == patch.window(1) == (slice(24, 36), slice(36, 48))
    assert patch.window_in(g20) == patch.window(2) == (slice(12, 18), slice(18, 24))
    assert patch.window_in(g60) == patch.window(6) == (slice(4, 6), slice(6, 8))
    assert patch.window_in(g2_5) == (slice(96, 144), slice(144, 192))
    assert g2_5[patch.window_in(g2_5)].extent == patch.geobox.extent  # the same ground, 4 x 4 finer
    with pytest.raises(GridError, match="does not cover whole pixels of the 60 m grid"):
        patch_grid(base, 12, stride=4)[1].window_in(g60)  # starts at column 4: 40 m, not a whole 60 m pixel


def test_extract_patches_cuts_any_nested_grid_and_each_window_carries_its_grid() -> None:
    import dask.array as da
    import numpy as np
    import xarray as xr
    from odc.geo.xr import xr_coords

    from eoshard.pipeline import attach_grid, extract_patches, grid_of

    base = GeoBox.from_bbox((600_000, 5_000_000, 601_200, 5_000_720), "EPSG:32633", resolution=10)
    g20 = group_grid(base, 20.0)
    coords = xr_coords(g20)
    values = np.arange(36 * 60, dtype=np.uint16).reshape(36, 60)
    cube = xr.DataArray(
        da.from_array(values, chunks=8), dims=("y", "x"), coords={"y": coords["y"], "x": coords["x"]}
    )
    cube = attach_grid(cube, g20)
    assert grid_of(cube) == g20
    patches = patch_grid(base, 12, align=2)
    windows = extract_patches(cube, patches)
    assert len(windows) == len(patches) == 60 and windows[7].chunks is not None  # lazy
    for patch, window in zip(patches[:13], windows[:13], strict=True):
        assert window.odc.geobox.extent == patch.geobox.extent and window.shape == (6, 6)
        np.testing.assert_array_equal(window.values, values[patch.window(2)])
    with pytest.raises(GridError, match="the values carry no grid"):
        grid_of(xr.DataArray(values, dims=("y", "x")))
    elsewhere = GeoBox.from_bbox((601_200, 5_000_000, 602_400, 5_000_720), "EPSG:32633", resolution=10)
    beside = patch_grid(elsewhere, 12, align=2)  # the next grid east: whole 20 m pixels, none of them in ``cube``
    with pytest.raises(
        GridError, match=r"patch 32633_10_601200_5000720 lies outside the 36 x 60 px grid .*columns 60\.\.66"
    ):
        extract_patches(cube, beside[:1])
    straddling = patch_grid(
        GeoBox.from_bbox((601_080, 5_000_000, 601_320, 5_000_720), "EPSG:32633", resolution=10), 24
    )
    with pytest.raises(GridError, match=r"lies outside .*columns 54\.\.66"):
        extract_patches(cube, straddling[:1])


@pytest.mark.parametrize(
    ("area", "kwargs", "message"),
    [
        # the real French parcels' EPSG:3035 bounds, given without their CRS (read as degrees, an infinite grid)
        (shapely.box(4465929, 2766390, 4473597, 2772763), {}, r"are not longitude and latitude, as its CRS EPSG"),
        (shapely.box(11.9, 48.0, 12.0, 48.04), {"crs": "EPSG:4326"}, r"is not projected in metres .*degrees"),
    ],
)
def test_grid_for_area_refuses_coordinates_and_grids_that_are_not_what_they_say(
    area: shapely.Geometry, kwargs: dict[str, str], message: str
) -> None:
    from eoshard.pipeline import grid_for_area

    with pytest.raises(GridError, match=message):
        grid_for_area(area, **kwargs)  # type: ignore[arg-type]
    grid = grid_for_area(shapely.box(4465929, 2766390, 4473597, 2772763), "EPSG:3035")
    assert grid.crs.epsg == 32632 and grid.shape == (654, 780)
