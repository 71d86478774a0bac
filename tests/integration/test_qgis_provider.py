"""The QGIS Processing provider (deploy/qgis) in a real, headless QGIS equals ``eoshard-train predict``.

QGIS's Python bindings belong to the system Python (Debian's ``python3-qgis``, installed by
``deploy/install-system-deps.sh``), not to the project's virtual environment: the QGIS side runs in
``/usr/bin/python3`` with ``QT_QPA_PLATFORM=offscreen``, and the provider starts this environment's
``eoshard-train`` (``EOSHARD_TRAIN``), as a QGIS user's installation does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from tests.conftest import ROOT
from tests.training.helpers import random_package

SYSTEM_PYTHON = Path("/usr/bin/python3")
PLUGINS = Path("/usr/share/qgis/python/plugins")
MASK = "(B03 - B08) / (B03 + B08) > 0.1"
COMMON_MASK = "(green - nir) / (green + nir) > 0.1"  # the same, in the common names the package records

QGIS_SCRIPT = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsMapSettings, QgsMapRendererParallelJob
from qgis.PyQt.QtCore import QSize
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from eoshard_provider.provider import EoshardProvider
provider = EoshardProvider()
QgsApplication.processingRegistry().addProvider(provider)
params = json.loads(sys.argv[3])
algorithms = [a.id() for a in provider.algorithms()]
labels = [p.description() for p in provider.algorithms()[0].parameterDefinitions() if p.name().startswith("BAND_")]
result = processing.run("eoshard:eoshard_model", params)
layer = QgsRasterLayer(result["OUTPUT"], "prediction")
QgsProject.instance().addMapLayer(layer)
settings = QgsMapSettings()
settings.setLayers([layer])
settings.setExtent(layer.extent())
settings.setOutputSize(QSize(360, 280))
job = QgsMapRendererParallelJob(settings)
job.start()
job.waitForFinished()
job.renderedImage().save(sys.argv[4])
print(json.dumps({"algorithms": algorithms, "labels": labels, "output": result["OUTPUT"], "valid": layer.isValid(),
                  "renderer": layer.renderer().type(), "layers": len(QgsProject.instance().mapLayers())}))
app.exitQgis()
"""


def _qgis_python() -> Path:
    """The system Python with QGIS; a failure under CI=true (the set-up installs it), a skip elsewhere."""
    ok = SYSTEM_PYTHON.exists() and subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import qgis.core"], capture_output=True, check=False
    ).returncode == 0  # fmt: skip
    if not ok:
        message = (
            "QGIS is not installed for /usr/bin/python3: run deploy/install-system-deps.sh (qgis, python3-qgis)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SYSTEM_PYTHON


def _scene(path: Path) -> np.ndarray:
    """Bands stored as B08, B02, B03, B04 (descriptions say so), a nodata corner, a 'water' square."""
    rng = np.random.default_rng(5)
    image = rng.integers(300, 1500, (4, 90, 120)).astype("uint16")
    image[0] += 1600  # NIR above green: land, NDWI < 0 outside the square
    image[0, 10:40, 60:100] = 200  # low NIR: NDWI > 0.1 there
    image[1:, 10:40, 60:100] = 1500
    image[:, 70:, :25] = 0  # no data
    profile = {"driver": "GTiff", "count": 4, "height": 90, "width": 120, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32632", "transform": Affine(10.0, 0.0, 720240.0, 0.0, -10.0, 5325240.0)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        dst.descriptions = ("B08", "B02", "B03", "B04")
    return image


@pytest.mark.slow
def test_the_qgis_provider_equals_eoshard_train_predict(tmp_path: Path) -> None:
    qgis_python = _qgis_python()
    random_package(tmp_path / "models")  # writes models/pkg (id eoshard-model)
    _scene(tmp_path / "scene.tif")
    train = f"{sys.executable} -m eoshard.training.cli"
    tiling = ["--block", "64", "--overlap", "24", "--margin", "6"]
    reference = tmp_path / "reference.tif"
    done = subprocess.run(
        [*train.split(), "predict", str(tmp_path / "models" / "pkg"), str(tmp_path / "scene.tif"), str(reference),
         *tiling, "--mask", MASK],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    params = {"INPUT": str(tmp_path / "scene.tif"), "BAND_B02_0": 2, "BAND_B03_0": 3, "BAND_B04_0": 4,
              "BAND_B08_0": 1, "MASK": COMMON_MASK, "BLOCK": 64, "OVERLAP": 24, "MARGIN": 6, "PROBABILITIES": False,
              "OUTPUT": str(tmp_path / "qgis.tif")}  # fmt: skip
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen",
           "XDG_RUNTIME_DIR": str(tmp_path), "EOSHARD_MODELS": str(tmp_path / "models"), "EOSHARD_TRAIN": train}  # fmt: skip
    picture = tmp_path / "qgis-prediction.png"
    done = subprocess.run(
        [str(qgis_python), "-c", QGIS_SCRIPT, str(PLUGINS), str(ROOT / "deploy" / "qgis"), json.dumps(params),
         str(picture)],
        capture_output=True, text=True, env=env, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["algorithms"] == ["eoshard:eoshard_model"]
    assert report["labels"] == [
        f"Layer band for {b}" for b in ("B02 (blue)", "B03 (green)", "B04 (red)", "B08 (nir)")
    ]
    assert report["valid"] and report["renderer"] == "paletted" and report["layers"] == 1, report
    with rasterio.open(reference) as ref, rasterio.open(report["output"]) as got:
        expected, actual = ref.read(1), got.read(1)
        assert got.transform == ref.transform and got.crs == ref.crs and got.nodata == 255
    np.testing.assert_array_equal(actual, expected)
    assert (actual[70:, :25] == 255).all() and (actual[12:38, 62:98] == 255).all()  # nodata and masked water
    assert (actual[:60, :50] != 255).all()
    assert picture.stat().st_size > 1000
    if os.environ.get("EOSHARD_DOCS_IMAGES"):  # refresh the picture of docs/predict.md
        shutil.copy(picture, ROOT / "docs" / "img" / "qgis-prediction.png")
