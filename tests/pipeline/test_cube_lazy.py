"""Building cubes (both engines), masks, reflectance, indices and labels computes nothing."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest

from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.indices import STANDARD_INDICES, compute_indices
from eoshard.pipeline.labels import rasterize_labels
from eoshard.pipeline.masks import open_valid_mask, valid_fraction
from tests.laziness import ComputeCalledError, computing_forbidden
from tests.pipeline.test_cube_engines import demo_grid, demo_items

pytestmark = pytest.mark.filterwarnings(
    "ignore:Dataset has no geotransform:rasterio.errors.NotGeoreferencedWarning"
)
BANDS = ["B01", "B03", "B04", "B08", "B11", "B12", "SCL"]


@pytest.mark.parametrize("engine", ["stackstac", "odc-stac"])
def test_building_cubes_and_labels_computes_nothing(demo_data, engine) -> None:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    parcels = gpd.read_file(demo_data.parcels)
    with computing_forbidden():
        cubes = open_cube(items, grid, BANDS, engine=engine, chunksize=256)
        reflectance = open_cube(items, grid, ["B04"], engine=engine, reflectance=True)
        mask = open_valid_mask(items, grid, engine=engine)
        fraction = valid_fraction(mask)
        indices = compute_indices(cubes, grid, {k: k for k in STANDARD_INDICES})
        with pytest.warns(UserWarning, match="were repaired"):
            labels = rasterize_labels(parcels, grid, class_column="class_code", id_column="parcel_id")
        # the guard is real: computing anything under it raises
        with pytest.raises(ComputeCalledError):
            cubes["s2_60m"].isel(time=0).max().compute()
    lazy = [*cubes.values(), *reflectance.values(), mask, fraction, *indices.values(), *labels.data_vars.values()]
    assert all(a.chunks is not None for a in lazy)
    # chunking follows the config: 256 px at 10 m, 128 px at 20 m, never below 64 px
    assert cubes["s2_10m"].chunks[2:] == ((256, 218), (256, 256, 106))
    assert cubes["s2_20m"].chunks[2:] == ((128, 109), (128, 128, 53))
    assert cubes["s2_60m"].chunks[2:] == ((64, 15), (64, 39))
    # and the lazy cube does compute afterwards
    assert int(np.asarray(cubes["s2_60m"].isel(time=0, band=0).max().compute(scheduler="synchronous"))) > 1000
