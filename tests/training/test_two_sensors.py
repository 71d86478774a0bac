"""The training readers of a format 1.1 dataset: Sentinel-1 on its own dates beside Sentinel-2, and a two-sensor
model trained a few steps on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eoshard.training.data import make_dataset
from eoshard.training.errors import DatasetFormatError
from eoshard.training.manifest import Manifest
from eoshard.training.models import TwoSensorSegmenter
from tests.dataset_bytes import lmdb_samples

pytestmark = pytest.mark.needs_build  # the fixture builds a two-sensor dataset with eoshard build

S1_DOY = [99, 105, 111, 139]  # the demo's Sentinel-1 overpasses: 04-08, 04-14, 04-20, 05-18
SIZE = 24


@pytest.fixture(scope="module")
def two_sensors(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from eoshard.flows.cli import app
    from tests.demo_config import demo_s1_config, write_config

    out = tmp_path_factory.mktemp("two-sensors") / "s1s2"
    config = demo_s1_config(demo_data, out, size=SIZE, splits={"block_size": 480, "fractions": [1.0, 0.0, 0.0]})
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(write_config(config, out.parent / "build.yaml"))])
    assert result.exit_code == 0, result.output
    return out


def test_both_readers_give_each_sensor_on_its_own_dates(two_sensors: Path) -> None:
    manifest = Manifest.read(two_sensors)
    assert manifest.sensor_dates == {
        "s1": json.loads((two_sensors / "dataset.json").read_text())["sensor_dates"]["s1"]
    }
    assert (manifest.sensor_bands(), manifest.sensor_bands("s1")) == (["B02", "B11"], ["vv", "vh"])
    stats = manifest.raw["statistics"]
    mean, std = (np.array([stats[b][k] for b in ("vv", "vh")], "f4")[:, None, None] for k in ("mean", "std"))
    raw = lmdb_samples(two_sensors)
    lmdb_data, zarr_data = (make_dataset(manifest, f, augment=False) for f in ("lmdb", "zarr"))
    t = len(manifest.dates)
    for i, key in enumerate(manifest.keys):
        a, b = lmdb_data[i], zarr_data[i]
        assert set(a) == {"image", "dates", "pad", "label", "ignore", "image_s1", "dates_s1", "pad_s1"}
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=f"{key} {name}")
        value = raw[key]
        n = len(value["s1_time_index"])
        assert a["image"].shape == (t, 2, SIZE, SIZE) and a["image_s1"].shape == (4, 2, SIZE, SIZE)
        assert a["pad_s1"].tolist() == [False] * n + [True] * (4 - n)
        assert a["dates_s1"][:n].tolist() == [S1_DOY[j] for j in value["s1_time_index"]]
        expected = (
            np.stack([value["vv"], value["vh"]], 1) - mean
        ) / std  # normalised with dataset.json statistics
        np.testing.assert_allclose(a["image_s1"][:n].numpy(), expected, rtol=1e-6)
        assert (a["image_s1"][n:] == 0).all()
        assert a["dates"][: len(value["time_index"])].tolist() == value["doy"].tolist()  # Sentinel-2 as in 1.0


def test_an_s1_band_in_image_is_refused_clearly(two_sensors: Path) -> None:
    with pytest.raises(DatasetFormatError, match=r"band 'vv' has the s1 dates.*it comes in image_s1"):
        make_dataset(Manifest.read(two_sensors), "lmdb", bands=["B02", "vv"])


def test_a_two_sensor_model_trains_a_few_steps(two_sensors: Path) -> None:
    manifest = Manifest.read(two_sensors)
    data = make_dataset(manifest, "zarr", augment=True, seed=1)
    torch.manual_seed(0)
    model = TwoSensorSegmenter(2, 2, manifest.n_classes, hidden=8)
    s1_before = model.cell_s1.gates.weight.detach().clone()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = next(iter(DataLoader(data, batch_size=8, shuffle=False)))
    losses = []
    for _ in range(6):
        logits = model(batch["image"], batch["pad"], batch["image_s1"], batch["pad_s1"])
        loss = torch.nn.functional.cross_entropy(logits, batch["label"].masked_fill(batch["ignore"], -100))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not torch.equal(model.cell_s1.gates.weight, s1_before)  # the Sentinel-1 branch learns too
