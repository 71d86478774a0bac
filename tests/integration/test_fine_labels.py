"""``labels.resolution``: every label layer on a grid nested in the base grid (2.5 m in 10 m, as DeepSatData
rasterises ground truth), exact against a per-pixel shapely reference at that grid, in Zarr and LMDB alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import lmdb
import numpy as np
import pytest
import xarray as xr
import yaml
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox
from safetensors.numpy import load

from eoshard.flows.config import ConfigError, parse_config
from tests.flows.test_config import _valid
from tests.integration.test_refresh import BBOX, invoke, write_config
from tests.pipeline.test_labels_exact import reference

LAYERS = ["class", "coverage", "double_full", "double_partial", "parcel_id"]


def test_labels_resolution_must_nest_in_the_base_grid(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["labels"]["resolution"] = 3
    with pytest.raises(ConfigError, match=r"labels.resolution 3 m must divide grid.resolution 10 m"):
        parse_config(data, tmp_path)
    data["labels"]["resolution"] = 2.5
    config = parse_config(data, tmp_path)
    assert config.labels is not None and config.labels.resolution == 2.5
    assert parse_config(yaml.safe_load(config.to_yaml()), tmp_path) == config


@pytest.fixture(scope="module")
def fine(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fine-labels")
    out = root / "fine"
    config = write_config(root / "fine.yaml", demo_data.catalog, out, parcels=demo_data.parcels, aoi=BBOX)
    text = config.read_text().replace("  id_column: parcel_id\n", "  id_column: parcel_id\n  resolution: 2.5\n")
    assert "resolution: 2.5" in text
    config.write_text(text)
    result = invoke("build", str(config))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_every_label_layer_equals_the_exact_reference_at_2_5_m(fine: Path, demo_data: Any) -> None:
    manifest = json.loads((fine / "dataset.json").read_text())
    layers = manifest["labels"]["layers"]
    assert sorted(layers) == LAYERS and {v["resolution"] for v in layers.values()} == {2.5}
    assert manifest["resolution"] == 10.0 and manifest["groups"]["s2_10m"]["shape"][-1] == 24
    group = zarr.open_group(str(fine / "data.zarr"), mode="r")
    assert group["class"].shape[1:] == (96, 96) and group["valid_mask"].shape[2:] == (24, 24)
    index = gpd.read_parquet(fine / "index.parquet")
    # patches with field edges in them: a share of labelled pixels well inside (0, 1)
    edges = index[(index["labelled_fraction"] > 0.3) & (index["labelled_fraction"] < 0.9)]
    assert len(edges) >= 2
    parcels = gpd.read_file(demo_data.parcels)
    for row in edges.iloc[:2].itertuples():
        a, _, c, _, e, f = row.transform
        fine_window = GeoBox((96, 96), Affine(a / 4, 0.0, c, 0.0, e / 4, f), manifest["crs"])
        expected = reference(parcels, fine_window, "class_code", "parcel_id")
        np.testing.assert_allclose(group["coverage"][row.zarr_index], expected["coverage"], atol=1e-6, rtol=0)
        for name in ("class", "parcel_id", "double_partial", "double_full"):
            np.testing.assert_array_equal(group[name][row.zarr_index], expected[name], err_msg=name)
        env = lmdb.open(str(fine / "data.lmdb" / row.lmdb_part), readonly=True, lock=False)
        with env.begin() as txn:
            sample = load(bytes(txn.get(row.key.encode())))
        env.close()
        for name in LAYERS:
            np.testing.assert_array_equal(sample[name], group[name][row.zarr_index], err_msg=name)
        assert sample["B02"].shape[1:] == (24, 24) and sample["valid_mask"].shape[1:] == (24, 24)
        # the 2.5 m classes say more than the 10 m grid can: some 10 m pixels hold two classes
        blocks = expected["class"].reshape(24, 4, 24, 4).transpose(0, 2, 1, 3).reshape(24, 24, 16)
        assert (blocks.min(axis=2) != blocks.max(axis=2)).any()


@pytest.mark.slow
def test_the_zarr_store_opens_in_xarray_with_its_own_label_dimensions(fine: Path) -> None:
    ds = xr.open_zarr(fine / "data.zarr", consolidated=False)
    assert ds["class"].dims == ("sample", "y_labels", "x_labels")
    assert ds["valid_mask"].dims == ("sample", "time", "y", "x")
    assert (ds.sizes["y_labels"], ds.sizes["y"]) == (96, 24)
