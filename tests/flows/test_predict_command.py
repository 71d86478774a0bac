"""``eoshard predict``: the demo AOI straight from the demo catalog equals one whole-image forward pass."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import zarr
from typer.testing import CliRunner

from eoshard.catalog import search, select
from eoshard.flows.aoi import read_aoi
from eoshard.flows.cli import app
from eoshard.flows.model_input import ModelInput, plan_stack, stack_bytes, write_stack
from eoshard.training.package import load
from eoshard.training.predict import Tiling, model_fn
from eoshard.training.scene import predict
from tests.conftest import ROOT
from tests.training.helpers import peak_in_fresh_interpreter, random_package

PERIOD = ("2024-04-01", "2024-09-30")
MARGIN = 6


def _package(tmp: Path, n_dates: int = 3) -> Path:
    random_package(tmp, n_dates=n_dates)
    return tmp / "pkg"


def _args(demo_data, package: Path, out: Path, *extra: str) -> list[str]:
    return [
        "predict", str(package), str(out), "--source", str(demo_data.catalog), "--collection", "sentinel-2-l2a",
        "--aoi", str(demo_data.aoi), "--start", PERIOD[0], "--end", PERIOD[1], "--max-cloud", "60",
        "--block", "64", "--overlap", "24", "--margin", str(MARGIN), *extra,
    ]  # fmt: skip


def _reference_stack(demo_data, aoi=None, n_dates: int = 3):
    area, crs = read_aoi(aoi or demo_data.aoi)
    area_4326 = gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]
    spec = ModelInput(["B02", "B03", "B04", "B08"], n_dates, 10.0, False)
    first, last = (date.fromisoformat(d) for d in PERIOD)
    return plan_stack(spec, str(demo_data.catalog), area, crs, area_4326, first, last,
                      collection="sentinel-2-l2a", max_cloud=60)  # fmt: skip


@pytest.mark.slow
def test_predict_from_the_catalog_equals_the_whole_image_forward_pass(demo_data, tmp_path: Path) -> None:
    package = _package(tmp_path)
    out, scene = tmp_path / "prob.tif", tmp_path / "scene.zarr"
    args = _args(
        demo_data, package, out, "--probabilities", "--scene", str(scene), "--device", "cpu", "--batch-size", "3"
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    plan = _reference_stack(demo_data)
    image = plan.stack.values  # (T, C, H, W) uint16, read in one go (the reference only)
    assert image.shape[:2] == (3, 4) and zarr.open_array(str(scene), mode="r").attrs["dates"] == plan.dates
    flat = image.reshape(-1, *image.shape[-2:]).astype("f4")
    padded = np.pad(flat, ((0, 0), (MARGIN, MARGIN), (MARGIN, MARGIN)), mode="edge")
    whole = model_fn(load(package))(padded)[:, MARGIN:-MARGIN, MARGIN:-MARGIN]
    valid = (image != 0).any(axis=(0, 1))
    with rasterio.open(out) as src:
        got = src.read()
        assert (
            src.crs.to_epsg() == plan.grid.crs.epsg and tuple(src.transform)[:6] == tuple(plan.grid.transform)[:6]
        )
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and src.overviews(1) == [2, 4, 8, 16]
    np.testing.assert_allclose(got[:, valid], whole[:, valid], atol=1e-5, rtol=0)
    assert np.isnan(got[:, ~valid]).all()

    classes = tmp_path / "classes.tif"
    # the NDWI, its bands named by their common names and as stored (the package records both)
    result = CliRunner().invoke(
        app, _args(demo_data, package, classes, "--mask", "(green - nir) / (B03 + B08) > 0")
    )
    assert result.exit_code == 0, result.output
    # each band's mean over the dates holding data at the pixel, then NDWI
    b03, b08 = ((image[:, i].sum(0) / np.maximum((image[:, i] != 0).sum(0), 1)) for i in (1, 3))
    water = (b03 - b08) / np.where(valid, b03 + b08, 1.0) > 0
    assert 0 < (~valid).mean() < 0.2 and 0 < water.mean() < 0.5, ((~valid).mean(), water.mean())
    with rasterio.open(classes) as src:
        got_classes = src.read(1)
        assert src.nodata == 255 and src.colormap(1)[1][3] == 255 and src.descriptions == ("class",)
    kept = valid & ~water
    np.testing.assert_array_equal(got_classes[kept], whole.argmax(0)[kept])
    assert (got_classes[~kept] == 255).all()
    names = json.loads(classes.with_suffix(".json").read_text())["assets"]["classes"]["classification:classes"]
    assert [c["name"] for c in names] == ["background", "c1", "c2", "c3", "c4", "c5", "c6"]
    assert 'label="c3"' in classes.with_suffix(".qml").read_text()
    if os.environ.get("EOSHARD_DOCS_IMAGES"):  # refresh the picture of docs/predict.md
        _picture(classes, ROOT / "docs" / "img" / "predict-demo.png")


def _picture(path: Path, png: Path) -> None:
    """The class map in its own colour table, nodata white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with rasterio.open(path) as src:
        codes, table = src.read(1), src.colormap(1)
    rgb = np.array([table.get(int(c), (255, 255, 255, 255))[:3] for c in range(256)], dtype=np.uint8)[codes]
    rgb[codes == 255] = 255
    fig, ax = plt.subplots(figsize=(6, 4.6))
    ax.imshow(rgb)
    ax.set_title("eoshard predict on the demo AOI (random weights; NDWI mask and nodata in white)", fontsize=8)
    ax.set_axis_off()
    fig.savefig(png, dpi=90, bbox_inches="tight")
    plt.close(fig)


