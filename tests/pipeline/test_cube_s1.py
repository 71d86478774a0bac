"""Sentinel-1 as another sensor group: ``s1_10m`` beside the Sentinel-2 groups, on the same grid, source pixels."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from rasterio.features import rasterize
from rasterio.windows import from_bounds

from eoshard.flows.config import ConfigError, parse_config
from eoshard.flows.demo.world import WORLD_CRS, make_world
from eoshard.pipeline.cube import open_band_group, open_cube, stackstac_ready
from eoshard.pipeline.errors import BandError, PipelineError
from tests.laziness import ComputeCalledError, computing_forbidden
from tests.pipeline.test_cube_engines import demo_grid, demo_items

pytestmark = pytest.mark.filterwarnings(
    "ignore:Dataset has no geotransform:rasterio.errors.NotGeoreferencedWarning"
)
S2_BANDS = ["B04", "B08", "B11"]
S1_BANDS = ["vv", "vh"]
# the demo's overpasses (flows/eoshard/flows/demo/s1.py): platform, day, relative orbit
ACQUISITIONS = [
    "sentinel-1a_2024-04-08_R95",
    "sentinel-1a_2024-04-14_R117",
    "sentinel-1a_2024-04-20_R95",
    "sentinel-1a_2024-05-18_R117",
]
SWATH_EDGE = {"sentinel-1a_2024-04-20_R95": 723_900.0}  # world x east of which that overpass has no data


def s1_items(s1: Path) -> list[pystac.Item]:
    return list(pystac.ItemCollection.from_file(str(s1)))


@pytest.fixture(scope="module")
def both(demo_data) -> tuple[list[pystac.Item], list[pystac.Item]]:
    return demo_items(demo_data.catalog), s1_items(demo_data.s1)


def test_the_s1_group_sits_beside_the_s2_groups_on_the_same_grid(demo_data, both) -> None:
    s2_items, s1 = both
    grid = demo_grid(demo_data.aoi)
    cubes = open_cube(s2_items + s1, grid, S2_BANDS + S1_BANDS)
    assert list(cubes) == ["s2_10m", "s2_20m", "s1_10m"]
    sar, optical = cubes["s1_10m"], cubes["s2_10m"]
    assert sar.dims == ("time", "band", "y", "x")
    assert sar.dtype == np.float32
    assert list(sar.band.values) == S1_BANDS
    np.testing.assert_array_equal(sar.x.values, optical.x.values)
    np.testing.assert_array_equal(sar.y.values, optical.y.values)
    assert sar.attrs == {**optical.attrs, "nodata": 0.0}
    # each sensor keeps its own time steps: S1 overpasses, two of them on S2 days
    assert list(sar.acquisition.values) == ACQUISITIONS
    assert str(sar.time.values[0]) == "2024-04-08T05:25:12.000000000"
    assert optical.sizes["time"] == 9
    s1_days = {str(t)[:10] for t in sar.time.values}
    s2_days = {str(t)[:10] for t in optical.time.values}
    assert s1_days & s2_days == {"2024-04-08", "2024-05-18"}
    assert "boa_offset" in optical.coords and "boa_offset" not in sar.coords


@pytest.mark.parametrize("engine", ["stackstac", "odc-stac"])
def test_s1_values_are_the_source_pixels_bit_for_bit(demo_data, both, engine) -> None:
    _, s1 = both
    grid = demo_grid(demo_data.aoi)
    cube = open_cube(s1, grid, S1_BANDS, engine=engine)["s1_10m"].compute(scheduler="synchronous")
    assert cube.dtype == np.float32
    epsg = grid.crs.epsg
    xs, ys = np.meshgrid(cube.x.values, cube.y.values)
    for t, key in enumerate(cube.acquisition.values):
        day = key.split("_")[1]
        (src_item,) = [i for i in s1 if i.properties["proj:epsg"] == epsg and str(i.datetime)[:10] == day]
        for b, band in enumerate(S1_BANDS):
            with rasterio.open(src_item.assets[band].get_absolute_href()) as src:
                window = from_bounds(*grid.extent.boundingbox, transform=src.transform)
                pixels = src.read(1, window=window, boundless=True, fill_value=-1.0)
            assert pixels.shape == grid.shape and pixels.dtype == np.float32
            in_tile, valid = pixels != -1.0, (pixels != -1.0) & (pixels != 0.0)
            assert valid.sum() > 0.5 * valid.size
            got = cube.values[t, b]
            # float32 bit for bit where the product in the grid's CRS has data
            np.testing.assert_array_equal(got[valid].view(np.uint32), pixels[valid].view(np.uint32))
            # nodata preserved: 0.0 exactly past the swath edge (both tiles' products miss it), away from
            # the edge line, where the other zone's product, reprojected, may give its nearest valid pixel
            edge = SWATH_EDGE.get(str(key), np.inf)
            east = xs + 0.2 * (ys - 5_322_000) - edge
            inside = in_tile & (np.abs(east) > 15.0)
            np.testing.assert_array_equal((got == 0.0)[inside], (east > 0)[inside])
            assert (got == 0.0).sum() > (0.1 * got.size if key in SWATH_EDGE else 0)
            assert not np.isnan(got).any()


def test_backscatter_follows_the_demo_world(demo_data, both) -> None:
    _, s1 = both
    grid = demo_grid(demo_data.aoi)
    cube = open_cube(s1, grid, S1_BANDS)["s1_10m"].isel(time=0).compute(scheduler="synchronous")
    vv, vh = (cube.sel(band=b).values for b in S1_BANDS)
    world = make_world()
    assert str(grid.crs) == WORLD_CRS
    water = rasterize([world.water], out_shape=grid.shape, transform=grid.transform, all_touched=False) == 1
    land = (vv > 0) & ~water
    vv_db, vh_db = (
        10 * np.log10(vv, where=vv > 0, out=np.zeros_like(vv)),
        10 * np.log10(vh, where=vh > 0, out=np.zeros_like(vh)),
    )
    assert water.sum() > 1000
    assert np.median(vv_db[water]) < -19 < -15 < np.median(vv_db[land])  # open water is a dark mirror
    assert np.median(vh_db[land]) < np.median(vv_db[land]) - 5  # cross-polarised returns are weaker


def test_building_the_s1_group_computes_nothing(demo_data, both) -> None:
    s2_items, s1 = both
    grid = demo_grid(demo_data.aoi)
    with computing_forbidden():
        for engine in ("stackstac", "odc-stac"):
            cubes = open_cube(s2_items + s1, grid, ["B04", "vv", "vh"], engine=engine, chunksize=256)  # type: ignore[arg-type]
        with pytest.raises(ComputeCalledError):
            cubes["s1_10m"].isel(time=0).max().compute()
    assert cubes["s1_10m"].chunks[2:] == cubes["s2_10m"].chunks[2:] == ((256, 218), (256, 256, 106))


def test_a_band_of_the_other_sensor_is_a_band_error(demo_data, both) -> None:
    s2_items, s1 = both
    grid = demo_grid(demo_data.aoi)
    with pytest.raises(BandError, match=r"\['vv'\] are Sentinel-1 bands, but none of the 19 products"):
        open_cube(s2_items, grid, ["B04", "vv"])
    with pytest.raises(BandError, match=r"\['B04'\] are Sentinel-2 bands, but none of the 8 products"):
        open_cube(s1, grid, ["B04", "vh"])
    with pytest.raises(BandError, match=r"8 product.* are Sentinel-1 products .* but no Sentinel-1 band"):
        open_cube(s2_items + s1, grid, ["B04"])
    with pytest.raises(BandError, match=r"\['vv'\] are Sentinel-1 bands, but product S2.* is a Sentinel-2"):
        open_band_group(s2_items, grid, ["vv"])
    with pytest.raises(KeyError):  # BandError is also the builtin KeyError
        open_band_group(s1, grid, ["B08"])


def test_the_build_config_takes_s1_bands_with_an_s1_section(demo_data, tmp_path: Path) -> None:
    data = {
        "name": "s1",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a"},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B04", "vv", "vh"],
        "output": {"path": str(tmp_path / "out")},
    }
    with pytest.raises(ConfigError, match=r"bands \['vv', 'vh'\] are Sentinel-1 bands: add an s1 section"):
        parse_config(data, tmp_path)  # checked with the config, before any search
    config = parse_config({**data, "s1": {"source": str(demo_data.s1), "min_dates": 2}}, tmp_path)
    assert config.bands == ("B04", "vv", "vh")
    assert config.s1 is not None and (config.s1.source, config.s1.min_valid_fraction, config.s1.min_dates) == (
        str(demo_data.s1),
        0.5,
        2,
    )
    assert parse_config(config.model_dump(mode="json"), tmp_path) == config  # round trip
    with pytest.raises(ConfigError, match=r"cube.indices.rvi reads Sentinel-1 band\(s\) \['vh', 'vv'\]"):
        parse_config(
            {**data, "s1": {"source": str(demo_data.s1)}, "cube": {"indices": {"rvi": "vh / vv"}}}, tmp_path
        )
    with pytest.raises(ConfigError, match="the s1 section needs Sentinel-1 bands"):
        parse_config({**data, "bands": ["B04"], "s1": {"source": str(demo_data.s1)}}, tmp_path)
    with pytest.raises(ConfigError, match=r"s1\.source: file not found"):
        parse_config({**data, "s1": {"source": str(tmp_path / "nowhere.json")}}, tmp_path)


def test_s1_groups_of_both_engines_are_identical(demo_data, both) -> None:
    _, s1 = both
    grid = demo_grid(demo_data.aoi)
    a, b = (
        open_cube(s1, grid, S1_BANDS, engine=e)["s1_10m"].compute(scheduler="synchronous")  # type: ignore[arg-type]
        for e in ("stackstac", "odc-stac")
    )
    xr.testing.assert_identical(a.coords.to_dataset(), b.coords.to_dataset())
    assert a.attrs == b.attrs
    differ = int((a.values.view(np.uint32) != b.values.view(np.uint32)).sum())
    # only where the other UTM zone's product is reprojected (GDAL's approximate transformer, see test_cube_engines)
    assert differ < 1e-4 * a.size


def test_nodata_comes_from_raster_bands_and_must_agree(demo_data, both) -> None:
    _, s1 = both
    grid = demo_grid(demo_data.aoi)
    dicts = [stackstac_ready(i) for i in s1]
    undeclared = copy.deepcopy(dicts)
    for data in undeclared:
        for band in S1_BANDS:
            del data["assets"][band]["raster:bands"]
    assert np.isnan(open_cube(undeclared, grid, S1_BANDS)["s1_10m"].attrs["nodata"])  # float32 default: NaN
    mixed = copy.deepcopy(dicts)
    mixed[3]["assets"]["vh"]["raster:bands"][0]["nodata"] = -32768.0
    with pytest.raises(PipelineError, match=r"different nodata values \['-32768.0', '0.0'\]"):
        open_cube(mixed, grid, S1_BANDS)
