"""A missing or corrupt asset mid-build, and a full disk: a clear error, and what was written stays valid."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import lmdb
import pystac
import pytest
from typer.testing import CliRunner

from eoshard.flows.cli import app
from tests.integration.test_resume import _config

pytestmark = pytest.mark.slow


def _build(config: Path) -> tuple[int, str]:
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(config), "--workers", "1"])
    return result.exit_code, result.output


def _verify(out: Path) -> None:
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["verify", str(out), "--sources", "2"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_bad_asset_names_product_and_asset_and_a_rerun_finishes(demo_data, tmp_path: Path, damage: str) -> None:
    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    catalog = pystac.Catalog.from_file(str(world / "catalog" / "catalog.json"))
    # the last in-period acquisition in the grid's zone: its shards fail, the others may be committed
    items = sorted(
        (i for i in catalog.get_items(recursive=True) if i.properties["proj:code"] == "EPSG:32632"
         and i.datetime.strftime("%Y-%m") == "2024-09" and i.properties["eo:cloud_cover"] <= 60),
        key=lambda i: i.id,
    )  # fmt: skip
    item = items[-1]
    path = Path(item.assets["B11"].get_absolute_href())
    original = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(original[: len(original) // 3])
    demo = type(demo_data)(world, world / "catalog" / "catalog.json", demo_data.aoi, demo_data.parcels, 0)
    out = tmp_path / "out"
    config = _config(demo, out)
    code, output = _build(config)
    assert code == 1, output
    assert f"could not read asset B11 of product {item.id}" in output
    assert "Traceback" not in output
    assert not (out / "dataset.json").exists()
    path.write_bytes(original)
    code, output = _build(config)
    assert code == 0, output
    _verify(out)
    assert json.loads((out / "dataset.json").read_text())["n_candidates"] == 56


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def test_a_full_disk_stops_cleanly_and_a_rerun_with_space_finishes(demo_data, tmp_path: Path) -> None:
    """A real ENOSPC: the output (4.4 MiB when done) lies on a 2 MiB tmpfs (the tests run as root, as CI does)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        out = disk / "out"
        config = _config(demo_data, out)
        code, output = _build(config)
        assert code == 1, output
        assert "No space left on device" in output
        assert "rerun" in output and "Traceback" not in output
        records = [json.loads(p.read_text()) for p in (out / "_build" / "commits").glob("shard-*.json")]
        committed = len(records)
        assert committed > 0  # it stopped mid-build
        # what was committed is intact: every committed sample's LMDB value matches its recorded checksum
        for record in records:
            for row in record["rows"]:
                env = lmdb.open(str(out / "data.lmdb" / row["lmdb_part"]), readonly=True, lock=False)
                with env.begin() as txn:
                    assert hashlib.sha256(txn.get(row["key"].encode())).hexdigest() == row["lmdb_sha256"]
                env.close()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        code, output = _build(config)
        assert code == 0, output
        assert len(list((out / "_build" / "commits").glob("shard-*.json"))) == 19 > committed
        _verify(out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
