"""The build end to end on freshly generated demo data, checked against the COGs and an independent reader."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import geopandas as gpd
import lmdb
import matplotlib.pyplot as plt
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.geom import BoundingBox
from rasterio.windows import from_bounds
from safetensors.numpy import load
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.quicklooks import _BACKGROUND_COLOUR
from eoshard.pipeline.errors import readable_bytes
from tests.demo_config import demo_build_config, write_config
from tests.pipeline.test_labels_exact import reference

BANDS = ["B02", "B03", "B04", "B08", "B11"]
GROUP_OF = {
    "B02": ("s2_10m", 0),
    "B03": ("s2_10m", 1),
    "B04": ("s2_10m", 2),
    "B08": ("s2_10m", 3),
    "B11": ("s2_20m", 0),
}
BLOCK = 960.0


def _config(demo_data, out: Path) -> dict:
    return demo_build_config(
        demo_data,
        out,
        bands=BANDS,
        timeseries={"mask": "nodata", "min_valid_fraction": 0.5, "min_dates": 1},
        splits={"block_size": BLOCK, "fractions": [0.6, 0.2, 0.2], "seed": 7},
        output={"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 5, "lmdb_parts": 3},
    )


@pytest.fixture(scope="module")
def built(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "demo"
    path = write_config(_config(demo_data, out), out.parent / "build.yaml")
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out


def _items_by_date(catalog: Path) -> dict[str, list[pystac.Item]]:
    items: dict[str, list[pystac.Item]] = {}
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), []).append(item)
    return items


def _native_item(items: list[pystac.Item], epsg: int) -> pystac.Item:
    """The newest-baseline product in the grid's CRS (duplicates carry identical pixels)."""
    native = [i for i in items if i.properties["proj:code"] == f"EPSG:{epsg}"]
    return sorted(native, key=lambda i: i.id)[-1]


