"""The tile-scale benchmark world tells how far it is (minutes per product at a whole tile) and comes with a
build of itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.demo.tile import BANDS_10, BANDS_20, SCALES, _smooth, make_parcels, write_tile_world
from eoshard.flows.demo.world import CLASSES


def test_the_world_reports_each_product_written(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    world = write_tile_world(
        tmp_path, "small", dates=2, on_progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(0, 2), (1, 2), (2, 2)]
    items = list(pystac.Catalog.from_file(str(world.catalog)).get_items(recursive=True))
    assert len(items) == world.n_items == 2
    assert all(Path(a.get_absolute_href() or "").is_file() for item in items for a in item.assets.values())


def test_the_parcels_carry_the_demo_worlds_crop_names() -> None:
    parcels = make_parcels(SCALES["small"])
    assert len(parcels) == 1273 and set(parcels.class_code) == set(CLASSES)
    assert all(CLASSES[code] == name for code, name in zip(parcels.class_code, parcels.class_name, strict=True))


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
    assert manifest["labels"]["classes"] == {str(code): name for code, name in CLASSES.items()}
    # 2560 m split blocks: 5120 m ones, the default, leave the small world's test split empty (and warn). Of the
    # 64 candidates, 48, 6 and 10 lie in train, val and test blocks; one of val has too few valid dates of the two
    assert manifest["splits"]["block_size"] == 2560
    assert manifest["dropped"] == {"too_few_dates": 1}
    assert manifest["splits"]["counts"] == {"train": 48, "val": 5, "test": 10}
    assert "holds no sample" not in result.output


def test_the_world_has_the_same_bytes_whatever_the_processes(tmp_path: Path) -> None:
    one = write_tile_world(tmp_path / "one", "small", dates=2, processes=1)
    two = write_tile_world(tmp_path / "two", "small", dates=2, processes=2)
    # build.yaml names its own path; every other file, the GeoPackage's time stamp included, is the same
    files = sorted(p.relative_to(one.root) for p in one.root.rglob("*") if p.is_file() and p.name != "build.yaml")
    assert sum(p.suffix == ".tif" for p in files) == 2 * 11  # 10 bands and the SCL per product
    assert {Path("parcels.gpkg"), Path("aoi.geojson"), Path("catalog/catalog.json")} <= set(files)
    assert files == sorted(
        p.relative_to(two.root) for p in two.root.rglob("*") if p.is_file() and p.name != "build.yaml"
    )
    for name in files:
        assert (one.root / name).read_bytes() == (two.root / name).read_bytes(), name


def test_the_texture_is_bilinear_between_its_lattice_values() -> None:
    # the world's texture from each pixel's four lattice values, as written first: the faster separable form must
    # keep its bits (the benchmark worlds of earlier runs stay the same)
    shape, cell = (173, 211), 40
    lattice = np.random.default_rng(3).random((shape[0] // cell + 2, shape[1] // cell + 2), dtype=np.float32)
    ys = np.arange(shape[0], dtype=np.float32) / cell
    xs = np.arange(shape[1], dtype=np.float32) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = lattice[y0][:, x0] * (1 - fx) + lattice[y0][:, x0 + 1] * fx
    bottom = lattice[y0 + 1][:, x0] * (1 - fx) + lattice[y0 + 1][:, x0 + 1] * fx
    expected = top * (1 - fy) + bottom * fy
    got = _smooth(np.random.default_rng(3), shape, cell)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected)
    assert got.min() >= 0.0 and got.max() < 1.0


def test_a_band_is_the_written_formula_of_surface_texture_noise_and_clouds() -> None:
    from eoshard.flows.demo.scene import BOA_ADD_OFFSET, QUANTIFICATION
    from eoshard.flows.demo.tile import _CLOUD, _SOIL, _VEG, _band

    shape = (150, 170)
    veg = np.random.default_rng(5).random(shape, dtype=np.float32)
    clouds = np.random.default_rng(6).random(shape) < 0.3
    b, res = 3, 20
    reference = np.random.default_rng(11)  # the formula as first written, one whole-band temporary per step
    surface = _SOIL[b] * (1 - veg) + _VEG[b] * veg
    texture = 1.0 + 0.12 * (_smooth(reference, shape, 40 // (res // 10)) - 0.5)
    noise = reference.standard_normal(shape, dtype=np.float32) * np.float32(0.006)
    reflectance = np.where(clouds, _CLOUD + noise * 4, surface * texture + noise)
    expected = np.clip(reflectance * QUANTIFICATION + BOA_ADD_OFFSET, 1, 65535).astype(np.uint16)
    got = _band(np.random.default_rng(11), b, veg, clouds, res)
    assert got.dtype == np.uint16
    assert np.array_equal(got, expected)
    assert len(np.unique(got)) > 100  # textured, not a constant
