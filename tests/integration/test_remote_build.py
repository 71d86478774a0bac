"""Builds that read their products over the network: HTTP with Range requests and S3 (moto) give the bytes of a
build from local files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.demo.serve import remote_item_collection, serve_folder
from eoshard.flows.demo.tile import TileWorld, write_tile_world
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.services.moto_s3 import BUCKET


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TileWorld:
    """The small tile world (1098 px: several 1024 px COG blocks per 10 m band), three acquisitions."""
    return write_tile_world(tmp_path_factory.mktemp("tile-world"), "small", dates=3)


def _build(world: TileWorld, source: Path, out: Path) -> Path:
    config = {
        "name": out.name,
        "catalog": {"source": str(source), "collection": "sentinel-2-l2a", "max_cloud": 100},
        "aoi": str(world.aoi),
        "period": {"start": "2024-04-01", "end": "2024-10-31"},
        "bands": ["B02", "B04", "B08", "B11", "B12"],
        "labels": {"path": str(world.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 256},
        "timeseries": {"mask": "scl", "min_valid_fraction": 0.0},
        "output": {"path": str(out), "shard_size": 4},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["build", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out


def _same(a: Path, b: Path) -> None:
    files_a = {k: v for k, v in dataset_files(a).items() if not k.startswith("_build")}
    files_b = {k: v for k, v in dataset_files(b).items() if not k.startswith("_build")}
    assert sorted(files_a) == sorted(files_b)
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert lmdb_contents(a) == lmdb_contents(b)


@pytest.fixture(scope="module")
def local(world: TileWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(world, world.catalog, tmp_path_factory.mktemp("local") / "tile")


@pytest.mark.slow
def test_a_build_over_http_equals_the_build_from_files(world: TileWorld, local: Path, tmp_path: Path) -> None:
    with serve_folder(world.root, latency=0.005) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        assert '"href": "http://127.0.0.1:' in items.read_text()
        remote = _build(world, items, tmp_path / "tile")
        requests, fetched = served.traffic.requests, served.traffic.bytes
    _same(local, remote)
    tif = sum(p.stat().st_size for p in world.root.rglob("*.tif"))
    assert requests > 0 and 0 < fetched < 2 * tif  # ranges of the files, not whole files per patch


@pytest.mark.slow
def test_a_build_from_s3_equals_the_build_from_files(
    world: TileWorld, local: Path, s3_env: Any, tmp_path: Path
) -> None:
    s3_env.put(str(world.root / "catalog"), f"{BUCKET}/tile-world/catalog", recursive=True)
    items = remote_item_collection(world.catalog, world.root, f"s3://{BUCKET}/tile-world", tmp_path / "items.json")
    remote = _build(world, items, tmp_path / "tile")
    _same(local, remote)