def _read_all_lmdb(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """The rico-hdl access code: plain lmdb + safetensors.numpy.load, every part, every key."""
    samples = {}
    for part in sorted((root / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            for key, value in txn.cursor():
                samples[key.decode()] = load(value)
        env.close()
    return samples


def test_lmdb_and_zarr_equal_the_cog_pixels(built: Path, demo_data) -> None:
    manifest = json.loads((built / "dataset.json").read_text())
    index = gpd.read_parquet(built / "index.parquet").set_index("key")
    assert manifest["bands"] == BANDS
    assert manifest["crs"] == "EPSG:32632"
    # 15 products under 60 % cloud form 7 acquisitions; the build applies the rules of `eoshard select`, which
    # leaves out the reprocessed duplicate (N0510 of T32UQU, 2024-05-18) and, on 2024-05-18 and 2024-07-17, the
    # T33UUP product whose part of the AOI lies inside T32UQU's footprint: 12 products
    assert len(manifest["products"]) == 12
    left_out = {"S2A_MSIL2A_20240518T102021_N0510_R065_T32UQU_20240518T133202",
                "S2A_MSIL2A_20240518T102021_N0510_R065_T33UUP_20240518T133202",
                "S2B_MSIL2A_20240717T102021_N0510_R065_T33UUP_20240717T133202"}  # fmt: skip
    assert left_out.isdisjoint(manifest["products"])
    assert manifest["radiometry"] == {
        p: {"scale": 0.0001, "offset": -0.1, "source": "raster:bands"} for p in manifest["products"]
    }
    assert len(manifest["dates"]) == 7
    # the AOI's grid is 474 x 618 px: 9 x 12 whole 48 px patches
    assert manifest["shape"] == [474, 618]
    assert manifest["n_candidates"] == 9 * 12

    by_date = _items_by_date(demo_data.catalog)
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    assert group["s2_10m"].shape == (108, 7, 4, 48, 48)
    assert group["s2_20m"].shape == (108, 7, 1, 24, 24)
    assert group["s2_10m"].dtype == np.uint16
    dataset = xr.open_zarr(built / "data.zarr", consolidated=False)  # plain xarray reads the group
    assert dataset["s2_20m"].dims == ("sample", "time", "band_s2_20m", "y_s2_20m", "x_s2_20m")
    assert dataset["class"].dims == ("sample", "y", "x")
    samples = _read_all_lmdb(built)
    checked = 0
    for n in (0, 13, 40, 57, 100):
        key = manifest["keys"][n]
        sample, row = samples[key], index.loc[key]
        assert row["zarr_index"] == n
        epsg, res, x0, y0 = (float(v) for v in key.split("_"))
        bounds = (x0, y0 - 48 * res, x0 + 48 * res, y0)  # the same ground at every resolution
        assert list(row["dates"]) == [manifest["dates"][t] for t in sample["time_index"]]
        for i, t in enumerate(sample["time_index"]):
            item = _native_item(by_date[manifest["dates"][t]], int(epsg))
            for band in BANDS:
                with rasterio.open(item.assets[band].get_absolute_href()) as src:
                    window = from_bounds(*bounds, transform=src.transform)
                    expected = src.read(1, window=window, boundless=True, fill_value=0)
                got_lmdb = sample[band][i]
                name, index_in_group = GROUP_OF[band]
                got_zarr = group[name][n, t, index_in_group]
                valid = expected != 0  # where the native tile has no data the other zone's tile fills in
                np.testing.assert_array_equal(got_lmdb[valid], expected[valid])
                np.testing.assert_array_equal(got_zarr, got_lmdb)
                checked += int(valid.sum())
    assert checked > 5 * 4 * (4 * 48 * 48 + 24 * 24) * 0.4


def test_zarr_lmdb_and_index_hold_the_same_samples(built: Path) -> None:
    manifest = json.loads((built / "dataset.json").read_text())
    index = gpd.read_parquet(built / "index.parquet")
    samples = _read_all_lmdb(built)
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    sample_mask, time_mask = group["sample_mask"][:], group["time_mask"][:]
    assert sorted(samples) == sorted(index["key"]) == sorted(np.array(manifest["keys"])[sample_mask])
    assert len(index) == manifest["n_samples"] == int(sample_mask.sum())
    assert manifest["n_samples"] + manifest["dropped"]["too_few_dates"] == manifest["n_candidates"]
    assert index["zarr_index"].is_monotonic_increasing
    fractions = group["valid_fraction"][:]
    for row in index.itertuples():
        n, sample = row.zarr_index, samples[row.key]
        assert row.shard == n // 5
        assert row.lmdb_part == f"part-{row.shard % 3:02d}"
        kept = time_mask[n]
        # the kept dates are exactly those with at least half the patch valid
        np.testing.assert_array_equal(kept, fractions[n] >= 0.5)
        assert row.n_dates == int(kept.sum()) == len(sample["date"])
        np.testing.assert_array_equal(sample["time_index"], np.flatnonzero(kept))
        np.testing.assert_array_equal(group["s2_10m"][n][kept][:, 0], sample["B02"])
        np.testing.assert_array_equal(group["s2_20m"][n][kept][:, 0], sample["B11"])
        assert not group["s2_10m"][n][~kept].any()  # padded dates hold zeros
        for layer in ("class", "parcel_id", "valid_mask"):
            zarr_values = group[layer][n]
            np.testing.assert_array_equal(
                zarr_values[kept] if layer == "valid_mask" else zarr_values, sample[layer]
            )
        # the valid mask is "any band holds data", recomputed from the pixels themselves
        pixels = group["s2_10m"][n][kept]
        coarse = group["s2_20m"][n][kept].repeat(2, axis=2).repeat(2, axis=3)
        expected_mask = (pixels != 0).any(axis=1) | (coarse != 0).any(axis=1)
        np.testing.assert_array_equal(sample["valid_mask"], expected_mask)
        np.testing.assert_allclose(sample["valid_fraction"], expected_mask.mean(axis=(1, 2)), rtol=1e-6)
        assert row.masked_pixels == int((~expected_mask).sum())
        histogram = json.loads(row.class_histogram)
        values, counts = np.unique(sample["class"], return_counts=True)
        assert histogram == {str(v): int(c) for v, c in zip(values, counts, strict=True)}
        x0, y0 = row.transform[2], row.transform[5]
        assert row.geometry.bounds == (x0, y0 - 480, x0 + 480, y0)
        assert row.key == f"32632_10_{x0:.0f}_{y0:.0f}"
        doy = [int(np.datetime64(d[:10], "D").astype(object).strftime("%j")) for d in row.dates]
        assert sample["doy"].tolist() == doy


def test_statistics_and_class_counts_match_an_independent_computation(built: Path) -> None:
    manifest = json.loads((built / "dataset.json").read_text())
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    time_mask = group["time_mask"][:]
    values = group["s2_20m"][:][:, :, 0][time_mask]  # B11 on the kept dates of kept samples
    values = values[values != 0].astype(np.float64)
    stats = manifest["statistics"]["B11"]
    assert stats["count"] == values.size
    assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert stats["std"] == pytest.approx(values.std(), rel=1e-9)
    for p in (1, 50, 99):
        assert stats["percentiles"][str(p)] == np.percentile(values, p, method="inverted_cdf")
    classes = group["class"][:][group["sample_mask"][:]]
    codes, counts = np.unique(classes, return_counts=True)
    assert manifest["labels"]["class_counts"] == {str(c): int(n) for c, n in zip(codes, counts, strict=True)}


def test_splits_are_spatially_blocked_and_all_present(built: Path) -> None:
    index = gpd.read_parquet(built / "index.parquet")
    blocks = {}
    for row in index.itertuples():
        block = (math.floor(row.transform[2] / BLOCK), math.floor(row.transform[5] / BLOCK))
        assert blocks.setdefault(block, row.split) == row.split
    assert set(index["split"]) == {"train", "val", "test"}
    manifest = json.loads((built / "dataset.json").read_text())
    assert manifest["splits"]["counts"] == index["split"].value_counts().to_dict()


def test_stac_collection_describes_the_dataset(built: Path) -> None:
    collection = pystac.Collection.from_file(str(built / "collection.json"))
    assert collection.id == "demo-test"
    assert set(collection.assets) == {"manifest", "index", "zarr", "lmdb", "croissant"}
    assert (
        collection.extra_fields["eoshard:n_samples"]
        == json.loads((built / "dataset.json").read_text())["n_samples"]
    )
    west, south, east, north = collection.extent.spatial.bboxes[0]
    assert 11.9 < west < east < 12.1 and 47.9 < south < north < 48.1


def test_label_patches_match_an_independent_rasterization(built: Path, demo_data) -> None:
    """Every label layer of sampled patches equals a per-pixel shapely reference (exact areas, majority class)."""
    manifest = json.loads((built / "dataset.json").read_text())
    parcels = gpd.read_file(demo_data.parcels)
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    layers = manifest["labels"]["layers"]
    assert sorted(layers) == ["class", "coverage", "double_full", "double_partial", "parcel_id"]
    for n in (21, 77):
        epsg, res, x0, y0 = (float(v) for v in manifest["keys"][n].split("_"))
        window = GeoBox.from_bbox(
            BoundingBox(x0, y0 - 48 * res, x0 + 48 * res, y0, f"EPSG:{int(epsg)}"),
            f"EPSG:{int(epsg)}",
            resolution=res,
        )
        expected = reference(parcels, window, "class_code", "parcel_id")
        np.testing.assert_allclose(group["coverage"][n], expected["coverage"], atol=1e-6, rtol=0)
        for name in ("class", "parcel_id", "double_partial", "double_full"):
            np.testing.assert_array_equal(group[name][n], expected[name], err_msg=name)
    assert manifest["labels"]["classes"] == {
        "1": "winter_wheat", "2": "maize", "3": "rapeseed", "4": "grassland", "5": "sugar_beet", "6": "potato",
    }  # fmt: skip


def test_verify_passes_then_catches_a_flipped_byte(built: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="label geometries were invalid"):  # verify re-plans the build
        result = CliRunner().invoke(app, ["verify", str(built), "--sources", "2"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).endswith(
        f"{built}: checksums, LMDB, Zarr and 2 source samples verified, no difference"
    )
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    name = next(n for n in manifest["checksums"] if n.startswith("data.zarr/s2_10m/"))
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "0"])
    assert result.exit_code == 1
    assert f"checksum mismatch in {name}" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m.update(dates=m["dates"][::-1]), "dataset.json's dates is not the Zarr store's (entry 0: '"),
        (lambda m: m["groups"]["s2_10m"]["bands"].reverse(), "dataset.json's groups is not the Zarr store's ({'s2_10m': ["),
        (lambda m: m.update(keys=m["keys"][:-1]), "dataset.json's keys is not the Zarr store's ("),
        # an HR section the store was built without (verify's KeyError 'hr', found by the fuzz test of manifests)
        (lambda m: m.update(hr={"bands": ["B"], "tensors": ["hr_B"], "resolution": 2.5, "factor": 4,
                                "shape": [1, 256, 256], "dtype": "uint16", "products": []}),
         "the samples cannot be read back: dataset.json names the Zarr array hr, which the store does not hold"),
    ],
)  # fmt: skip
def test_verify_finds_a_manifest_that_does_not_describe_its_store(
    built: Path, tmp_path: Path, change, expected: str
) -> None:
    """Dates reordered or bands swapped by hand in dataset.json: the checksums cover the shard files only, and verify
    passed such a manifest while the readers took its dates and band names for the samples'."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    change(manifest)
    (copy / "dataset.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "0"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1, shown
    assert (
        expected in shown and "the manifest was changed, or is another dataset's; restore it, or rebuild" in shown
    )


def _statistics_edited(copy: Path) -> None:
    manifest = json.loads((copy / "dataset.json").read_text())
    manifest["statistics"]["B04"]["mean"] += 1.0  # written as the build writes it: only the value differs
    (copy / "dataset.json").write_text(json.dumps(manifest, indent=2))


def _a_split_moved(copy: Path) -> None:
    index = gpd.read_parquet(copy / "index.parquet")
    index.loc[index.index[0], "split"] = "test" if index["split"].iloc[0] != "test" else "train"
    index.to_parquet(copy / "index.parquet")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_statistics_edited, "dataset.json is not the file the build wrote (its SHA-256 differs from the one "
         "croissant.json records): it was changed since; restore it, or rebuild the dataset"),
        (_a_split_moved, "index.parquet is not the file the build wrote"),
        (lambda copy: (copy / "collection.json").write_text("{}"),
         "collection.json is not the file the build wrote"),
        (lambda copy: (copy / "croissant.json").write_text("{"),
         "croissant.json cannot be read (JSONDecodeError: "),
        (lambda copy: (copy / "croissant.json").unlink(),
         "croissant.json is missing, though the build that wrote this dataset.json wrote one (with the SHA-256"),
    ],
)  # fmt: skip
def test_verify_finds_statistics_splits_or_cards_changed_after_the_build(
    built: Path, tmp_path: Path, change, expected: str
) -> None:
    """The manifest's checksums cover the shard files: a normalisation value or a sample's split changed afterwards
    passed verify, and every reader took it; the card's digests of the dataset's own files catch it (a deleted card
    is named: it would turn the check off)."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    change(copy)
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "0"])
    shown = " ".join(result.output.split())
    assert result.exit_code == 1, shown
    assert f"difference: {expected}" in shown
    assert shown.count("difference:") == 1, shown  # the samples themselves are intact