@pytest.mark.parametrize("reflectance", [False, True])
def test_the_stack_read_straight_from_the_files_equals_the_lazy_stack(
    demo_data, tmp_path: Path, reflectance: bool
) -> None:
    """The direct reads (the build's) give the lazy stack's values bit for bit: 10 m and 20 m bands (repeated onto
    the 10 m grid), products of the other UTM zone (warped), digital numbers or reflectance (NaN for nodata)."""
    area, crs = read_aoi(demo_data.aoi)
    area_4326 = gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]
    spec = ModelInput(["B02", "nir", "B11", "B04", "B8A"], 4, 10.0, reflectance)
    first, last = (date.fromisoformat(d) for d in PERIOD)
    plan = plan_stack(spec, str(demo_data.catalog), area, crs, area_4326, first, last, chunksize=128)
    assert plan.direct is not None and plan.direct.factors == {"s2_10m": 1, "s2_20m": 2}
    done: list[tuple[int, int]] = []
    direct = zarr.open_array(
        str(write_stack(plan, tmp_path / "direct.zarr", on_progress=lambda *d: done.append(d)))
    )
    lazy = zarr.open_array(str(write_stack(plan, tmp_path / "lazy.zarr", graph=True)))
    assert done == [
        (i, 20) for i in range(1, 21)
    ]  # 4 x 5 windows of 128 px: the demo grid (474 x 618) has no stripe edge
    assert direct.dtype == ("float32" if reflectance else "uint16") and direct.attrs == lazy.attrs
    np.testing.assert_array_equal(direct[:], lazy[:])
    np.testing.assert_array_equal(direct[:], plan.stack.values)
    nodata = np.isnan(direct[:]) if reflectance else direct[:] == 0  # the demo's clouds and its AOI's corners
    assert 0.1 < nodata.mean() < 0.3
    # a stripe edge at column 300, inside a Zarr chunk: its windows are cut there, the chunk written in two parts
    striped = replace(plan, direct=replace(plan.direct, phase=2048 - 300))
    assert [c for r, c in striped.direct.windows([0, 128], [0, 128, 256, 384, 512, 618])] == [
        slice(0, 128),
        slice(128, 256),
        slice(256, 300),
        slice(300, 384),
        slice(384, 512),
        slice(512, 618),
    ]
    again = zarr.open_array(str(write_stack(striped, tmp_path / "striped.zarr")))
    np.testing.assert_array_equal(again[:], lazy[:])


