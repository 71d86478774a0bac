"""Recorded real items of Earth Search v0/v1/c1/L1C, Planetary Computer and CDSE drive full builds: select, build, verify.

Each item keeps its recorded metadata; its assets are local files written exactly as the item declares them
(tests/real_items.py). The shards must hold the files' values bit for bit, whatever the band is called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import zarr
from pyproj import Transformer
from rasterio.windows import from_bounds
from typer.testing import CliRunner

from eoshard.flows.cli import app
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.demo_config import write_config
from tests.real_items import (
    inner_window,
    item_epsg,
    localise,
    raster_of,
    recorded_item,
    window_grid,
    write_item_collection,
)

pytestmark = pytest.mark.slow

SIZE = 32  # patch size, px
CASES = {
    "earth-search-c1": ("earth-search__sentinel-2-c1-l2a", "S2B_T32VKL_20250717T112116_L2A", ["red", "nir", "scl"]),
    "earth-search-v1": ("earth-search__sentinel-2-l2a", "S2B_32VKL_20250717_0_L2A", ["red", "nir", "scl"]),
    "earth-search-v0": ("earth-search-v0", "S2B_32VKL_20250717_0_L2A", ["B04", "B08", "SCL"]),  # sentinel:* fields
    "earth-search-l1c": ("earth-search__sentinel-2-l1c", "S2B_32VKL_20250717_0_L1C", ["red", "nir"]),
    "cdse": ("cdse__sentinel-2-l2a", "S2B_MSIL2A_20200322T074609_N0500_R135_T36NYH_20230612T214223",
             ["B04_10m", "B08_10m", "SCL_20m"]),  # STAC 1.1: raster:scale, proj:code on the assets only
    "planetary-computer": ("planetarycomputer__sentinel-2-l2a",
                           "S2A_MSIL2A_20240228T025651_R032_T53VML_20240228T071454", ["B04", "B08"]),
}  # fmt: skip


LANDSAT = ("landsat-c2-l2", "LC09_L2SP_010065_20220129_02_T1", ["red", "nir08", "qa_pixel"])  # Planetary Computer


def _world(case: str, folder: Path) -> tuple[dict[str, Any], Path, tuple[float, float, float, float]]:
    name, item_id, keys = LANDSAT if case == "landsat" else CASES[case]
    item = recorded_item(name, item_id)
    first = keys[0]
    row, col = inner_window(item, first, 4 * SIZE)
    grid = window_grid(item, first, row, col, 4 * SIZE)
    local = localise(item, keys, folder / "cogs", grid)
    source = write_item_collection([local], folder / "items.json")
    # the AOI: the middle of the written window, in degrees
    left, bottom, right, top = grid.extent.boundingbox
    inset = SIZE * abs(grid.resolution.x)
    to_4326 = Transformer.from_crs(item_epsg(item), 4326, always_xy=True)
    xs, ys = to_4326.transform([left + inset, right - inset], [bottom + inset, top - inset])
    return local, source, (min(xs), min(ys), max(xs), max(ys))


def _config(
    local: dict[str, Any], source: Path, aoi: Any, bands: list[str], out: Path, **timeseries: Any
) -> dict[str, Any]:
    day = local["properties"]["datetime"][:10]
    res = local["properties"].get("gsd", 10)  # 30 for Landsat
    return {
        "name": "real", "catalog": {"source": str(source)}, "aoi": list(aoi), "period": {"start": day, "end": day},
        "bands": bands, "grid": {"resolution": res, "crs": f"EPSG:{item_epsg(local)}", "chunksize": 128},
        "patches": {"size": SIZE}, "timeseries": timeseries,
        "output": {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 8},
    }  # fmt: skip


def _build_and_verify(config: dict[str, Any], path: Path, said: list[str] | None = None) -> dict[str, Any]:
    """Build and verify through the CLI; ``said`` gets the build's output."""
    runner = CliRunner()
    selected = runner.invoke(app, ["select", str(write_config(config, path)), "--json"])
    assert selected.exit_code == 0, selected.output
    built = runner.invoke(app, ["build", str(path), "--workers", "1"])
    assert built.exit_code == 0, built.output
    if said is not None:
        said.append(built.output)
    out = Path(config["output"]["path"])
    verified = runner.invoke(app, ["verify", str(out), "--sources", "3"])
    assert verified.exit_code == 0, verified.output
    manifest = dict(json.loads((out / "dataset.json").read_text()))
    assert sorted(r["id"] for r in json.loads(selected.output)) == sorted(manifest["products"])  # select = build
    return manifest