def test_a_copy_without_its_build_folder_verifies_its_own_files_and_says_why_not_its_sources(
    built: Path, tmp_path: Path
) -> None:
    """Readers ignore ``_build/``, so copies leave it behind; verify needs its plan to re-read the sources."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy, ignore=shutil.ignore_patterns("_build"))
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "2"])
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == (
        f"error: verify re-reads source pixels through the plan of the build, and {copy} has no _build/plan.json (a "
        "copy of the dataset without _build/?): verify with --sources 0 to check the dataset's own files alone, or "
        "copy _build/ beside them"
    )
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "0"])
    assert result.exit_code == 0, result.output
    assert "0 source samples verified, no difference" in " ".join(result.output.split())


def test_verify_compares_shards_with_the_source_pixels(built: Path, tmp_path: Path) -> None:
    """A changed pixel with a matching checksum is still found: the shard is compared with the products."""
    from eoshard.flows.verify import compare_with_sources

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    index = gpd.read_parquet(copy / "index.parquet")
    group = zarr.open_group(str(copy / "data.zarr"), mode="r+")
    row = index.iloc[3]
    values = group["s2_20m"][row.zarr_index]
    t = int(np.flatnonzero(group["time_mask"][row.zarr_index])[0])
    values[t, 0, 5, 5] ^= 1
    group["s2_20m"][row.zarr_index] = values
    manifest = json.loads((copy / "dataset.json").read_text())
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        problems = compare_with_sources(copy, manifest, index.iloc[[2, 3]])
    assert problems == [f"sample {row.key}: group s2_20m differs from the source pixels"]


def test_verify_finds_missing_foreign_and_changed_lmdb_values(built: Path, tmp_path: Path) -> None:
    from eoshard.flows.verify import verify_dataset

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    index = gpd.read_parquet(copy / "index.parquet").sort_values("zarr_index")
    part = index[index.lmdb_part == "part-00"]
    gone, changed, other = part.iloc[1], part.iloc[3], part.iloc[4]
    env = lmdb.open(str(copy / "data.lmdb" / gone.lmdb_part), map_size=2**30)
    with env.begin(write=True) as txn:
        assert txn.delete(gone.key.encode())
        txn.put(changed.key.encode(), txn.get(other.key.encode()))  # a valid value, of another sample
        txn.put(b"32632_10_0_0", txn.get(other.key.encode()))  # a sample the index does not list
    env.close()
    problems = verify_dataset(copy, n_source=0)
    assert problems[:3] == [
        f"LMDB lacks sample {gone.key}",
        "LMDB holds a sample not in the index: 32632_10_0_0",
        f"LMDB value of {changed.key} differs from its checksum",
    ]
    assert f"sample {changed.key}: band B04 differs between Zarr and LMDB" in problems
    assert f"sample {changed.key}: label layer class differs between Zarr and LMDB" in problems
    assert all(changed.key in p for p in problems[3:])  # every other sample is as built
    moved = index[index.lmdb_part == "part-01"].iloc[0]  # the index says part-00: a reader would not find it
    index.loc[index.key == moved.key, "lmdb_part"] = "part-00"
    index.to_parquet(copy / "index.parquet")
    assert f"sample {moved.key} is not in the LMDB part the index names (part-00)" in verify_dataset(
        copy, n_source=0
    )


def test_verify_holds_a_shard_of_samples_not_the_dataset(built: Path) -> None:
    import tracemalloc

    from eoshard.flows.verify import verify_dataset

    values = sum(len(v) for part in (built / "data.lmdb").iterdir() for v in _lmdb_values(part))
    tracemalloc.start()
    try:
        assert verify_dataset(built, n_source=0) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = len(gpd.read_parquet(built / "index.parquet"))
    assert n >= 40  # shards of 5: a shard is an eighth of the samples or less
    assert peak < values / 4, (peak, values)


def _lmdb_values(part: Path) -> list[bytes]:
    env = lmdb.open(str(part), readonly=True, lock=False)
    with env.begin() as txn:
        found = [bytes(v) for _, v in txn.cursor()]
    env.close()
    return found


def _file_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder``, as ``find`` lists them (``du`` also counts the folders)."""
    listed = subprocess.run(["find", folder, "-type", "f", "-printf", "%s\\n"], capture_output=True, text=True)
    return sum(int(size) for size in listed.stdout.split())


