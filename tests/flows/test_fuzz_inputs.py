"""Fuzzing the inputs users hand eoshard (issue #15): build config YAML, STAC item JSON, saved selections and the
label file.

Whatever comes, the CLI ends with a message or a result: never an unhandled exception (a traceback), and never
exit 0 with a dataset that ``eoshard verify`` rejects. Examples mutate real inputs (the demo config, Earth Search
items from ../shared/data, the demo's parcels) one field at a time, so that most reach past parsing into planning,
selection and rasterizing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from eoshard.flows.cli import app
from tests.conftest import shared_path
from tests.fuzzing import fuzz_settings, mutated, note_changes

pytestmark = pytest.mark.slow

BBOX = [11.96, 48.005, 11.97, 48.012]  # a few patches of 24 px: a build that passes is short


def _invoke(args: list[str]) -> Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning is a message too; only exceptions are looked for here
        return CliRunner().invoke(app, args)


def _assert_no_traceback(result: Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        shown = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"unhandled {type(result.exception).__name__}:\n{shown}\noutput:\n{result.output}")
    assert "Traceback" not in result.output
    assert result.exit_code == 0 or result.output.strip(), "a failure without any message"


def _demo_config(demo_data: Any) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": BBOX,
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02"],
        "grid": {"resolution": 10, "chunksize": 128},
        "labels": {"path": str(demo_data.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 24},
        "output": {"shard_size": 16},
    }


@pytest.fixture(scope="module")
def demo_config(demo_data) -> dict[str, Any]:
    return _demo_config(demo_data)


@fuzz_settings(15, slow_examples=True)
@given(data=st.data())
def test_build_config_yaml_never_ends_in_a_traceback_or_a_broken_dataset(data: st.DataObject, demo_config) -> None:
    config = data.draw(mutated(demo_config))
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(config, dict) and isinstance(config.get("output"), dict):
            config["output"]["path"] = str(Path(tmp) / "out")  # wherever the rest points, the output stays here
        _build_then_verify(config, Path(tmp))


def _build_then_verify(config: Any, folder: Path) -> None:
    """``eoshard build`` of ``config`` (written to ``folder``) ends in a message or a dataset ``eoshard verify``
    accepts (its output is ``folder/out`` where the config has one)."""
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    code = _cli_in_session(["build", str(path), "--workers", "1"], timeout=BUILD_SECONDS)
    event(f"build exit {code}")
    if code == 0:
        verified = _cli_in_session(["verify", str(folder / "out")], timeout=BUILD_SECONDS)
        assert verified == 0, "the build passed, verify not"


# A mutated config may ask for a huge build (a tiny patch size, a fine grid): legitimate, so it is given this long
# and then stopped with its workers, which counts as neither a pass nor a failure of the properties checked.
BUILD_SECONDS = 90


def _parcels_geojson(demo_data: Any) -> dict[str, Any]:
    """The demo's parcels inside BBOX (real-shaped multipolygons), as a GeoJSON FeatureCollection in degrees."""
    import geopandas as gpd

    parcels = gpd.read_file(demo_data.parcels).to_crs(4326).cx[BBOX[0] : BBOX[2], BBOX[1] : BBOX[3]]
    return json.loads(parcels.iloc[:6].to_json(drop_id=True))


@fuzz_settings(10, slow_examples=True)
@given(data=st.data())
def test_label_geojson_never_ends_in_a_traceback_or_a_broken_dataset(data: st.DataObject, demo_data) -> None:
    parcels = data.draw(mutated(_parcels_geojson(demo_data)))
    _build_with_file(demo_data, parcels, "parcels.geojson", ("labels", "path"))


