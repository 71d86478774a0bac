"""Planning a build reads no pixels: cubes and labels stay lazy until the shards are written."""

from __future__ import annotations

import numpy as np
import pytest

from eoshard.flows.build import plan_build
from eoshard.flows.config import parse_config
from tests.laziness import ComputeCalledError, computing_forbidden


@pytest.fixture
def demo_config(demo_data, tmp_path):
    data = {
        "name": "lazy",
        "catalog": {"source": str(demo_data.catalog), "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B8A", "B09"],
        "labels": {"path": str(demo_data.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 48},
        "output": {"path": str(tmp_path / "out")},
    }
    return parse_config(data, tmp_path)


def test_planning_computes_nothing(demo_config) -> None:
    with computing_forbidden(), pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(demo_config)
    assert sorted(plan.cubes) == ["s2_10m", "s2_20m", "s2_60m"]
    assert {name: c.shape[1:] for name, c in plan.cubes.items()} == {
        "s2_10m": (1, 474, 618),
        "s2_20m": (1, 237, 309),
        "s2_60m": (1, 79, 103),
    }
    assert plan.labels is not None
    assert sorted(plan.labels.data_vars) == ["class", "coverage", "double_full", "double_partial", "parcel_id"]
    # the guard is real: computing anything under it raises
    with computing_forbidden(), pytest.raises(ComputeCalledError):
        plan.cubes["s2_60m"].isel(time=0).max().compute()


def test_the_60m_grid_nests_the_10m_grid(demo_config) -> None:
    with pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(demo_config)
    fine, coarse = plan.cubes["s2_10m"], plan.cubes["s2_60m"]
    # every 60 m pixel holds exactly 6 x 6 10 m pixels: same origin, 6x the pixel size
    assert float(fine.x[0] - 5) == float(coarse.x[0] - 30)
    assert float(fine.y[0] + 5) == float(coarse.y[0] + 30)
    np.testing.assert_allclose(np.diff(coarse.x.values), 60.0)
    assert fine.sizes["x"] == 6 * coarse.sizes["x"] and fine.sizes["y"] == 6 * coarse.sizes["y"]
    assert all(p.row % 6 == 0 and p.col % 6 == 0 for p in plan.patches)
