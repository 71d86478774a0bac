"""Block-wise prediction with Hann blending equals a whole-scene forward pass; georeferencing is exact."""

from __future__ import annotations

import resource
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from eoshard.training.errors import ConfigError
from eoshard.training.predict import Tiling, blend, model_fn, padded_read
from eoshard.training.scene import EmptyMapWarning, UnnamedBandsWarning, predict

from .helpers import BANDS, peak_in_fresh_interpreter, raising, random_package

TRANSFORM = [10.0, 0.0, 720240.0, 0.0, -10.0, 5325240.0]


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(200, 4000, (4, h, w)).astype(np.float32)


def _whole(run, image: np.ndarray, margin: int) -> np.ndarray:
    """Reference: one forward pass over the edge-padded whole scene, padding cropped off again."""
    padded = np.pad(image, ((0, 0), (margin, margin), (margin, margin)), mode="edge")
    return run(padded)[:, margin:-margin, margin:-margin]


def _blended(run, image: np.ndarray, tiling: Tiling, n_out: int, batch: int = 1) -> np.ndarray:
    _, h, w = image.shape
    reader = padded_read(lambda r, c, hh, ww: image[:, r : r + hh, c : c + ww], h, w)
    out = np.full((n_out, h, w), np.nan, dtype=np.float32)
    for r, c, v in blend(run, reader, h, w, n_out, tiling, strip=40, batch=batch):
        out[:, r : r + v.shape[1], c : c + v.shape[2]] = v
    return out


# smaller than a block; several blocks, partial edges, tiles through the model one at a time and 5 at a time (the
# last batch short)
@pytest.mark.parametrize(("h", "w", "batch"), [(37, 29, 1), (150, 203, 1), (150, 203, 5)])
def test_blend_equals_whole_forward(tmp_path: Path, h: int, w: int, batch: int) -> None:
    package = random_package(tmp_path)  # FCN, 2 conv layers: receptive radius 2 px <= margin
    run = model_fn(package)
    tiling = Tiling(block=64, overlap=24, margin=6)
    image = _scene(h, w)
    got = _blended(run, image, tiling, 7, batch)
    assert got.shape == (7, h, w)
    np.testing.assert_allclose(got, _whole(run, image, 6), atol=1e-5, rtol=0)
    if h > 64:
        assert len(tiling.origins(h)) > 2 and len(tiling.origins(w)) > 3