def _build_with_file(demo_data: Any, content: Any, name: str, setting: tuple[str, str]) -> None:
    """``_build_then_verify`` of the demo config with ``content`` written as JSON to a file ``name`` that the
    config's ``setting`` (section, key) names."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(content, allow_nan=True))
        config = _demo_config(demo_data)
        config[setting[0]][setting[1]], config["output"]["path"] = str(path), str(Path(tmp) / "out")
        _build_then_verify(config, Path(tmp))


@pytest.fixture(scope="module")
def saved_selection(demo_data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo config's products as ``eoshard select --out`` saves them (items with self links, relative hrefs)."""
    out = tmp_path_factory.mktemp("fuzz-selection") / "selection.json"
    config = _demo_config(demo_data)
    catalog = config["catalog"]
    result = _invoke(["select", "--source", catalog["source"], "--collection", catalog["collection"],
                      "--aoi", ",".join(map(str, BBOX)), "--start", config["period"]["start"],
                      "--end", config["period"]["end"], "--max-cloud", "60", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


@fuzz_settings(10, slow_examples=True)
@given(data=st.data())
def test_a_saved_selection_never_ends_in_a_traceback_or_a_broken_dataset(
    data: st.DataObject, demo_data, saved_selection
) -> None:
    """A selection reviewed and edited by hand (``catalog.selection``): the build plans and reads from the items'
    fields (projection, assets, raster bands, dates) as they stand."""
    items = data.draw(mutated(saved_selection))
    note_changes(saved_selection, items)
    _build_with_file(demo_data, items, "selection.json", ("catalog", "selection"))


def _cli_in_session(args: list[str], timeout: float) -> int | None:
    """Exit code of ``eoshard ARGS`` in a session of its own (None when stopped at ``timeout``); fails the test on
    a traceback or on a failure without a message."""
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None
    assert "Traceback" not in out + err, out + err
    assert process.returncode == 0 or err.strip(), f"exit {process.returncode} without any message"
    return process.returncode


@fuzz_settings(15)
@given(text=st.text(max_size=200))
def test_config_text_that_is_not_a_config(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "build.yaml"
        path.write_text(text)
        result = _invoke(["build", str(path)])
        _assert_no_traceback(result)
        assert result.exit_code != 0


def _items() -> dict[str, Any]:
    collection = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())
    return {"type": "FeatureCollection", "features": collection["features"][:4]}


@fuzz_settings(40, slow_examples=True)
@given(data=st.data())
def test_stac_item_json_never_ends_in_a_traceback(data: st.DataObject) -> None:
    items = data.draw(mutated(_items()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.json"
        path.write_text(json.dumps(items, allow_nan=True))
        args = ["select", "--source", str(path), "--aoi=-179,-80,179,80", "--start", "2023-01-01"]
        result = _invoke([*args, "--end", "2025-12-31", "--json"])
        _assert_no_traceback(result)
        event(f"select exit {result.exit_code}")


@pytest.fixture(scope="module")
def built_dataset(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset of a few patches (both formats), built once for the manifest examples."""
    folder = tmp_path_factory.mktemp("fuzz-dataset")
    config = _demo_config(demo_data)
    config["output"]["path"] = str(folder / "out")
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    assert _cli_in_session(["build", str(folder / "build.yaml"), "--workers", "1"], timeout=300) == 0
    return folder / "out"


@fuzz_settings(25, slow_examples=True)
@given(data=st.data())
def test_a_dataset_manifest_never_ends_in_a_traceback(data: st.DataObject, built_dataset: Path) -> None:
    """A dataset handed on (``dataset.json`` edited by hand or by another tool): ``eoshard verify`` and ``inspect``
    end in a message, ``eoshard.open_dataset`` and the training readers raise their own errors, never another."""
    import eoshard
    from eoshard.pipeline.errors import PipelineError
    from eoshard.training.data import close_environments, make_dataset
    from eoshard.training.errors import TrainingError
    from eoshard.training.manifest import Manifest

    original = json.loads((built_dataset / "dataset.json").read_text())
    manifest = data.draw(mutated(original))
    note_changes(original, manifest)
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(built_dataset, Path(tmp) / "dataset")
        (copy / "dataset.json").write_text(json.dumps(manifest, allow_nan=True))
        for command in (["verify", str(copy), "--sources", "1"], ["inspect", str(copy), "--out", f"{tmp}/q.png"]):
            result = _invoke(command)
            _assert_no_traceback(result)
            event(f"{command[0]} exit {result.exit_code}")
        with contextlib.suppress(PipelineError):
            eoshard.open_dataset(copy).load()
        try:
            with contextlib.suppress(TrainingError):
                for fmt in ("lmdb", "zarr"):
                    samples = make_dataset(Manifest.read(copy), fmt)
                    if len(samples):
                        samples[len(samples) - 1]
        finally:  # before the folder goes: an environment left open holds the numbers of its deleted inodes
            close_environments(copy)


@pytest.fixture(scope="module")
def package_item(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A model package of 3 dates x 4 bands (random weights) and its MLM item."""
    from eoshard.training.package import ITEM
    from tests.training.helpers import random_package

    root = tmp_path_factory.mktemp("fuzz-predict")
    random_package(root, n_dates=3)
    return root / "pkg", json.loads((root / "pkg" / ITEM).read_text())


@fuzz_settings(8, slow_examples=True)  # each a prediction of a few seconds
@given(data=st.data())
def test_eoshard_predict_with_a_package_item_never_ends_in_a_traceback(
    data: st.DataObject, package_item, demo_data
) -> None:
    """``eoshard predict`` reads the item's input facts itself (bands, dates, resolution, reflectance) to make
    the stack from the catalog, before ``eoshard-train predict`` reads the rest."""
    package, item = package_item
    changed = data.draw(mutated(item))
    note_changes(item, changed)
    with tempfile.TemporaryDirectory() as tmp:
        copy = shutil.copytree(package, Path(tmp) / "pkg")
        (copy / "item.json").write_text(json.dumps(changed, allow_nan=True))
        out = Path(tmp) / "map.tif"
        args = ["predict", str(copy), str(out), "--source", str(demo_data.catalog), "--aoi", ",".join(map(str, BBOX)),
                "--start", "2024-04-01", "--end", "2024-09-30", "--max-cloud", "60", "--block", "64",
                "--overlap", "24", "--margin", "6"]  # fmt: skip
        code = _cli_in_session(args, timeout=BUILD_SECONDS)
        event(f"predict exit {code}")
        if code == 0:
            assert out.is_file()
