"""Build plans on the demo world: patch modes and the single-resolution option (lazy, no pixels read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from eoshard.flows.build import plan_build
from eoshard.flows.config import parse_config


def _plan(demo_data, tmp_path: Path, **changes: Any):
    with pytest.warns(UserWarning, match="were repaired"):
        return plan_build(_config(demo_data, tmp_path, **changes))


def _config(demo_data, tmp_path: Path, **changes: Any):
    data: dict[str, Any] = {
        "name": "plan",
        "catalog": {"source": str(demo_data.catalog), "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B11"],
        "labels": {"path": str(demo_data.parcels), "class_column": "class_code"},
        "patches": {"size": 48},
        "output": {"path": str(tmp_path / "out")},
    }
    data.update(changes)
    return parse_config(data, tmp_path)


def test_labelled_mode_keeps_windows_covered_enough(demo_data, tmp_path: Path) -> None:
    every = _plan(demo_data, tmp_path)
    labelled = _plan(demo_data, tmp_path, patches={"size": 48, "mode": "labelled", "min_labelled_fraction": 0.9})
    parcels = gpd.read_file(demo_data.parcels).to_crs(str(every.grid.crs))
    union = shapely.union_all(parcels.geometry.make_valid().values)
    covered = {p.key for p in every.patches if p.footprint.intersection(union).area >= 0.9 * p.footprint.area}
    assert {p.key for p in labelled.patches} == covered
    assert 0 < len(covered) < len(every.patches) == 108


def test_parcel_mode_centres_a_window_on_every_parcel(demo_data, tmp_path: Path) -> None:
    plan = _plan(demo_data, tmp_path, patches={"size": 48, "mode": "parcels"})
    parcels = gpd.read_file(demo_data.parcels).to_crs(str(plan.grid.crs))
    points = shapely.point_on_surface(parcels.geometry.make_valid().values)
    inside = [pt for pt in points if shapely.contains(plan.grid.extent.geom, pt)]
    boxes = shapely.union_all([p.footprint for p in plan.patches])
    assert all(boxes.covers(pt) for pt in inside)
    assert len({p.key for p in plan.patches}) == len(plan.patches) <= len(inside)
    assert all(p.row % 2 == 0 and p.col % 2 == 0 for p in plan.patches)  # snapped to the 20 m grid


def test_single_resolution_puts_every_band_in_one_group(demo_data, tmp_path: Path) -> None:
    plan = _plan(demo_data, tmp_path, grid={"resolution": 10, "single_resolution": True})
    assert plan.groups == {"s2_10m": ["B02", "B11"]} and plan.factors == {"s2_10m": 1}
    layouts = plan.layouts()
    assert layouts["s2_10m"] == ((7, 2, 48, 48), "uint16")
    assert np.all([p.geobox.shape == (48, 48) for p in plan.patches])


def test_a_plan_says_the_repaired_geometries_once(demo_data, tmp_path: Path) -> None:
    """The labels, the patch selection and the shard sources share one preparation of the parcels."""
    import warnings

    for mode in ("grid", "labelled"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            plan_build(_config(demo_data, tmp_path, patches={"size": 48, "mode": mode}))
        repaired = [w for w in said if "were repaired" in str(w.message)]
        assert [str(w.message) for w in repaired] == [
            "1 of 480 label geometries were invalid and were repaired with make_valid"
        ], mode


def test_class_names_follow_the_codes_of_the_parcels_the_labels_are_made_of(demo_data, tmp_path: Path) -> None:
    """A row without a geometry is dropped before rasterizing: its class, first in text order, once took code 1 in
    dataset.json while the class layer gave 1 to the next name (every class named one code off)."""
    from eoshard.flows.demo.world import CLASSES

    parcels = gpd.read_file(demo_data.parcels)
    ghost = parcels.iloc[[0, 1]].copy()
    ghost["class_name"], ghost["geometry"] = ["aaa, no geometry", "aab, empty"], [None, shapely.Polygon()]
    path = tmp_path / "with-rows-without-geometry.gpkg"
    gpd.GeoDataFrame(pd.concat([parcels, ghost]), crs=parcels.crs).to_file(path)
    with pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(_config(demo_data, tmp_path, labels={"path": str(path), "class_column": "class_name"}))
    names = sorted(n for c, n in CLASSES.items() if c != 0)
    assert dict(plan.class_names) == {str(i): n for i, n in enumerate(names, start=1)}
    assert plan.sources is not None and plan.sources.labels is not None
    codes = plan.sources.labels.codes  # the class layer's codes, parcel by parcel in file order
    by_name = dict(zip(parcels["class_name"], parcels["class_code"], strict=True))
    demo_code = {int(code): by_name[name] for code, name in plan.class_names.items()}
    assert [demo_code[int(c)] for c in codes] == parcels["class_code"].tolist()  # each name on its own parcels


def test_the_fingerprint_holds_the_parcels_so_a_relabelled_file_is_not_resumed(demo_data, tmp_path: Path) -> None:
    """A build killed, its label file relabelled, then run again mixed both labellings and passed verify."""
    from eoshard.pipeline.shards.commits import differences

    parcels = gpd.read_file(demo_data.parcels)
    copy, relabelled = tmp_path / "same.gpkg", tmp_path / "relabelled.gpkg"
    parcels.to_file(copy)
    parcels.assign(class_code=parcels["class_code"].replace({1: 2})).to_file(relabelled)
    prints = []
    for path in (demo_data.parcels, copy, relabelled):
        with pytest.warns(UserWarning, match="were repaired"):
            plan = plan_build(
                _config(demo_data, tmp_path, labels={"path": str(path), "class_column": "class_code"})
            )
        prints.append(plan.fingerprint())
    assert len(prints[0]["labels_sha256"]) == 64
    assert differences(prints[0], prints[1]) == ["config.labels.path"]  # the same parcels in another file
    assert differences(prints[1], prints[2]) == ["config.labels.path", "labels_sha256"]