def test_inspect_prints_a_summary_and_draws_quicklooks(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "looks.png"
    # a path longer than the table's column: it was cut with an ellipsis (once pytest's folders reached 100)
    (tmp_path / ("a-long-folder-name-" * 4)).mkdir()
    (tmp_path / ("a-long-folder-name-" * 4) / "demo").symlink_to(built)
    built = tmp_path / ("a-long-folder-name-" * 4) / "demo"
    result = CliRunner().invoke(app, ["inspect", str(built), "--out", str(out), "--samples", "3"])
    assert result.exit_code == 0, result.output
    assert "winter_wheat" in result.output and "n_samples" in result.output
    dropped = json.loads((built / "dataset.json").read_text())["dropped"]["too_few_dates"]
    assert f"│ dropped      │ too few dates {dropped} " in result.output  # the reason in words, not a dict
    assert "background" in result.output  # code 0, which the parcels do not name
    zarr_size, lmdb_size = (readable_bytes(_file_bytes(built / store)) for store in ("data.zarr", "data.lmdb"))
    packed = "".join(result.output.replace("│", "").split())  # the table wraps long paths
    assert f"files{built / 'data.zarr'}({zarr_size}),{built / 'data.lmdb'}({lmdb_size})".replace(" ", "") in packed
    counts = json.loads((built / "dataset.json").read_text())["labels"]["class_counts"]
    assert f"{100 * counts['1'] / sum(counts.values()):.1f} %" in result.output  # winter wheat's share
    image = plt.imread(out)
    assert image.shape[0] > image.shape[1] > 100  # 3 rows of image + labels
    grey = np.isclose(image[..., :3], np.array(_BACKGROUND_COLOUR), atol=1 / 255).all(axis=-1)
    assert grey.sum() >= 50  # the legend's patch for the background (these samples have little of it)
    assert plt.imread(tmp_path / "looks-classes.png").shape[1] > 300  # the bar chart beside the quicklooks


def test_inspect_tells_a_path_it_cannot_write_without_a_traceback(built: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "looks.png"
    result = subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "inspect", str(built), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    message = " ".join(result.stderr.split())
    assert f"error: {out.parent}: File exists: check that the path exists, that this user may" in message
    wrong = CliRunner().invoke(app, ["inspect", str(built), "--out", str(tmp_path / "looks.xyz")])
    assert wrong.exit_code == 2 and not (tmp_path / "looks.xyz").exists()
    assert "matplotlib cannot write a .xyz file" in " ".join(wrong.output.split())
    pdf = CliRunner().invoke(app, ["inspect", str(built), "--out", str(tmp_path / "looks.pdf"), "--samples", "2"])
    assert pdf.exit_code == 0, pdf.output
    assert [(tmp_path / n).read_bytes()[:4] for n in ("looks.pdf", "looks-classes.pdf")] == [b"%PDF", b"%PDF"]


def test_open_dataset_refuses_a_dataset_that_lost_a_zarr_shard(built: Path, tmp_path: Path) -> None:
    """zarr would read the missing shard file as zeros: open_dataset names the file instead."""
    from eoshard.pipeline import DatasetError, open_dataset

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "data.zarr" / "s2_10m" / "c" / "1" / "0" / "0" / "0" / "0").unlink()
    with pytest.raises(
        DatasetError,
        match=r"1 Zarr shard file of .* is missing \(data.zarr/s2_10m/c/1/0/0/0/0\); zarr would read it as zeros",
    ):
        open_dataset(copy)


def test_open_dataset_names_a_manifest_that_does_not_describe_its_store(built: Path, tmp_path: Path) -> None:
    """A date dropped from dataset.json by hand: xarray's "conflicting sizes for dimension 'time'" from deep inside
    before (found by the fuzz test of manifests)."""
    from eoshard.pipeline import ManifestError, open_dataset

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    n_dates = len(manifest["dates"])
    manifest["dates"] = manifest["dates"][1:]
    (copy / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError) as caught:
        open_dataset(copy)
    message = str(caught.value)
    assert message.startswith(f"{copy / 'dataset.json'} does not describe its Zarr store (conflicting sizes for ")
    assert f"length {n_dates - 1} on 'time' and length {n_dates}" in message
    assert message.endswith("the file was changed, or is another dataset's; restore it, or rebuild the dataset")


def test_inspect_leaves_out_the_split_shares_when_a_class_shard_is_missing(built: Path, tmp_path: Path) -> None:
    """inspect still summarises a dataset that lost a class shard, without the shares per split, and says why, with
    the command that tells more on one line (a path longer than the terminal's 80 columns is not folded)."""
    copy = tmp_path / "a-copy-whose-path-is-longer-than-a-terminal-line-of-eighty-columns-where-it-would-be-folded"
    shutil.copytree(built, copy)
    next(p for p in sorted((copy / "data.zarr" / "class" / "c").rglob("*")) if p.is_file()).unlink()
    result = CliRunner().invoke(app, ["inspect", str(copy), "--out", str(tmp_path / "q.png"), "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert "1 Zarr shard file of" in " ".join(result.output.split())
    assert f"`eoshard verify {copy}` tells what is damaged" in result.output
    assert "train" not in result.output.split("classes (pixels over all samples)")[1].split("quicklooks")[0]
    assert not (tmp_path / "q-classes.png").exists()


def test_inspect_leaves_out_the_split_shares_when_the_class_layer_was_changed(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    zarr.open_array(str(copy / "data.zarr" / "class"), mode="r+")[0] = 99  # a valid shard, other labels
    result = CliRunner().invoke(app, ["inspect", str(copy), "--out", str(tmp_path / "q.png"), "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert "does not add up to the class counts of dataset.json" in " ".join(result.output.split())
    assert not (tmp_path / "q-classes.png").exists()


def test_the_class_counts_per_split_add_up_to_the_builds_counts(built: Path) -> None:
    """Counted again from the Zarr store a shard at a time, split by split: the build's own statistics (counted
    in the shard tasks) are their sum, and each split has its samples' pixels."""
    from eoshard.flows.class_histogram import split_class_counts

    per_split = split_class_counts(built)
    index = gpd.read_parquet(built / "index.parquet")
    assert list(per_split) == [s for s in ("train", "val", "test") if s in set(index["split"])]
    total: Counter[int] = Counter()
    for counts in per_split.values():
        total.update(counts)
    manifest = json.loads((built / "dataset.json").read_text())
    assert {str(code): n for code, n in total.items()} == manifest["labels"]["class_counts"]
    pixels = int(np.prod(zarr.open_group(str(built / "data.zarr"), mode="r")["class"].shape[1:]))
    for split, counts in per_split.items():
        assert sum(counts.values()) == (index["split"] == split).sum() * pixels


@pytest.mark.slow
def test_reading_through_the_cubes_graph_gives_the_same_bytes(built: Path, demo_data, tmp_path: Path) -> None:
    """The build's direct reads and the lazy cubes' Dask graph (the reference path) write identical datasets."""
    from tests.dataset_bytes import dataset_files, lmdb_contents

    out = tmp_path / "demo"
    config = {**_config(demo_data, out), "cube": {"reads": "graph"}}
    path = write_config(config, tmp_path / "graph.yaml")
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    direct = {k: v for k, v in dataset_files(built).items() if not k.startswith("_build")}
    graph = {k: v for k, v in dataset_files(out).items() if not k.startswith("_build")}
    assert sorted(direct) == sorted(graph) and [k for k in direct if direct[k] != graph[k]] == []
    assert lmdb_contents(built) == lmdb_contents(out)


def test_the_manifest_is_the_layout_value_as_written(built: Path) -> None:
    from eoshard.pipeline import read_layout

    layout = read_layout(built)
    assert json.dumps(layout.to_manifest(), indent=2) == (built / "dataset.json").read_text()
    assert read_layout(str(built)).to_manifest() == layout.to_manifest()  # a str, as open_dataset takes
    s2_20m = layout.groups["s2_20m"]
    assert (s2_20m.bands, s2_20m.factor, s2_20m.resolution) == (("B11",), 2, 20.0)
    assert s2_20m.grid(layout.grid).shape == tuple(-(-n // 2) for n in layout.grid.shape)
    assert s2_20m.shape[2:] == (24, 24) and layout.labels is not None and "class" in layout.labels.layers


def test_open_dataset_gives_the_samples_with_real_coordinates(built: Path, tmp_path: Path) -> None:
    from eoshard.pipeline import open_dataset, sample_image

    ds = open_dataset(built)
    index = gpd.read_parquet(built / "index.parquet")
    manifest = json.loads((built / "dataset.json").read_text())
    assert list(ds.sample.values) == list(index["key"]) and ds.attrs["crs"] == "EPSG:32632"
    assert [str(t)[:19] for t in ds.time.values] == manifest["dates"]
    assert list(ds.band_s2_10m.values) == ["B02", "B03", "B04", "B08"] and list(ds.band_s2_20m.values) == ["B11"]
    assert ds.s2_10m.chunks is not None  # lazy, a chunk per Zarr shard (5 slots), less the dropped samples
    by_shard = index.groupby(index["zarr_index"] // manifest["formats"]["zarr"]["shard_size"]).size().tolist()
    assert list(ds.s2_10m.chunks[0]) == by_shard and max(by_shard) == 5 and len(by_shard) < len(index) / 3
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    row = index.iloc[2]
    np.testing.assert_array_equal(ds.s2_20m.sel(sample=row.key).values, group["s2_20m"][row.zarr_index])
    np.testing.assert_array_equal(ds["class"].sel(sample=row.key).values, group["class"][row.zarr_index])
    assert ds["class"].attrs["flag_values"].tolist() == [0, 1, 2, 3, 4, 5, 6]  # CF: the codes and their names
    assert (
        ds["class"].attrs["flag_meanings"] == "background winter_wheat maize rapeseed grassland sugar_beet potato"
    )
    x0, y0, x1, y1 = row.geometry.bounds
    assert ds.easting_s2_20m.sel(sample=row.key).values[[0, -1]].tolist() == [x0 + 10, x1 - 10]
    assert ds.northing.sel(sample=row.key).values[[0, -1]].tolist() == [y1 - 5, y0 + 5]
    assert ds.transform.sel(sample=row.key).values.tolist() == list(row["transform"])
    assert ds.split.sel(sample=row.key) == row.split
    train = ds.s2_10m.where(ds.split == "train", drop=True)
    assert train.sizes["sample"] == (index["split"] == "train").sum()
    image = sample_image(ds, row.key, "s2_10m")
    assert image.odc.geobox.extent.boundingbox.bbox == pytest.approx((x0, y0, x1, y1))
    assert image.odc.geobox.crs.epsg == 32632 and image.dims == ("time", "band", "y", "x")
    with lmdb.open(str(built / "data.lmdb" / row.lmdb_part), readonly=True, lock=False) as env, env.begin() as txn:
        sample = load(txn.get(row.key.encode()))
    kept = group["time_mask"][row.zarr_index]
    np.testing.assert_array_equal(image.sel(band="B04").values[kept], sample["B04"])
    image.isel(time=int(np.flatnonzero(kept)[0])).sel(band="B04").plot()
    plt.savefig(tmp_path / "b04.png")
    plt.close("all")
    assert (tmp_path / "b04.png").stat().st_size > 1000


def test_open_dataset_reads_one_sample_not_its_shard(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk per Zarr shard, yet ``.sel`` of one sample asks zarr for that sample's slot alone, in a shard that
    kept all its slots and in one that dropped some; a whole read still equals the kept slots of the store."""
    from eoshard.pipeline import open_dataset

    index = gpd.read_parquet(built / "index.parquet")
    size = json.loads((built / "dataset.json").read_text())["formats"]["zarr"]["shard_size"]
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    slots = index["zarr_index"].to_numpy()
    kept = np.bincount(slots // size, minlength=int(slots.max()) // size + 1)
    whole, gappy = np.flatnonzero(kept == size)[0], np.flatnonzero((kept > 0) & (kept < size))[0]
    ds = open_dataset(built)
    asked: list[object] = []
    read = zarr.Array.__getitem__
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda self, sel: asked.append(sel) or read(self, sel))
    for shard in (whole, gappy):
        row = index[index["zarr_index"] // size == shard].iloc[-1]
        asked.clear()
        values = ds.s2_20m.sel(sample=row.key).values
        assert [sel[0] for sel in asked] == [row.zarr_index]  # type: ignore[index]
        np.testing.assert_array_equal(values, read(group["s2_20m"], row.zarr_index))
    monkeypatch.undo()
    assert ds.s2_10m.chunks is not None and list(ds.s2_10m.chunks[0]) == [int(n) for n in kept if n]
    np.testing.assert_array_equal(ds.s2_10m.values, group["s2_10m"][:][slots])
    np.testing.assert_array_equal(ds["class"].isel(sample=[1, 4, 9]).values, group["class"][:][slots[[1, 4, 9]]])


def test_sample_image_names_the_keys_and_images_there_are(built: Path) -> None:
    from eoshard.pipeline import DatasetError, open_dataset, sample_image

    ds = open_dataset(built)
    first = str(ds.sample.values[0])
    with pytest.raises(DatasetError, match=rf"no sample 'nope': give one of its keys .*'{first}'"):
        sample_image(ds, "nope", "s2_10m")
    with pytest.raises(DatasetError, match=r"no image 'time_mask': its images are \['class', .*'s2_10m'"):
        sample_image(ds, first, "time_mask")


def test_eoshard_open_dataset_at_the_top_level_is_the_pipeline_reader(built: Path) -> None:
    import eoshard
    import eoshard.pipeline

    assert eoshard.open_dataset is eoshard.pipeline.open_dataset
    ds = eoshard.open_dataset(built)
    index = gpd.read_parquet(built / "index.parquet")
    row = index.iloc[0]
    x0, y0, x1, y1 = row.geometry.bounds
    assert list(ds.sample.values) == list(index["key"]) and ds.attrs["crs"] == "EPSG:32632"
    assert ds.easting.sel(sample=row.key).values[[0, -1]].tolist() == [x0 + 5, x1 - 5]
    assert ds.northing_s2_20m.sel(sample=row.key).values[[0, -1]].tolist() == [y1 - 10, y0 + 10]
    assert str(ds.time.values[0])[:19] == json.loads((built / "dataset.json").read_text())["dates"][0]


def test_verify_names_a_cut_shard_a_truncated_lmdb_and_a_garbled_zarr_json(built: Path, tmp_path: Path) -> None:
    """A shard's end flipped or cut short raised zarr's checksum traceback (in verify, and in ``open_dataset``'s
    reads); a truncated data.mdb killed verify with SIGBUS (exit 135, nothing said); a garbled zarr.json raised
    JSONDecodeError."""
    from eoshard.flows.verify import verify_dataset
    from eoshard.pipeline import DatasetError, open_dataset

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    manifest = json.loads((copy / "dataset.json").read_text())
    name = next(n for n in manifest["checksums"] if n.startswith("data.zarr/s2_10m/c/"))
    shard = copy / name
    shard.write_bytes(shard.read_bytes()[:-64])  # the shard index at its end, cut
    problems = verify_dataset(copy, n_source=0)
    assert problems[0] == f"checksum mismatch in {name}"
    assert len(problems) == 2 and re.fullmatch(r"the Zarr slots \d+\.\.\d+ cannot be read \(.+\)", problems[1])
    index = int(name.split("/")[3])  # data.zarr/s2_10m/c/SHARD/...
    with pytest.raises(DatasetError) as failed:  # it was zarr's ValueError, naming no file
        open_dataset(copy).s2_10m.load()
    assert re.fullmatch(
        rf"could not read slots \d+\.\.\d+ of array 's2_10m' of {re.escape(str(copy))} \(its Zarr shard {index}\): "
        r"\w+: .+\. The file is damaged or unreadable \(a disk, or a copy, that went wrong\): run `eoshard verify "
        rf"{re.escape(str(copy))}`, which names every damaged file, then copy the dataset again or rebuild it",
        str(failed.value),
    ), failed.value
    shutil.rmtree(copy)
    shutil.copytree(built, copy)
    mdb = copy / "data.lmdb" / "part-00" / "data.mdb"
    os.truncate(mdb, mdb.stat().st_size - 8192)
    result = CliRunner().invoke(app, ["verify", str(copy), "--sources", "0"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"{mdb} is truncated: " in said and "copy the dataset again" in said
    shutil.rmtree(copy)
    shutil.copytree(built, copy)
    (copy / "data.zarr" / "zarr.json").write_text("{garbage")
    assert verify_dataset(copy, n_source=0) == [
        f"the samples cannot be read back: {copy / 'data.zarr'} cannot be opened as a Zarr group (Expecting "
        "property name enclosed in double quotes: line 1 column 2 (char 1)): the dataset is damaged; copy it again, "
        "or rebuild it"
    ]
