"""Paired HR source: 2.5 m pixels nested in each 24 px patch, stored beside the Sentinel-2 bands, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import lmdb
import numpy as np
import pytest
import rasterio
import yaml
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.windows import from_bounds
from safetensors.numpy import load

from eoshard.flows.config import ConfigError, parse_config
from eoshard.pipeline.grid import nested_grid
from tests.flows.test_config import _valid
from tests.integration.test_build_errors import _build, _verify
from tests.integration.test_resume import _config

BANDS = ["red", "green", "blue"]


def _source(path: Path, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """The source pixels over ``bounds``, read independently with a rasterio window (0 outside the file)."""
    with rasterio.open(path) as src:
        window = from_bounds(*bounds, transform=src.transform)
        return src.read(1, window=window.round_offsets().round_lengths(), boundless=True, fill_value=0)


def test_hr_config_must_nest_and_round_trips(tmp_path: Path) -> None:
    data = _valid(tmp_path) | {"hr": {"source": "catalog.json", "bands": ["red"], "resolution": 3}}
    with pytest.raises(ConfigError, match=r"hr.resolution 3 m must divide grid.resolution 10 m"):
        parse_config(data, tmp_path)
    data["hr"]["resolution"] = 2.5
    config = parse_config(data, tmp_path)
    assert config.hr is not None and config.hr.source == tmp_path / "catalog.json"
    assert parse_config(yaml.safe_load(config.to_yaml()), tmp_path) == config


def test_the_nested_grid_cuts_each_pixel_into_factor_squared() -> None:
    grid = GeoBox((180, 198), Affine(10.0, 0.0, 720660.0, 0.0, -10.0, 5322840.0), "EPSG:32632")
    fine = nested_grid(grid, 4)
    assert fine.shape == (720, 792)
    assert tuple(fine.transform)[:6] == (2.5, 0.0, 720660.0, 0.0, -2.5, 5322840.0)
    assert fine.extent == grid.extent


@pytest.mark.slow
def test_hr_layers_equal_the_source_pixels_in_zarr_and_lmdb(demo_data, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config_path = _config(demo_data, out)
    config = yaml.safe_load(config_path.read_text())
    config["hr"] = {"source": str(demo_data.hr), "bands": BANDS, "resolution": 2.5}
    config_path.write_text(yaml.safe_dump(config))
    code, output = _build(config_path)
    assert code == 0, output
    _verify(out)

    manifest = json.loads((out / "dataset.json").read_text())
    hr = manifest["hr"]
    assert hr["products"] == ["VHR_20230804_DEMO", "VHR_20240612_DEMO_WEST"]
    assert (hr["factor"], hr["shape"], hr["dtype"], hr["tensors"]) == (
        4,
        [3, 96, 96],
        "uint8",
        [f"hr_{b}" for b in BANDS],
    )
    assert all(manifest["statistics"][f"hr_{b}"]["count"] > 0 for b in BANDS)

    items = {i["id"]: i for i in json.loads(demo_data.hr.read_text())["features"]}
    older, newer = (items[p]["assets"] for p in hr["products"])
    index = gpd.read_parquet(out / "index.parquet")
    group = zarr.open_group(str(out / "data.zarr"), mode="r")
    both = 0
    for row in index.itertuples():
        a, _, x0, _, e, y0 = row.transform
        bounds = (x0, y0 + e * 24, x0 + a * 24, y0)
        env = lmdb.open(str(out / "data.lmdb" / row.lmdb_part), readonly=True, lock=False)
        with env.begin() as txn:
            tensors = load(txn.get(row.key.encode()))
        env.close()
        slot = np.asarray(group["hr"][row.zarr_index])  # type: ignore[index]
        assert slot.shape == (3, 96, 96)
        covered = np.zeros((96, 96), dtype=bool)
        for i, band in enumerate(BANDS):
            top = _source(Path(newer[band]["href"]), bounds)
            expected = np.where(top != 0, top, _source(Path(older[band]["href"]), bounds))
            np.testing.assert_array_equal(tensors[f"hr_{band}"], expected, err_msg=f"{row.key} {band}")
            np.testing.assert_array_equal(slot[i], expected, err_msg=f"{row.key} {band}")
            covered |= expected != 0
        assert row.hr_coverage == covered.mean()
        both += bool((top != 0).any() and (top == 0).any())
    assert len(index) > 30
    assert both > 0  # some patches take pixels from both products: the newer one lies on top
    _training_reads(out, len(index))


def _training_reads(out: Path, n_samples: int) -> None:
    """The training package's readers ignore the optional ``hr`` layers: same Sentinel-2 samples from both formats."""
    import torch

    from eoshard.training.data import make_dataset
    from eoshard.training.manifest import Manifest

    manifest = Manifest.read(out)
    from_lmdb = make_dataset(manifest, "lmdb", normalise=False, bands=["B02", "B11"])
    from_zarr = make_dataset(manifest, "zarr", normalise=False, bands=["B02", "B11"])
    assert len(from_lmdb) == len(from_zarr) == n_samples
    for i in (0, n_samples - 1):
        a, b = from_lmdb[i], from_zarr[i]
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
