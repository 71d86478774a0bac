"""Fuzzing the two inputs users hand eoshard (issue #15): build config YAML and STAC item JSON.

Whatever comes, the CLI ends with a message or a result: never an unhandled exception (a traceback), and never
exit 0 with a dataset that ``eoshard verify`` rejects. Examples mutate real inputs (the demo config, Earth Search
items from ../shared/data) one field at a time, so that most reach past parsing into planning and selection.
"""

from __future__ import annotations

import copy
import json
import os
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
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from eoshard.flows.cli import app
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

# CI draws the same examples on every run (derandomized: a red CI names a change, not an unlucky draw, and the
# failure prints its blob to reproduce it); elsewhere each run draws new ones, and ``make fuzz`` draws
# ``EOSHARD_FUZZ`` times as many (hypothesis's local database replays what failed first).
FUZZ_SCALE = int(os.environ.get("EOSHARD_FUZZ", "1"))
EXPLORE = FUZZ_SCALE > 1 or os.environ.get("CI", "").lower() != "true"


def fuzz_settings(examples: int, *, slow_examples: bool = False) -> settings:
    """``examples`` examples (times ``EOSHARD_FUZZ``), derandomized under CI unless asked to explore."""
    checks = [HealthCheck.too_slow, HealthCheck.data_too_large] if slow_examples else []
    return settings(max_examples=examples * FUZZ_SCALE, deadline=None, derandomize=not EXPLORE, print_blob=True,
                    suppress_health_check=checks)  # fmt: skip


BBOX = [11.96, 48.005, 11.97, 48.012]  # a few patches of 24 px: a build that passes is short

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=8,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a JSON-like value (dict keys and list positions)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data[:3]):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three fields replaced by arbitrary values, deleted, or given an unknown sibling."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(VALUES)
    return data


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
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / "parcels.geojson"
        labels.write_text(json.dumps(parcels, allow_nan=True))
        config = _demo_config(demo_data)
        config["labels"]["path"], config["output"]["path"] = str(labels), str(Path(tmp) / "out")
        _build_then_verify(config, Path(tmp))


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
