"""A missing or corrupt asset mid-build, and a full disk: a clear error, and what was written stays valid."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import pystac
import pytest
import rasterio
import zarr
from safetensors.numpy import load
from typer.testing import CliRunner

from eoshard.flows.cli import app
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.integration.test_resume import N_SHARDS, _config

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
    unreadable = out / "_build" / "unreadable.json"  # a file cut short: its size may change when it is repaired
    if damage == "corrupt":
        assert json.loads(unreadable.read_text()) == {item.id: ["B11"]}
    else:
        assert not unreadable.exists()  # the planning found it missing: no run started
    path.write_bytes(original)
    code, output = _build(config)
    assert code == 0, output
    assert not unreadable.exists()
    _verify(out)
    assert json.loads((out / "dataset.json").read_text())["n_candidates"] == 56


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def test_a_full_disk_stops_cleanly_and_a_rerun_with_space_finishes(demo_data, tmp_path: Path) -> None:
    """A real ENOSPC: the output (4.4 MiB when done) lies on a 2 MiB tmpfs (the tests run as root, as CI does).
    The build warns once its first shards show that the disk will fill, before it does."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        out = disk / "out"
        config = _config(demo_data, out)
        code, output = _build(config)
        assert code == 1, output
        assert "No space left on device" in output
        assert "rerun" in output and "Traceback" not in output
        shown = " ".join(output.split())
        warned = shown.find("warning: the output's disk will fill before the build ends: its first ")
        assert -1 < warned < shown.find("No space left on device"), shown  # said while there was time to act
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
        assert "disk will fill" not in output  # 64 MiB hold the rest
        assert len(list((out / "_build" / "commits").glob("shard-*.json"))) == 19 > committed
        _verify(out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _tiled_copy(path: Path, block: int) -> None:
    """Rewrite a COG as a DEFLATE GeoTIFF with small tiles (same pixels, same georeferencing)."""
    with rasterio.open(path) as src:
        profile, pixels = src.profile, src.read()
    profile.update(driver="GTiff", tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)


def _garble_tile(path: Path, tile_row: int, tile_col: int) -> None:
    """Overwrite one tile's compressed bytes, read from the classic little-endian TIFF's first IFD."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\x00"
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n_entries,) = struct.unpack_from("<H", data, ifd)
    tags: dict[int, list[int]] = {}
    for i in range(n_entries):
        tag, kind, count, value = struct.unpack_from("<HHII", data, ifd + 2 + 12 * i)
        if tag in (256, 322, 324, 325):  # ImageWidth, TileWidth, TileOffsets, TileByteCounts
            size = {3: 2, 4: 4}[kind]
            at = ifd + 2 + 12 * i + 8 if count * size <= 4 else value
            tags[tag] = list(struct.unpack_from(f"<{count}{'H' if size == 2 else 'I'}", data, at))
    per_row = -(-tags[256][0] // tags[322][0])
    n = tile_row * per_row + tile_col
    offset, length = tags[324][n], tags[325][n]
    data[offset : offset + length] = bytes(range(256)) * (length // 256) + b"\xff" * (length % 256)
    path.write_bytes(bytes(data))


def test_a_corrupt_tile_fails_only_the_shards_that_read_it(demo_data, tmp_path: Path) -> None:
    """A product's file is corrupt where only the last shards read: the others commit, and stay valid.

    The resume config's grid is 180 x 198 px (EPSG:32632, origin 720660 E 5322840 N); its 56 patches of 24 px go
    row by row into shards of 3. One 16 px tile of B02 of the 2024-09-15 32UQU product is garbled: source rows
    448-463, cols 240-255, i.e. grid rows 148-163, cols 150-165. The build's direct reads decode the file's own
    blocks, so only the patches over that tile fail (patch row 6, column 6: shard 18); every other shard is
    committed. (Read through the cubes' graph, stackstac's warped VRT reads blocks of 128 rows by the full width
    and shards 13-18 fail.)
    """
    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    demo = type(demo_data)(world, world / "catalog" / "catalog.json", demo_data.aoi, demo_data.parcels, 0)
    reference = tmp_path / "reference"
    code, output = _build(_config(demo, reference))
    assert code == 0, output
    catalog = pystac.Catalog.from_file(str(demo.catalog))
    (item,) = (i for i in catalog.get_items(recursive=True) if "20240915T102021_N0510_R065_T32UQU" in i.id)
    path = Path(item.assets["B02"].get_absolute_href())
    original = path.read_bytes()
    _tiled_copy(path, 16)
    _garble_tile(path, 448 // 16, 240 // 16)

    out = tmp_path / "out"
    config = _config(demo, out)
    code, output = _build(config)
    assert code == 1, output
    assert "Traceback" not in output
    assert f"could not read asset B02 of product {item.id} ({path})" in output, output
    rows, cols = range(148, 164), range(150, 166)
    touching = {
        n // 3 for n in range(56) if set(range(24 * (n // 8), 24 * (n // 8) + 24)) & set(rows)
        and set(range(24 * (n % 8), 24 * (n % 8) + 24)) & set(cols)
    }  # fmt: skip
    assert touching == {18}
    assert f"(1 of {N_SHARDS} shards failed, {N_SHARDS - 1} are committed)" in output
    assert not (out / "dataset.json").exists()
    records = {
        int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in (out / "_build" / "commits").glob("shard-*")
    }
    assert set(records) == set(range(N_SHARDS)) - touching
    _check_committed(out, records.values())

    path.write_bytes(original)
    code, output = _build(config)
    assert code == 0, output
    assert dataset_files(out) == dataset_files(reference)
    assert lmdb_contents(out) == lmdb_contents(reference)


def test_over_http_a_corrupt_tile_fails_only_the_shards_that_read_it_with_reads_ahead(
    demo_data, tmp_path: Path
) -> None:
    """The same corrupt tile served over HTTP, where the worker fetches its next shards' blocks ahead (one worker:
    every later shard is its). The read ahead leaves the error to the read, which names the asset by its URL; the
    same one shard fails and the others commit, valid."""
    from eoshard.flows.demo.serve import remote_item_collection, serve_folder

    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    catalog = world / "catalog" / "catalog.json"
    (item,) = (
        i for i in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)
        if "20240915T102021_N0510_R065_T32UQU" in i.id
    )  # fmt: skip
    path = Path(item.assets["B02"].get_absolute_href())
    _tiled_copy(path, 16)
    _garble_tile(path, 448 // 16, 240 // 16)
    out = tmp_path / "out"
    with serve_folder(world, latency=0.002) as served:
        items = remote_item_collection(catalog, world, served.url, tmp_path / "items.json")
        remote = type(demo_data)(world, items, demo_data.aoi, demo_data.parcels, 0)
        code, output = _build(_config(remote, out))
        href = f"{served.url}/{path.relative_to(world).as_posix()}"
    assert code == 1, output
    assert "Traceback" not in output
    assert f"could not read asset B02 of product {item.id} ({href})" in output, output
    assert f"(1 of {N_SHARDS} shards failed, {N_SHARDS - 1} are committed)" in output
    records = {
        int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in (out / "_build" / "commits").glob("shard-*")
    }
    assert set(records) == set(range(N_SHARDS)) - {18}
    _check_committed(out, records.values())


def _check_committed(out: Path, records: Iterable[dict[str, Any]]) -> None:
    """Committed shards read with plain zarr, lmdb and safetensors: checksums hold and both formats agree."""
    group = zarr.open_group(str(out / "data.zarr"), mode="r")
    n_samples = 0
    for record in records:
        for name, digest in record["checksums"].items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
        for row in record["rows"]:
            env = lmdb.open(str(out / "data.lmdb" / row["lmdb_part"]), readonly=True, lock=False)
            with env.begin() as txn:
                value = txn.get(row["key"].encode())
            env.close()
            assert hashlib.sha256(value).hexdigest() == row["lmdb_sha256"]
            tensors = load(value)
            kept = tensors["time_index"]
            slot = np.asarray(group["s2_10m"][row["zarr_index"]])  # type: ignore[index]
            np.testing.assert_array_equal(slot[kept, 0], tensors["B02"])
            assert slot[kept].any()
            n_samples += 1
    assert n_samples > 30


def test_the_terminal_shows_a_failed_shard_once_without_the_workers_tracebacks(demo_data, tmp_path: Path) -> None:
    """``eoshard build`` in a terminal (its own process, the LocalCluster's workers writing to the same stderr): the
    corrupt tile's shard is reported in the one error line, not also as the workers' "Compute Failed" records."""
    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    demo = type(demo_data)(world, world / "catalog" / "catalog.json", demo_data.aoi, demo_data.parcels, 0)
    (item,) = (
        i for i in pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True)
        if "20240915T102021_N0510_R065_T32UQU" in i.id
    )  # fmt: skip
    path = Path(item.assets["B02"].get_absolute_href())
    _tiled_copy(path, 16)
    _garble_tile(path, 448 // 16, 240 // 16)
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build",
               str(_config(demo, tmp_path / "out")), "--workers", "2"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    assert f"could not read asset B02 of product {item.id} ({path})" in run.stderr
    assert "Compute Failed" not in run.stderr and "Traceback" not in run.stderr, run.stderr
