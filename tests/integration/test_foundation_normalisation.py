"""The training readers standardise with a foundation model's published statistics on request (Prithvi-EO-2.0,
TerraMind 1.0), rescaled to how the dataset stores its bands, and refuse what the statistics do not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from eoshard.training.config import TrainConfig
from eoshard.training.data import make_dataset
from eoshard.training.errors import ConfigError
from eoshard.training.fit import fit
from eoshard.training.manifest import Manifest
from eoshard.training.normalisation import foundation_stats
from tests.integration.test_refresh import BBOX, invoke, write_config

pytestmark = pytest.mark.slow

BANDS = ["B02", "B8A", "B12"]


@pytest.fixture(scope="module")
def reflectance(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("foundation")
    out = root / "reflectance"
    config = write_config(root / "r.yaml", demo_data.catalog, out, parcels=demo_data.parcels, aoi=BBOX,
                          cube={"reflectance": True}, output={"formats": ["zarr"]})  # fmt: skip
    yaml_text = config.read_text().replace("- B02\n- B11\n", "".join(f"- {b}\n" for b in BANDS))
    # class names give the training its number of classes
    yaml_text = yaml_text.replace(
        "  class_column: class_code\n", "  class_column: class_code\n  class_name_column: class_name\n"
    )
    config.write_text(yaml_text)
    result = invoke("build", str(config))
    assert result.exit_code == 0, result.output
    return out


def test_prithvi_and_terramind_statistics_are_applied_in_reflectance_units(reflectance: Path) -> None:
    manifest = Manifest.read(reflectance)
    assert manifest.raw["band_metadata"]["B8A"]["units"] == "reflectance"
    raw = make_dataset(manifest, "zarr", bands=BANDS, normalise=False)
    prithvi = make_dataset(manifest, "zarr", bands=BANDS, normalise="prithvi-eo-2")
    terramind = make_dataset(manifest, "zarr", bands=BANDS, normalise="terramind-v1")
    # Prithvi-EO-2.0 config.json: B02, B8A, B12 = BLUE, NIR_NARROW, SWIR_2; TerraMind v1 S2L2A; both x 10000
    expected = {
        "prithvi": ([0.1087, 0.2734, 0.1363], [0.2248, 0.1850, 0.1049]),
        "terramind": ([0.1503317, 0.313222, 0.1857648], [0.2141107, 0.1753829, 0.1334311]),
    }
    root = zarr.open_group(str(reflectance / "data.zarr"), mode="r")
    slot = manifest.slots[3]
    kept = np.asarray(root["time_mask"][slot])
    stored = np.concatenate(
        [
            np.asarray(root["s2_10m"][slot])[kept],
            np.asarray(root["s2_20m"][slot])[kept].repeat(2, -1).repeat(2, -2),
        ],
        axis=1,
    )  # (T_n, [B02, B8A, B12], 24, 24), NaN where no data
    assert [b for g in ("s2_10m", "s2_20m") for b in manifest.groups[g]] == BANDS
    assert np.isfinite(stored).mean() > 0.5
    for name, reader in (("prithvi", prithvi), ("terramind", terramind)):
        mean, std = (np.array(v, "f4") for v in expected[name])
        assert reader.stats is not None
        np.testing.assert_allclose(reader.stats.mean, mean, rtol=1e-6)
        np.testing.assert_allclose(reader.stats.std, std, rtol=1e-6)
        image = reader[3]["image"].numpy()[: stored.shape[0]]
        want = np.nan_to_num((stored - mean[:, None, None]) / std[:, None, None], nan=0.0)
        np.testing.assert_allclose(image, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(prithvi[3]["image"].numpy(), raw[3]["image"].numpy())


def _copy_manifest(dataset: Path, to: Path, edit: Any) -> Manifest:
    """The dataset's manifest and index in ``to``, ``dataset.json`` changed by ``edit``."""
    to.mkdir()
    shutil.copy(dataset / "index.parquet", to / "index.parquet")
    raw = json.loads((dataset / "dataset.json").read_text())
    edit(raw)
    (to / "dataset.json").write_text(json.dumps(raw))
    return Manifest.read(to)


def test_digital_numbers_unknown_models_and_bands_are_refused(reflectance: Path, tmp_path: Path) -> None:
    def to_dn(raw: dict[str, Any]) -> None:  # a format 1.0 dataset of digital numbers, without band_metadata
        del raw["band_metadata"]
        for group in raw["groups"].values():
            group["dtype"] = "uint16"

    dn = _copy_manifest(reflectance, tmp_path / "dn", to_dn)
    with pytest.raises(ConfigError, match=r"B02 is stored as digital numbers .* cube.reflectance: true"):
        make_dataset(dn, "zarr", bands=BANDS, normalise="prithvi-eo-2")
    manifest = Manifest.read(reflectance)
    with pytest.raises(ConfigError, match=r"no published normalisation for model 'clay'.*prithvi-eo-2"):
        make_dataset(manifest, "zarr", bands=BANDS, normalise="clay")
    with pytest.raises(ConfigError, match=r"prithvi-eo-2 was pretrained on bands .* not on \['B08'\]"):
        foundation_stats("prithvi-eo-2", manifest, ["B02", "B08"])  # B08 (broad NIR): Prithvi has B8A


def test_an_older_float_dataset_without_band_metadata_reads_as_reflectance(
    reflectance: Path, tmp_path: Path
) -> None:
    old = _copy_manifest(reflectance, tmp_path / "old", lambda raw: raw.pop("band_metadata"))
    reader = make_dataset(old, "zarr", bands=["B02"], normalise="terramind-v1")
    assert reader.stats is not None
    np.testing.assert_allclose(reader.stats.mean, [0.1503317], rtol=1e-6)


def test_fit_trains_with_prithvi_normalisation_and_keeps_it_for_prediction(
    reflectance: Path, tmp_path: Path
) -> None:
    config = TrainConfig(dataset=str(reflectance), output=str(tmp_path / "run"), format="zarr", bands=BANDS,
                         architecture="fcn", epochs=1, batch_size=8, normalisation="prithvi-eo-2", workers=0)  # fmt: skip
    result = fit(config)
    assert len(result.train_loss) == 1 and np.isfinite(result.train_loss[0]) and result.weights.is_file()
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["bands"] == BANDS
    np.testing.assert_allclose(stats["mean"], [0.1087, 0.2734, 0.1363], rtol=1e-6)
    np.testing.assert_allclose(stats["std"], [0.2248, 0.1850, 0.1049], rtol=1e-6)