def test_blend_yields_each_row_of_squares_once_the_tiles_left_cannot_add_to_it(tmp_path: Path) -> None:
    """Squares come out while the tiles are still running (a reader's cache still holds their rows), each once, and
    (test above) equal to the whole forward pass: the tiles after them only add zero-weight margins there."""
    run, image, tiling = (
        model_fn(random_package(tmp_path)),
        _scene(150, 203),
        Tiling(block=64, overlap=24, margin=6),
    )
    reader = padded_read(lambda r, c, hh, ww: image[:, r : r + hh, c : c + ww], 150, 203)
    events: list[tuple[str, int, int]] = []
    for r, c, _ in blend(
        run, reader, 150, 203, 7, tiling, strip=40, on_tile=lambda d, n: events.append(("tile", d, n))
    ):
        events.append(("square", r, c))
    squares = [(r, c) for kind, r, c in events if kind == "square"]
    assert squares == [(r, c) for r in range(0, 150, 40) for c in range(0, 203, 40)]
    n_tiles = len(tiling.origins(150)) * len(tiling.origins(203))
    assert events.index(("square", 0, 0)) < events.index(("tile", n_tiles // 2, n_tiles))  # half the tiles to go


def test_the_model_normalises_a_copy_of_the_tiles_it_is_given(tmp_path: Path) -> None:
    run = model_fn(random_package(tmp_path))
    tiles = _scene(40, 50).astype("float32")  # float32 already: no conversion that would copy them anyway
    before = tiles.copy()
    first = run(tiles)
    np.testing.assert_array_equal(tiles, before)
    np.testing.assert_array_equal(run(tiles), first)


def test_predict_runs_on_the_device_asked_for_or_says_there_is_none(tmp_path: Path) -> None:
    """``cuda`` where torch sees a GPU gives the CPU's probabilities; where it sees none, an error saying so, before
    any output is written. A batch size below 1 is refused."""
    package = random_package(tmp_path)
    src = _zarr_input(tmp_path / "in.zarr", _scene(70, 90))
    tiling = Tiling(48, 16, 4)
    on_cpu = zarr.open_array(str(predict(package, src, tmp_path / "cpu.zarr", tiling, True, device="cpu")))[:]
    if torch.cuda.is_available():
        on_gpu = predict(package, src, tmp_path / "gpu.zarr", tiling, True, device="cuda", batch_size=4)
        np.testing.assert_allclose(zarr.open_array(str(on_gpu))[:], on_cpu, atol=1e-4, rtol=0)
    else:
        with pytest.raises(ConfigError, match="device 'cuda' asked for but torch sees no GPU"):
            predict(package, src, tmp_path / "gpu.zarr", tiling, True, device="cuda")
        assert not (tmp_path / "gpu.zarr").exists()
    with pytest.raises(ConfigError, match="at least 1, not 0"):
        predict(package, src, tmp_path / "none.zarr", tiling, device="cpu", batch_size=0)
    in_fours = predict(package, src, tmp_path / "fours.zarr", tiling, True, device="cpu", batch_size=4)
    np.testing.assert_allclose(zarr.open_array(str(in_fours))[:], on_cpu, atol=1e-6, rtol=0)


def test_tiling_is_validated() -> None:
    with pytest.raises(ConfigError, match="2\\*margin <= overlap < block"):
        Tiling(block=32, overlap=8, margin=6)


def _zarr_input(path: Path, image: np.ndarray) -> Path:
    arr = zarr.create_array(str(path), shape=image.shape, dtype="uint16", chunks=(4, 64, 64))
    arr[:] = image.astype("uint16")
    arr.attrs.update({"bands": ["B08", "B02", "B03", "B04"], "crs": "EPSG:32632", "transform": TRANSFORM})
    return path


def test_no_data_in_the_input_is_nodata_out_and_reaches_no_neighbour(tmp_path: Path) -> None:
    """A float scene with NaN holes and no nodata value declared (as xarray writes one): the NaN went into the
    model and spread to every pixel within its reach, written as class 0. Now a pixel without data in any band is
    255, and a missing value is fed as training feeds one (the band's mean): the prediction is that of the scene
    with its holes filled with the means."""
    package = random_package(tmp_path)
    image = _scene(70, 90)
    holes = image.copy()
    holes[:, 20:32, 30:45] = np.nan  # no band has data
    holes[1, 50:55, 60:70] = np.nan  # one band lacks it
    holes[3, 5, 5] = np.inf
    filled = np.where(np.isfinite(holes), holes, np.asarray(package.mean, "f4")[:, None, None])
    scenes = []
    for name, values in (("holes", holes), ("filled", filled)):
        arr = zarr.create_array(
            str(tmp_path / f"{name}.zarr"), shape=values.shape, dtype="float32", chunks=(4, 64, 64)
        )
        arr[:] = values
        arr.attrs.update({"bands": BANDS, "crs": "EPSG:32632", "transform": TRANSFORM})
        out = predict(package, tmp_path / f"{name}.zarr", tmp_path / f"{name}-out.zarr", Tiling(48, 16, 4))
        scenes.append(zarr.open_array(str(out), mode="r")[0])
    got, reference = scenes
    none = np.zeros((70, 90), bool)
    none[20:32, 30:45] = True
    assert (got[none] == 255).all()
    np.testing.assert_array_equal(got[~none], reference[~none])
    assert set(np.unique(reference[none])) <= set(range(7)) and (reference != 255).all()


def test_a_map_of_nodata_alone_is_said(tmp_path: Path) -> None:
    """A scene of no data (a swath's empty corner), or a mask over every pixel, gave a map of nodata in silence."""
    package = random_package(tmp_path)
    empty = np.full((4, 30, 40), np.nan, "float32")
    arr = zarr.create_array(str(tmp_path / "empty.zarr"), shape=empty.shape, dtype="float32", chunks=(4, 32, 32))
    arr[:] = empty
    arr.attrs.update({"bands": BANDS, "crs": "EPSG:32632", "transform": TRANSFORM})
    out = tmp_path / "empty-out.zarr"
    with pytest.warns(EmptyMapWarning) as said:
        predict(package, tmp_path / "empty.zarr", out, Tiling(48, 16, 4))
    assert [str(w.message) for w in said] == [f"no pixel of the input holds data: {out} is nodata throughout"]
    assert (zarr.open_array(str(out), mode="r")[:] == 255).all()
    src = _zarr_input(tmp_path / "in.zarr", _scene(30, 40))
    with pytest.warns(EmptyMapWarning) as said:
        predict(package, src, tmp_path / "masked.zarr", Tiling(48, 16, 4), mask="B02 > -1")
    assert [str(w.message) for w in said] == [
        f"the mask 'B02 > -1' covers every pixel: {tmp_path / 'masked.zarr'} is nodata throughout"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyMapWarning)  # a mask that leaves a pixel says nothing
        predict(package, src, tmp_path / "kept.zarr", Tiling(48, 16, 4), mask="B02 > 1e9")


def test_zarr_scene_class_map_and_x4_georeferencing(tmp_path: Path) -> None:
    image = _scene(70, 90)
    reordered = image[[3, 0, 1, 2]]  # the store lists B08 first: bands must be picked by name
    src = _zarr_input(tmp_path / "in.zarr", reordered)
    package = random_package(tmp_path)
    out = zarr.open_array(str(predict(package, src, tmp_path / "out.zarr", Tiling(48, 16, 4))), mode="r")
    expected = _whole(model_fn(package), image.astype("uint16").astype("f4"), 4).argmax(0)
    np.testing.assert_array_equal(out[0], expected)
    assert out.attrs["crs"] == "EPSG:32632" and out.attrs["transform"] == TRANSFORM

    sr = random_package(tmp_path / "sr", "sr4", model={"width": 8, "blocks": 1})
    out = zarr.open_array(str(predict(sr, src, tmp_path / "sr.zarr", Tiling(32, 16, 8))), mode="r")
    assert out.shape == (4, 280, 360)
    assert out.attrs["transform"] == [2.5, 0.0, 720240.0, 0.0, -2.5, 5325240.0]


def _peak_of_one_size(folder: str, size: int) -> int:
    """Peak Python memory of predicting a ``size`` x ``size`` scene (run in a fresh interpreter)."""
    tmp = Path(folder)
    package = random_package(tmp)
    src = _zarr_input(tmp / "in.zarr", _scene(size, size))
    tracemalloc.start()
    predict(package, src, tmp / "out.zarr", Tiling(64, 16, 4), probabilities=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_peak_memory_is_flat_when_the_scene_grows_4x(tmp_path: Path) -> None:
    """Peak Python memory of predict, each scene size in a fresh interpreter (see ``peak_in_fresh_interpreter``)."""
    peaks = []
    for size in (128, 256):  # 4x the pixels
        folder = tmp_path / str(size)
        folder.mkdir()
        peaks.append(
            peak_in_fresh_interpreter("tests.training.test_predict", "_peak_of_one_size", str(folder), size)
        )
    # a whole-scene float32 probability array alone would be 7*256*256*4 = 1.8 MB more for the big scene
    assert peaks[1] < peaks[0] * 1.25 + 300_000, peaks


def _faults_per_pass(folder: str, after_predict: bool) -> int:
    """Page faults per forward pass over a 256 px tile, after ``predict`` has run in this process or not (run in
    a fresh interpreter)."""
    tmp = Path(folder)
    package = random_package(tmp)
    if after_predict:
        predict(package, _zarr_input(tmp / "in.zarr", _scene(40, 40)), tmp / "out.zarr", Tiling(32, 8, 2))
    run, tile = model_fn(package, probabilities=True), _scene(256, 256)
    run(tile)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        run(tile)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10


def test_predict_keeps_freed_memory_for_the_next_tile(tmp_path: Path) -> None:
    """glibc's defaults gave a tile's activations back to the system and faulted them in again at the next tile
    (44x the page faults on this machine; 27 of 52 s in the kernel on a quarter tile): ``predict`` keeps them."""
    with pytest.MonkeyPatch.context() as env:
        # glibc's default threshold, held: glibc raises it as it frees mmapped chunks, so whether the passes'
        # chunks went back depended on what came before (201 faults a pass once on CI, about 6,300 held)
        env.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
        untuned = peak_in_fresh_interpreter(
            "tests.training.test_predict", "_faults_per_pass", str(tmp_path / "untuned"), False
        )
    tuned = peak_in_fresh_interpreter(
        "tests.training.test_predict", "_faults_per_pass", str(tmp_path / "tuned"), True
    )
    faults = [untuned, tuned]
    assert faults[1] * 5 < faults[0], faults
    # the same in a process started after a Dask nanny (which puts MALLOC_TRIM_THRESHOLD_=65536 into the environment)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
        after_dask = peak_in_fresh_interpreter(
            "tests.training.test_predict", "_faults_per_pass", str(tmp_path / "dask"), True
        )
    assert after_dask * 5 < faults[0], (after_dask, faults)


@pytest.mark.needs_build  # needs rasterio (the geotiff extra), absent from the bare training venv
def test_geotiff_to_cog_keeps_georeferencing(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import Affine

    image = _scene(70, 90).astype("uint16")
    profile = {"driver": "GTiff", "count": 4, "height": 70, "width": 90, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": Affine(*TRANSFORM)}  # fmt: skip
    with rasterio.open(tmp_path / "in.tif", "w", **profile) as dst:
        dst.write(image)
        dst.descriptions = ("B02", "B03", "B04", "B08")
    package = random_package(tmp_path)
    out = predict(package, tmp_path / "in.tif", tmp_path / "out.tif", Tiling(48, 16, 4))
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32632 and src.transform == Affine(*TRANSFORM)
        assert (src.count, src.height, src.width, src.dtypes[0]) == (1, 70, 90, "uint8")
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        expected = _whole(model_fn(package), image.astype("f4"), 4).argmax(0)
        np.testing.assert_array_equal(src.read(1), expected)
    sr = random_package(tmp_path / "sr", "sr4", model={"width": 8, "blocks": 1})
    with rasterio.open(predict(sr, tmp_path / "in.tif", tmp_path / "sr.tif", Tiling(32, 16, 8))) as src:
        assert (src.height, src.width) == (280, 360)
        assert src.transform == Affine(2.5, 0.0, 720240.0, 0.0, -2.5, 5325240.0)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def _tif(path: Path, image: np.ndarray, descriptions: list[str] | None) -> Path:
    import rasterio
    from rasterio.transform import Affine

    profile = {"driver": "GTiff", "count": image.shape[0], "height": image.shape[1], "width": image.shape[2],
               "dtype": "uint16", "crs": "EPSG:32632", "transform": Affine(*TRANSFORM)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
    return path


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_multi_date_geotiff_bands_are_matched_by_description_date_after_date(tmp_path: Path, capsys) -> None:
    import rasterio

    from eoshard.training.cli import main

    package = random_package(tmp_path, n_dates=2)  # model input: B02 B03 B04 B08 of date 1, then of date 2
    image = np.concatenate([_scene(40, 50, seed=1), _scene(40, 50, seed=2)]).astype("uint16")
    expected = _whole(model_fn(package), image.astype("f4"), 4).argmax(0)
    stored = image[[3, 2, 1, 0, 7, 6, 5, 4]]  # each date stored as B08 B04 B03 B02
    src = _tif(tmp_path / "in.tif", stored, ["B08", "B04", "B03", "B02"] * 2)
    with rasterio.open(predict(package, src, tmp_path / "out.tif", Tiling(48, 16, 4))) as out:
        np.testing.assert_array_equal(out.read(1), expected)
    plain = _tif(tmp_path / "plain.tif", image, None)  # no descriptions: file order, the model's order, said
    in_order = (
        "the input's bands carry no names: read in the file's order as B02, B03, B04, B08 for each of 2 dates in "
        "turn; if that is not their order, name them (GeoTIFF band descriptions / Zarr attrs 'bands') or pass "
        "--band-index"
    )
    with pytest.warns(UnnamedBandsWarning) as said:
        written = predict(package, plain, tmp_path / "plain-out.tif", Tiling(48, 16, 4))
    with rasterio.open(written) as out:
        np.testing.assert_array_equal(out.read(1), expected)
    assert [str(w.message) for w in said] == [in_order]
    with warnings.catch_warnings():
        warnings.simplefilter("default", UnnamedBandsWarning)  # pyproject's filter leaves it out of other tests
        assert main(["predict", str(tmp_path / "pkg"), str(plain), str(tmp_path / "plain-cli-out.tif")]) == 0
    assert capsys.readouterr().err == f"warning: {in_order}\n"
    common = _tif(tmp_path / "common.tif", stored, ["nir", "Red", "B03", "blue"] * 2)  # common names, any case
    with rasterio.open(predict(package, common, tmp_path / "common-out.tif", Tiling(48, 16, 4))) as out:
        np.testing.assert_array_equal(out.read(1), expected)

    other = _tif(tmp_path / "other.tif", stored, ["B05", "B06", "B07", "B11"] * 2)
    assert main(["predict", str(tmp_path / "pkg"), str(other), str(tmp_path / "other-out.tif")]) == 1
    assert capsys.readouterr().err == (
        "error: the input's date 1 of 2 (bands 1 to 4) bands ['B05', 'B06', 'B07', 'B11'] lack the model's bands "
        "['B02', 'B03', 'B04', 'B08']: name the bands B02 (blue), B03 (green), B04 (red), B08 (nir) (GeoTIFF "
        "descriptions / Zarr attrs 'bands') or pass --band-index\n"
    )
    odd = _tif(tmp_path / "odd.tif", stored[:7], ["B08", "B04", "B03", "B02", "B08", "B04", "B03"])
    assert main(["predict", str(tmp_path / "pkg"), str(odd), str(tmp_path / "odd-out.tif")]) == 1
    assert "the input's 7 bands do not split into the model's 2 dates" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*out.tif")) == [
        "common-out.tif",
        "out.tif",
        "plain-cli-out.tif",
        "plain-out.tif",
    ]


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_tiles_too_big_for_the_memory_are_refused_with_what_to_change(tmp_path: Path, monkeypatch) -> None:
    """A --block of 100000 px was numpy's MemoryError from deep in the blending; a GPU's out-of-memory torch's."""
    import torch

    import eoshard.training.scene as scene_module

    package = random_package(tmp_path)
    src = _tif(tmp_path / "in.tif", _scene(40, 50).astype("uint16"), list(BANDS))
    with pytest.raises(ConfigError) as told:
        predict(package, src, tmp_path / "big.tif", Tiling(100_000, 64, 16))
    assert str(told.value) == (
        "tiles of 100000 x 100000 px, as many at a time as the device's default, need more memory than there is "
        "(Unable to allocate 74.5 GiB for an array with shape (100000, 100000) and data type float64): predict "
        "with a smaller --block (256 by default) or --batch-size"
    )

    no_room = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    monkeypatch.setattr(scene_module, "model_fn", lambda *args, **kwargs: raising(no_room))
    with pytest.raises(ConfigError, match=r"^tiles of 512 x 512 px, 8 at a time, need more memory than there is "
                       r"\(CUDA out of memory\. Tried to allocate 2\.00 GiB"):  # fmt: skip
        predict(package, src, tmp_path / "gpu.tif", Tiling(512, 64, 16), batch_size=8)
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == ["in.tif"]  # nothing half-written is left


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_the_class_maps_stac_item_has_its_footprint_and_the_inputs_period(tmp_path: Path) -> None:
    """STAC requires a datetime, or a start and an end: the period of the scene's dates (``eoshard predict``'s Zarr
    says them); and the footprint, in longitude and latitude, of the map's grid."""
    import json

    from rasterio.warp import transform_bounds

    src = _zarr_input(tmp_path / "in.zarr", _scene(70, 90)[[3, 0, 1, 2]])
    zarr.open_array(str(src), mode="r+").attrs["dates"] = ["2024-05-18T10:20:21", "2024-07-17T10:20:21"]
    package = random_package(tmp_path)
    out = predict(package, src, tmp_path / "classes.tif", Tiling(48, 16, 4))
    item = json.loads(out.with_suffix(".json").read_text())
    x0, y1 = TRANSFORM[2], TRANSFORM[5]
    expected = transform_bounds("EPSG:32632", "EPSG:4326", x0, y1 - 70 * 10, x0 + 90 * 10, y1, densify_pts=21)
    assert item["bbox"] == pytest.approx(list(expected), abs=1e-12)
    assert item["geometry"]["type"] == "Polygon" and len(item["geometry"]["coordinates"][0]) == 81
    assert item["properties"] == {"datetime": None, "start_datetime": "2024-05-18T10:20:21Z",
                                  "end_datetime": "2024-05-18T10:20:21Z"}  # fmt: skip
    assert item["assets"]["classes"]["proj:shape"] == [70, 90]
    undated = predict(package, _zarr_input(tmp_path / "undated.zarr", _scene(70, 90)), tmp_path / "u.tif",
                      Tiling(48, 16, 4))  # fmt: skip
    props = json.loads(undated.with_suffix(".json").read_text())["properties"]
    assert props["datetime"] is not None and props["datetime"] == props["created"]


@pytest.mark.needs_build  # odc-geo's footprint is the reference
@pytest.mark.parametrize(
    "transform",
    [TRANSFORM, [10.0, 2.0, 720240.0, 1.0, -10.0, 5325240.0], [10.0, 0.0, 720240.0, 0.0, 10.0, 5325240.0]],
    ids=["north-up", "rotated", "south-up"],
)
def test_the_class_maps_footprint_is_its_grids_outline(tmp_path: Path, transform: list[float]) -> None:
    """A rotated grid's footprint was the box of its first row and column's pixel sizes alone (the rotation's terms
    left out): 650 m wide where the grid spans 770 m."""
    import json

    import shapely
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from eoshard.training.maps import write_classification

    path = write_classification(
        tmp_path / "c.json", tmp_path / "c.tif", {1: "a"}, "EPSG:32632", transform, (70, 90)
    )
    item = json.loads(path.read_text())
    outline = shapely.Polygon(item["geometry"]["coordinates"][0])
    reference = GeoBox((70, 90), Affine(*transform), "EPSG:32632").footprint("EPSG:4326").geom
    assert outline.is_valid and outline.exterior.is_ccw  # GeoJSON's exterior ring order
    assert outline.symmetric_difference(reference).area < 1e-6 * reference.area
    assert item["bbox"] == pytest.approx(list(reference.bounds), abs=1e-9)


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_a_geotiff_scene_raises_gdals_block_cache_to_what_a_row_of_windows_spans(tmp_path: Path) -> None:
    """GDAL's block cache (5 % of the memory by default) held too few of a many-band scene's blocks, and GDAL
    decoded them again for each row of windows: reading a scene raises it to the blocks a row of windows spans (a
    pixel-interleaved block holds every band), never lowers it, and sets it back when the scene is closed."""
    import rasterio
    from rasterio.env import get_gdal_config, set_gdal_config
    from rasterio.transform import Affine

    from eoshard.training.scene import gdal_rows_bytes, open_scene

    image = _scene(300, 520).astype("uint16")
    files = {}
    for interleave in ("pixel", "band"):
        files[interleave] = path = tmp_path / f"{interleave}.tif"
        profile = {"driver": "GTiff", "count": 4, "height": 300, "width": 520, "dtype": "uint16", "crs": "EPSG:32632",
                   "transform": Affine(*TRANSFORM), "tiled": True, "blockxsize": 64, "blockysize": 64,
                   "interleave": interleave}  # fmt: skip
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(image)
            dst.descriptions = ("B02", "B03", "B04", "B08")
    rows_40 = 2 * (9 + 1) * 64 * 64 * 2  # 2 block rows under a 40 px row of windows, 9 block columns and one more
    with rasterio.open(files["pixel"]) as src:
        assert gdal_rows_bytes(src, 2, 40) == rows_40 * 4  # every band's block, whichever the model reads
        assert gdal_rows_bytes(src, 2, 100) == 3 * rows_40 * 4 // 2
    with rasterio.open(files["band"]) as src:
        assert gdal_rows_bytes(src, 2, 40) == rows_40 * 2
    package = random_package(tmp_path)
    saved = get_gdal_config("GDAL_CACHEMAX")
    try:
        set_gdal_config("GDAL_CACHEMAX", 200_000)
        scene = open_scene(files["pixel"], package)
        assert get_gdal_config("GDAL_CACHEMAX") == 200_000  # not before the first window
        np.testing.assert_array_equal(scene.read(20, 30, 40, 40), image[:, 20:60, 30:70])
        assert get_gdal_config("GDAL_CACHEMAX") == rows_40 * 4
        scene.close()
        assert get_gdal_config("GDAL_CACHEMAX") == 200_000  # the process's own again, the file closed
        with pytest.raises(rasterio.errors.RasterioIOError):
            scene.read(20, 30, 40, 40)
        set_gdal_config("GDAL_CACHEMAX", 10**9)
        scene = open_scene(files["band"], package)
        np.testing.assert_array_equal(scene.read(0, 0, 40, 40), image[:, :40, :40])
        assert get_gdal_config("GDAL_CACHEMAX") == 10**9  # never lowered
        scene.close()
        assert get_gdal_config("GDAL_CACHEMAX") == 10**9
        # a whole prediction raises it while it reads and sets it back at the end, also when it fails
        set_gdal_config("GDAL_CACHEMAX", 200_000)
        predict(package, files["pixel"], tmp_path / "map.tif", Tiling(48, 16, 4))
        assert get_gdal_config("GDAL_CACHEMAX") == 200_000

        def stop(done: int, total: int) -> None:
            assert get_gdal_config("GDAL_CACHEMAX") == rows_48 * 4  # raised for the first tile
            raise RuntimeError("stopped after the first tile")

        rows_48 = 2 * (9 + 1) * 64 * 64 * 2
        with pytest.raises(RuntimeError, match="stopped after"):
            predict(package, files["pixel"], tmp_path / "map2.tif", Tiling(48, 16, 4), on_tile=stop)
        assert get_gdal_config("GDAL_CACHEMAX") == 200_000
    finally:
        set_gdal_config("GDAL_CACHEMAX", saved)