def test_predict_needs_enough_dates(demo_data, tmp_path: Path) -> None:
    package = _package(tmp_path, n_dates=40)
    result = CliRunner().invoke(app, _args(demo_data, package, tmp_path / "x.tif"))
    assert result.exit_code == 2  # a config error
    shown = " ".join(result.output.split())
    assert "the model expects 40 dates but the catalog has 7" in shown and "Traceback" not in result.output
    assert "from 2024-04-01 to 2024-09-30 (max cloud 60 %): widen the period or raise --max-cloud" in shown
    args = _args(demo_data, package, tmp_path / "x.tif")
    args[args.index("--start") + 1], args[args.index("--end") + 1] = PERIOD[1], PERIOD[0]
    reversed_period = CliRunner().invoke(app, args)
    assert reversed_period.exit_code == 2
    assert "--end 2024-04-01 is before --start 2024-09-30: swap them" in " ".join(reversed_period.output.split())


@pytest.mark.slow
def _peak_of_one_size(catalog: str, aoi_file: str, bounds: list[float], out: str) -> int:
    """Peak Python memory of writing one AOI's stack and predicting it (run in a fresh interpreter)."""
    demo = SimpleNamespace(catalog=Path(catalog), aoi=Path(aoi_file))
    out_dir = Path(out)
    package = load(_package(out_dir, n_dates=1))
    plan = _reference_stack(demo, tuple(bounds), n_dates=1)
    assert plan.direct is not None
    # stripes of one demo block (256 px): the real 2048 px ones are wider than the demo AOI (see the docstring below)
    plan = replace(plan, direct=replace(plan.direct, stripe=256))
    tracemalloc.start()
    scene = write_stack(plan, out_dir / "scene.zarr")
    predict(package, scene, out_dir / "out.zarr", Tiling(64, 16, 4), probabilities=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_stays_flat_when_the_aoi_grows_4x(demo_data, tmp_path: Path) -> None:
    """Peak Python memory of the stack writer and of the predict side, for a quarter of the AOI and the AOI, each in
    a fresh interpreter (see ``peak_in_fresh_interpreter``). The stack holds the source blocks of one block row of
    one stripe: the stripes are 2048 px wide, wider than the whole demo AOI, so here they are one demo block wide
    (256 px), as 2048 px are two of a real product's 1024 px blocks (the quarter and the sixteenth tile at 2048 px:
    ``benchmarks/bench_predict.py``)."""
    x0, y0, x1, y1 = (float(v) for v in gpd.read_file(demo_data.aoi).to_crs(4326).total_bounds)
    quarter = (x0, y0, (x0 + x1) / 2, (y0 + y1) / 2)
    peaks, sizes = [], []
    for n, aoi in enumerate([quarter, (x0, y0, x1, y1)]):
        sizes.append(stack_bytes(_reference_stack(demo_data, aoi, n_dates=1)))
        out = tmp_path / f"size{n}"
        out.mkdir()
        args = [str(demo_data.catalog), str(demo_data.aoi), list(aoi), str(out)]
        peaks.append(peak_in_fresh_interpreter("tests.flows.test_predict_command", "_peak_of_one_size", *args))
    assert 3.5 < sizes[1] / sizes[0] < 4.5, sizes
    print(f"peak memory {peaks[0] / 1e6:.2f} MB at 1x, {peaks[1] / 1e6:.2f} MB at 4x the AOI; input {sizes} bytes")
    # Holding the whole stack adds all of the extra input (a write_stack computing it at once: +3.0 MB at 4x);
    # windows written one at a time add what varies with thread timing: 0.3-0.8 MB measured, more on a loaded machine.
    grown, more_input = peaks[1] - peaks[0], sizes[1] - sizes[0]
    assert grown < 0.75 * more_input, (peaks, sizes)


def test_the_model_input_is_made_of_the_products_the_build_uses(demo_data, tmp_path: Path) -> None:
    """The search narrowed by ``eoshard select``'s rules, as the build does: tiles the AOI does not need are left
    out (the search alone finds 15 products; the build keeps 12)."""
    from eoshard.flows.config import load_config
    from eoshard.flows.products import select_products

    config = tmp_path / "build.yaml"
    config.write_text(
        f"name: same\ncatalog:\n  source: {demo_data.catalog}\n  collection: sentinel-2-l2a\n  max_cloud: 60\n"
        f"aoi: {demo_data.aoi}\nperiod:\n  start: {PERIOD[0]}\n  end: {PERIOD[1]}\nbands: [B04]\n"
        f"output:\n  path: {tmp_path / 'out'}\n"
    )
    area, crs = read_aoi(demo_data.aoi)
    built = select_products(load_config(config), gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0])
    plan = _reference_stack(demo_data, n_dates=7)
    assert plan.products == sorted(i.id for i in built) and len(plan.products) == 12