def _read(local: dict[str, Any], key: str, patch: str) -> Any:
    """The localised file of asset ``key`` over the patch ``patch`` (an index key), read with rasterio."""
    with rasterio.open(local["assets"][key]["href"]) as src:
        return src.read(1, window=from_bounds(*_patch_bounds(patch), transform=src.transform))


def _patch_bounds(key: str) -> tuple[float, float, float, float]:
    _, res, x0, y0 = (float(v) for v in key.split("_"))
    return (x0, y0 - SIZE * res, x0 + SIZE * res, y0)


@pytest.mark.parametrize("case", list(CASES))
def test_a_real_item_builds_bit_exact_by_either_band_name(case: str, tmp_path: Path) -> None:
    local, source, aoi = _world(case, tmp_path)
    # nodata mask: the Planetary Computer item's SCL is not written, and the values are the point here
    by_id = _config(local, source, aoi, ["B04", "B08"], tmp_path / "by-id", mask="nodata")
    manifest = _build_and_verify(by_id, tmp_path / "by-id.yaml")
    assert manifest["products"] == [local["id"]]
    source_of = {"earth-search-c1": "raster:bands", "earth-search-v1": "raster:bands",
                 "earth-search-v0": "sentinel:boa_offset_applied", "earth-search-l1c": "raster:bands",
                 "cdse": "raster:bands", "planetary-computer": "processing baseline 05.10"}  # fmt: skip
    offset = 0.0 if case == "earth-search-v0" else -0.1  # v0: the offset is already in the numbers (its flag)
    assert manifest["radiometry"] == {local["id"]: {"scale": 0.0001, "offset": offset, "source": source_of[case]}}
    assert manifest["bands"] == ["B04", "B08"]
    group = zarr.open_group(str(tmp_path / "by-id" / "data.zarr"), mode="r")
    values = group["s2_10m"][:]
    assert values.shape[0] == manifest["n_samples"] > 0
    bounds = _patch_bounds(manifest["keys"][0])
    asset_keys = {"B04": CASES[case][2][0], "B08": CASES[case][2][1]}
    for k, band in enumerate(["B04", "B08"]):
        with rasterio.open(local["assets"][asset_keys[band]]["href"]) as src:
            expected = src.read(1, window=from_bounds(*bounds, transform=src.transform))
        np.testing.assert_array_equal(values[0, 0, k], expected)
        assert (expected != 0).all()
    # the common names give the same bytes, whether the catalog's keys are common names (Earth Search) or band
    # ids (Planetary Computer `B04`, CDSE `B04_10m`)
    by_name = _config(local, source, aoi, ["red", "nir"], tmp_path / "by-name", mask="nodata")
    _build_and_verify(by_name, tmp_path / "by-name.yaml")
    again = zarr.open_group(str(tmp_path / "by-name" / "data.zarr"), mode="r")["s2_10m"][:]
    assert again.tobytes() == values.tobytes()


def _default_and_nodata_masks(case: str, tmp_path: Path) -> tuple[dict[str, Any], Any, Any, str]:
    """``red`` built with the default mask (in ``auto``) and with ``mask: nodata`` (in ``plain``): the localised
    item, both manifests and what the default build said (on one line)."""
    local, source, aoi = _world(case, tmp_path)
    said: list[str] = []
    default = _build_and_verify(
        _config(local, source, aoi, ["red"], tmp_path / "auto", min_valid_fraction=0.0), tmp_path / "a.yaml", said
    )
    plain = _build_and_verify(
        _config(local, source, aoi, ["red"], tmp_path / "plain", mask="nodata", min_valid_fraction=0.0),
        tmp_path / "p.yaml",
    )
    return local, default, plain, " ".join(said[0].split())  # rich wraps long lines


def _valid_mask(out: Path) -> Any:
    return zarr.open_group(str(out / "data.zarr"), mode="r")["valid_mask"][:]


