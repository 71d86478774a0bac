"""Fuzzing what users hand ``eoshard-train predict``: a model package (someone else's export, edited by hand), its
STAC MLM item mutated a field at a time, and a Zarr scene, its attributes mutated the same way. Whatever comes,
predict ends in one ``error:`` line and exit 1, or writes its output: never an unhandled exception."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hypothesis import event, given
from hypothesis import strategies as st

from eoshard.training.cli import main
from eoshard.training.package import ITEM
from tests.fuzzing import fuzz_settings, mutated
from tests.training.helpers import BANDS, random_package

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def package_and_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fuzz-package")
    random_package(root)
    scene = zarr.create_array(str(root / "scene.zarr"), shape=(4, 40, 40), dtype="uint16", chunks=(4, 20, 20))
    scene[:] = np.random.default_rng(5).integers(1, 3000, size=(4, 40, 40), dtype="uint16")
    scene.attrs.update({"bands": BANDS, "crs": "EPSG:32632", "transform": [10, 0, 600000, 0, -10, 5300000]})
    return root / "pkg", root / "scene.zarr"


@fuzz_settings(40, slow_examples=True)
@given(data=st.data())
def test_a_package_item_never_ends_in_a_traceback(data: st.DataObject, package_and_scene) -> None:
    package, scene = package_and_scene
    item: Any = data.draw(mutated(json.loads((package / ITEM).read_text())))
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(package, Path(tmp) / "pkg")
        (copy / ITEM).write_text(json.dumps(item, allow_nan=True))
        _predicts_or_says_why(copy, scene, Path(tmp) / "out.zarr")


@fuzz_settings(40, slow_examples=True)
@given(data=st.data())
def test_a_zarr_scenes_attributes_never_end_in_a_traceback(data: st.DataObject, package_and_scene) -> None:
    package, scene = package_and_scene
    base = dict(zarr.open_array(str(scene), mode="r").attrs) | {"nodata": 0, "dates": ["2024-05-18T10:20:21"]}
    attrs: Any = data.draw(mutated(base))
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(scene, Path(tmp) / "scene.zarr")
        zarr.open_array(str(copy), mode="r+").attrs.put(attrs)
        for out in (Path(tmp) / "out.tif", Path(tmp) / "out.zarr"):
            _predicts_or_says_why(package, copy, out)


def _predicts_or_says_why(package: Path, scene: Path, out: Path) -> None:
    """``eoshard-train predict``: an output, or one ``error:`` line, exit 1 and no output; an exception fails the
    test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["predict", str(package), str(scene), str(out)])
    event(f"predict {out.suffix} exit {code}")
    if code == 0:
        assert out.exists()
    else:
        assert code == 1 and err.getvalue().startswith("error: "), err.getvalue()
        assert not out.exists(), "a failed predict left its output"
