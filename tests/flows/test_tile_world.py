"""The tile-scale benchmark world tells how far it is (minutes per product at a whole tile) and comes with a
build of itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pystac
import pytest
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.demo.tile import BANDS_10, BANDS_20, write_tile_world


def test_the_world_reports_each_product_written(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    world = write_tile_world(
        tmp_path, "small", dates=2, on_progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(0, 2), (1, 2), (2, 2)]
    items = list(pystac.Catalog.from_file(str(world.catalog)).get_items(recursive=True))
    assert len(items) == world.n_items == 2
    assert all(Path(a.get_absolute_href() or "").is_file() for item in items for a in item.assets.values())


def test_an_unknown_scale_is_refused_with_the_ones_there_are(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "demo-data", str(tmp_path / "w"),
         "--scale", "huge"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert run.returncode == 2
    assert "expected one of tile, quarter, sixteenth, small, got 'huge'" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_the_world_comes_with_a_build_of_itself(tmp_path: Path) -> None:
    world = write_tile_world(tmp_path / "world", "small", dates=2)
    result = CliRunner().invoke(app, ["build", str(world.config), "--workers", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((world.root / "dataset" / "dataset.json").read_text())
    assert manifest["bands"] == [*BANDS_10, *BANDS_20]
    assert manifest["dates"] == ["2024-04-03T10:30:31", "2024-04-18T10:30:31"]
    side = (world.size * 10 - 2 * 95) // (128 * 10)  # whole 128 px patches across the AOI, 95 m inside the edge
    assert manifest["n_candidates"] == side * side == 64
    assert manifest["n_samples"] + sum(manifest["dropped"].values()) == 64
    assert sorted(manifest["formats"]) == ["lmdb", "zarr"]