def test_the_dates_are_those_eoshard_select_chooses(demo_data) -> None:
    """Three of the demo's seven acquisitions: no three leave less than a 60-day gap, and among those that do not
    leave more ``select``'s costs (cloud cover, the AOI a date misses) pick 8 April, 7 June and 6 August, where the
    dates without costs were the evenest three (18 May, 17 July, 26 August)."""
    area, crs = read_aoi(demo_data.aoi)
    area_4326 = gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]
    first, last = (date.fromisoformat(d) for d in PERIOD)
    found = search(str(demo_data.catalog), area=area_4326, start=first, end=last, collection="sentinel-2-l2a",
                   max_cloud=60)  # fmt: skip
    chosen = select(list(found), area_4326, first, last, max_cloud=60, dates=3).items
    plan = _reference_stack(demo_data, n_dates=3)
    assert [d[:10] for d in plan.dates] == ["2024-04-08", "2024-06-07", "2024-08-06"]
    assert sorted({i.datetime.isoformat()[:19] for i in chosen if i.datetime}) == plan.dates
    assert plan.products == sorted(i.id for i in chosen)


def test_a_package_may_name_its_bands_by_common_names(demo_data) -> None:
    """``red`` is ``B04``: the stack holds the same pixels, under the package's names."""
    area, crs = read_aoi(demo_data.aoi)
    area_4326 = gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]
    first, last = (date.fromisoformat(d) for d in PERIOD)
    common = ModelInput(["blue", "green", "red", "nir"], 2, 10.0, False)
    named = plan_stack(common, str(demo_data.catalog), area, crs, area_4326, first, last, max_cloud=60)
    plan = _reference_stack(demo_data, n_dates=2)
    assert list(named.stack.band.values) == ["blue", "green", "red", "nir"]
    np.testing.assert_array_equal(named.stack[:, :, :40, :40].values, plan.stack[:, :, :40, :40].values)


def test_an_output_that_is_neither_a_tif_nor_a_zarr_is_refused_first(demo_data, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _args(demo_data, tmp_path / "no-package", tmp_path / "map.png"))
    assert result.exit_code == 2 and not (tmp_path / "map.png").exists()
    assert f"the output {tmp_path / 'map.png'} ends in .png: give a .tif" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (
            "(green - B8) > 0",
            r"--mask '\(green - B8\) > 0' names \['B8'\], which are not among the model's bands "
            r"B02 \(blue\), B03 \(green\), B04 \(red\), B08 \(nir\): use those names or their common names",
        ),
        ("B03 >", r"--mask 'B03 >' is not a valid expression: invalid syntax"),
    ],
)
def test_a_mask_with_unknown_bands_or_bad_syntax_is_refused_before_any_stacking(
    demo_data, tmp_path: Path, mask: str, message: str
) -> None:
    package, scene = _package(tmp_path), tmp_path / "scene.zarr"
    result = CliRunner().invoke(
        app, _args(demo_data, package, tmp_path / "map.tif", "--mask", mask, "--scene", str(scene))
    )
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not scene.exists() and not (tmp_path / "map.tif").exists()


