"""The tile-scale benchmark world tells how far it is (minutes per product at a whole tile)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pystac

from eoshard.flows.demo.tile import write_tile_world


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