def test_items_with_scl_mask_clouds_by_default_and_nodata_keeps_them(tmp_path: Path) -> None:
    local, default, plain, said = _default_and_nodata_masks("earth-search-c1", tmp_path)  # c1 items carry `scl`
    assert default["timeseries"]["mask"] == "scl" and plain["timeseries"]["mask"] == "nodata"
    fingerprint = json.loads((tmp_path / "auto" / "_build" / "plan.json").read_text())
    assert fingerprint["config"]["timeseries"]["mask"] == "scl"  # a rerun with mask: nodata is another dataset
    assert default["keys"] == plain["keys"] and default["n_samples"] > 0
    assert "valid mask: SCL (by default, as the products carry SCL)" in said
    assert "3 cloud shadows, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus" in said
    masked, kept = (_valid_mask(tmp_path / name)[0, 0] for name in ("auto", "plain"))
    # independently: the SCL file over the first patch, each 20 m class repeated onto the 10 m pixels
    with rasterio.open(local["assets"]["scl"]["href"]) as src:
        classes = src.read(1, window=from_bounds(*_patch_bounds(default["keys"][0]), transform=src.transform))
    classes = classes.repeat(2, axis=0).repeat(2, axis=1)
    assert classes.shape == masked.shape == (SIZE, SIZE)
    cloudy = classes == 9  # cloud high probability
    assert cloudy.any() and not masked[cloudy].any() and kept[cloudy].all()
    np.testing.assert_array_equal(masked, ~np.isin(classes, [0, 1, 3, 8, 9, 10]))
    assert kept.all()


@pytest.mark.parametrize("case", list(CASES))
def test_reflectance_is_dn_times_scale_plus_offset_as_each_catalog_declares(case: str, tmp_path: Path) -> None:
    local, source, aoi = _world(case, tmp_path)
    config = {**_config(local, source, aoi, ["B04"], tmp_path / "r", mask="nodata"), "cube": {"reflectance": True}}
    manifest = _build_and_verify(config, tmp_path / "r.yaml")
    radiometry = manifest["radiometry"][local["id"]]
    # independently: each catalog's own numbers (raster:bands of the asset, else Earth Search v0's flag that the
    # offset is applied, else Planetary Computer's baseline 05.10)
    raster = raster_of(local["assets"][CASES[case][2][0]])
    applied = local["properties"].get("sentinel:boa_offset_applied") is True
    scale, offset = raster.get("scale", 1e-4), raster.get("offset", 0.0 if applied else -0.1)
    assert (radiometry["scale"], radiometry["offset"]) == (scale, offset)
    stored = zarr.open_group(str(tmp_path / "r" / "data.zarr"), mode="r")["s2_10m"][0, 0, 0]
    with rasterio.open(local["assets"][CASES[case][2][0]]["href"]) as src:
        dn = src.read(1, window=from_bounds(*_patch_bounds(manifest["keys"][0]), transform=src.transform))
    assert stored.dtype == np.float32 and (dn > 0).all()
    np.testing.assert_allclose(stored, dn * scale + offset, rtol=0, atol=1e-7)  # float32 rounding of ~0..1.1
    if offset:  # DN under 1000 and over 11000: the offset is applied
        assert (stored < 0).any() and (stored > 1).any()
    else:
        assert (stored > 0).all() and (stored > 1).any()


def test_landsat_builds_bit_exact_by_common_or_usgs_name(tmp_path: Path) -> None:
    """Landsat C2 L2 (Planetary Computer's form): its own 30 m group, its band names; `red` and `SR_B4` are one band."""
    local, source, aoi = _world("landsat", tmp_path)
    runner = CliRunner()
    config = _config(local, source, aoi, ["red", "nir08"], tmp_path / "by-name", mask="nodata")
    selected = runner.invoke(app, ["select", str(write_config(config, tmp_path / "s.yaml")), "--json"])
    (row,) = json.loads(selected.output)
    assert (row["id"], row["tile"], row["cloud_cover"]) == (local["id"], "010065", 21.12)  # WRS-2 path and row
    manifest = _build_and_verify(config, tmp_path / "by-name.yaml")
    assert manifest["bands"] == ["red", "nir08"] and list(manifest["groups"]) == ["ls_30m"]
    assert manifest["radiometry"] == {local["id"]: {"scale": 2.75e-05, "offset": -0.2, "source": "raster:bands"}}
    assert manifest["band_metadata"]["red"]["sensor"] == "landsat"
    assert manifest["band_metadata"]["nir08"]["wavelength_nm"] == 870.0
    collection = json.loads((tmp_path / "by-name" / "collection.json").read_text())
    assert collection["summaries"]["eo:bands"][0] == {
        "name": "red", "common_name": "red", "center_wavelength": 0.65, "full_width_half_max": 0.04
    }  # fmt: skip
    assert "Landsat" in json.loads((tmp_path / "by-name" / "croissant.json").read_text())["keywords"]
    values = zarr.open_group(str(tmp_path / "by-name" / "data.zarr"), mode="r")["ls_30m"][:]
    assert values.dtype == np.uint16 and values.shape[0] == manifest["n_samples"] > 0
    assert values.shape[1:] == (1, 2, SIZE, SIZE)
    for k, key in enumerate(["red", "nir08"]):
        expected = _read(local, key, manifest["keys"][0])
        np.testing.assert_array_equal(values[0, 0, k], expected)
        assert (expected != 0).all()
    # the USGS file names (Landsat 8-9 numbering) give the same bytes
    by_usgs = _config(local, source, aoi, ["SR_B4", "SR_B5"], tmp_path / "by-usgs", mask="nodata")
    assert _build_and_verify(by_usgs, tmp_path / "by-usgs.yaml")["bands"] == ["red", "nir08"]
    again = zarr.open_group(str(tmp_path / "by-usgs" / "data.zarr"), mode="r")["ls_30m"][:]
    assert again.tobytes() == values.tobytes()