def test_a_common_name_two_bands_share_is_refused_before_any_stacking(demo_data, tmp_path: Path) -> None:
    package, scene = _package(tmp_path), tmp_path / "scene.zarr"
    item = json.loads((package / "item.json").read_text())
    item["properties"]["bands"][2]["eo:common_name"] = "nir"  # B04 said to be nir too
    (package / "item.json").write_text(json.dumps(item))
    result = CliRunner().invoke(
        app, _args(demo_data, package, tmp_path / "map.tif", "--mask", "NIR > 0", "--scene", str(scene))
    )
    assert result.exit_code == 2, result.output
    assert (
        "--mask 'NIR > 0' names 'NIR' stands for ['B04', 'B08'], more than one of the model's bands B02 (blue)"
        in (" ".join(result.output.split()))
    )
    assert not scene.exists()


def test_a_device_that_is_not_there_is_refused_before_the_stack_is_written(demo_data, tmp_path: Path) -> None:
    package, scene = _package(tmp_path), tmp_path / "scene.zarr"
    args = _args(demo_data, package, tmp_path / "map.tif", "--device", "cuda:99", "--scene", str(scene))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # a config error, as a bad --mask
    assert "--device cuda:99: device 'cuda:99' asked for but torch sees" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not scene.exists()


@pytest.mark.parametrize(
    ("tiling", "said"),
    [(["--block", "0"], "block=0 overlap=64 margin=16"), (["--overlap", "-3"], "block=256 overlap=-3 margin=16")],
)
def test_a_tiling_that_cannot_be_is_refused_before_the_stack_is_read(
    tmp_path: Path, tiling: list[str], said: str
) -> None:
    """eoshard-train refused it once the whole input was read from the catalog (minutes at a real AOI)."""
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "pkg"), str(tmp_path / "map.tif"), "--source", "x",
                                      "--aoi", "11.96,48.0,11.97,48.01", "--start", "2024-04-01", "--end",
                                      "2024-09-30", *tiling])  # fmt: skip
    assert result.exit_code == 2, result.output  # before the package is even read: none is there
    assert " ".join(result.output.split()) == (
        f"error: tiling needs 0 <= 2*margin <= overlap < block, got {said}: give --block, --overlap and --margin "
        "that fit"
    )


def test_a_failing_model_side_shows_its_own_error_and_exits_non_zero(demo_data, tmp_path: Path, capfd) -> None:
    """``eoshard-train predict`` runs in a child process whose messages (progress, error) reach the terminal."""
    package = _package(tmp_path, n_dates=1)
    (package / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    result = CliRunner().invoke(app, _args(demo_data, package, tmp_path / "map.tif"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "eoshard-train predict failed (exit 1); its error is above" in " ".join(result.output.split())
    assert "is not a safetensors file" in capfd.readouterr().err  # the child's own line, on the same stderr
    assert not (tmp_path / "map.tif").exists()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("eoshard:resolution", "ten", "mlm:input[0].eoshard:resolution: input should be a valid number, got 'ten'"),
        ("eoshard:resolution", 0, "mlm:input[0].eoshard:resolution: input should be greater than 0, got 0"),
        ("eoshard:n_dates", 0, "mlm:input[0].eoshard:n_dates: input should be greater than or equal to 1, got 0"),
        ("eoshard:n_dates", 2.5, "mlm:input[0].eoshard:n_dates: input should be a valid integer, got 2.5"),
        ("eoshard:reflectance", "yes", "mlm:input[0].eoshard:reflectance: input should be a valid boolean, got 'yes'"),
    ],
)  # fmt: skip
def test_a_package_input_fact_of_another_type_is_named(tmp_path: Path, field: str, value, expected: str) -> None:
    """A resolution of "ten" was a ValueError of float() (a traceback); a resolution of 0 or 0 dates went on."""
    package = _package(tmp_path)
    item = json.loads((package / "item.json").read_text())
    item["properties"]["mlm:input"][0][field] = value
    (package / "item.json").write_text(json.dumps(item))
    result = CliRunner().invoke(app, ["predict", str(package), str(tmp_path / "map.tif"), "--source", "x",
                                      "--aoi", "11.96,48.0,11.97,48.01", "--start", "2024-04-01", "--end", "2024-09-30"])  # fmt: skip
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"{package / 'item.json'} misstates {expected}; export the package" in " ".join(result.output.split())
    assert not (tmp_path / "map.tif").exists()
