"""A build whose class column holds text names: codes in sorted order, recorded in dataset.json and STAC."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.demo.world import CLASSES
from tests.demo_config import demo_build_config, write_config

pytestmark = pytest.mark.slow


def _build(demo_data, out: Path, labels: dict, config_path: Path) -> dict:  # type: ignore[no-untyped-def,type-arg]
    config = demo_build_config(demo_data, out, period={"start": "2024-06-01", "end": "2024-06-30"},
                               labels={"path": str(demo_data.parcels), **labels})  # fmt: skip
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(write_config(config, config_path)), "--workers", "1"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "dataset.json").read_text())


def test_text_class_names_build_like_their_codes(demo_data, tmp_path: Path) -> None:
    by_name = _build(demo_data, tmp_path / "names", {"class_column": "class_name"}, tmp_path / "names.yaml")
    names = sorted({CLASSES[c] for c in CLASSES if c != 0})
    assert by_name["labels"]["classes"] == {str(i): n for i, n in enumerate(names, start=1)}
    collection = json.loads((tmp_path / "names" / "collection.json").read_text())
    assert collection["eoshard:classes"] == by_name["labels"]["classes"]
    # with the demo's own codes as the mapping, the class pixels are the sorted-order ones relabelled
    mapping = {n: c for c, n in CLASSES.items() if c != 0}
    by_map = _build(demo_data, tmp_path / "map", {"class_column": "class_name", "class_codes": mapping},
                    tmp_path / "map.yaml")  # fmt: skip
    assert by_map["labels"]["classes"] == {str(c): n for c, n in sorted(CLASSES.items()) if c != 0}
    a = zarr.open_group(str(tmp_path / "names" / "data.zarr"), mode="r")["class"][:]
    b = zarr.open_group(str(tmp_path / "map" / "data.zarr"), mode="r")["class"][:]
    relabel = np.zeros(len(names) + 1, dtype=a.dtype)
    for i, n in enumerate(names, start=1):
        relabel[i] = mapping[n]
    np.testing.assert_array_equal(relabel[a], b)
    assert len(np.unique(a)) > 2 and not np.array_equal(a, b)