def _qa_valid(qa: Any) -> Any:
    """Independently: a pixel is valid where none of QA_PIXEL bits 0-4 (fill, dilated cloud, cirrus, cloud,
    cloud shadow) is set; snow (5), clear (6) and water (7) stay valid."""
    bits = np.unpackbits(qa.astype(">u2").view(np.uint8).reshape(*qa.shape, 2), axis=-1)[..., ::-1]  # bit 0 first
    return ~bits[..., 0:5].astype(bool).any(axis=-1)


def test_landsat_qa_pixel_masks_clouds_by_default_and_nodata_keeps_them(tmp_path: Path) -> None:
    local, default, plain, said = _default_and_nodata_masks("landsat", tmp_path)  # qa_pixel of real QA values
    assert default["timeseries"]["mask"] == "qa_pixel" and plain["timeseries"]["mask"] == "nodata"
    assert "valid mask: Landsat QA_PIXEL (by default, as the products carry qa_pixel)" in said
    assert "bit 0 fill, bit 1 dilated cloud, bit 2 cirrus, bit 3 cloud, bit 4 cloud shadow" in said
    masked, kept = (_valid_mask(tmp_path / name)[0, 0] for name in ("auto", "plain"))
    qa = _read(local, "qa_pixel", default["keys"][0])
    assert qa.shape == masked.shape == (SIZE, SIZE)
    expected = _qa_valid(qa)
    assert expected.any() and not expected.all() and (qa == 30048).any()  # snow: valid
    np.testing.assert_array_equal(masked, expected)
    assert kept.all()


def test_landsat_reflectance_is_dn_times_scale_plus_offset_and_the_lazy_mask_agrees(tmp_path: Path) -> None:
    """cube.reflectance: DN * 2.75e-05 - 0.2, and the QA_PIXEL mask; the lazy cubes' graph gives the same bytes."""
    local, source, aoi = _world("landsat", tmp_path)
    config = {**_config(local, source, aoi, ["SR_B4"], tmp_path / "r", min_valid_fraction=0.0),
              "cube": {"reflectance": True}}  # fmt: skip
    manifest = _build_and_verify(config, tmp_path / "r.yaml")
    assert manifest["bands"] == ["red"] and manifest["timeseries"]["mask"] == "qa_pixel"
    group = zarr.open_group(str(tmp_path / "r" / "data.zarr"), mode="r")
    stored = group["ls_30m"][0, 0, 0]
    dn = _read(local, "red", manifest["keys"][0])
    assert stored.dtype == np.float32 and (dn > 0).all()
    np.testing.assert_allclose(stored, dn * 2.75e-05 - 0.2, rtol=0, atol=1e-7)
    assert (stored < 0).any() and (stored > 0).any()
    np.testing.assert_array_equal(
        group["valid_mask"][0, 0], _qa_valid(_read(local, "qa_pixel", manifest["keys"][0]))
    )
    graph = {
        **config,
        "output": {**config["output"], "path": str(tmp_path / "g")},
        "cube": {"reflectance": True, "reads": "graph"},
    }
    _build_and_verify(graph, tmp_path / "g.yaml")
    assert dataset_files(tmp_path / "r" / "data.zarr") == dataset_files(tmp_path / "g" / "data.zarr")
    assert lmdb_contents(tmp_path / "r") == lmdb_contents(tmp_path / "g")
