"""Converters on the real samples of the public datasets, and on small trees in the published layouts."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import lmdb
import numpy as np
import pytest
import rasterio
import zarr
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import from_origin
from safetensors.numpy import load

from eoshard.flows.commands.convert import Format, run_conversion
from eoshard.pipeline.converters import DatasetLayoutError
from eoshard.pipeline.converters.errors import ConversionError
from tests.conftest import shared_path

BEN_S2 = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"


def _read_lmdb(path: Path) -> dict[str, dict[str, np.ndarray]]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        out = {k.decode(): load(v) for k, v in txn.cursor()}
    env.close()
    return out


def _band(path: Path, index: int = 1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # UC Merced and Hydro ship no georeferencing
        with rasterio.open(path) as src:
            return src.read(index)


def test_bigearthnet_equals_rico_hdl_page_for_page(client, tmp_path: Path) -> None:
    root = shared_path("rico-hdl", "BigEarthNet")
    reference = shared_path("rico-hdl", "BigEarthNet_reference_lmdb", "data.mdb").read_bytes()
    roots = {"s1": root / "BigEarthNet-S1", "s2": root / "BigEarthNet-S2", "reference-maps": None}
    assert run_conversion("bigearthnet", roots, tmp_path / "out", Format.lmdb, client) == 2
    ours = (tmp_path / "out" / "data.mdb").read_bytes()
    assert len(ours) == len(reference)
    page = 4096
    for pgno in range(len(ours) // page):
        a, b = ours[pgno * page : (pgno + 1) * page], reference[pgno * page : (pgno + 1) * page]
        if pgno in (0, 1):  # meta pages: only the map size (bytes 32-39) may differ
            a, b = a[:32] + a[40:], b[:32] + b[40:]
        assert a == b, f"page {pgno} differs"


def test_bigearthnet_with_reference_maps(client, tmp_path: Path) -> None:
    root = shared_path("rico-hdl", "BigEarthNet")
    roots = {
        "s1": root / "BigEarthNet-S1",
        "s2": root / "BigEarthNet-S2",
        "reference-maps": root / "Reference_Maps",
    }
    run_conversion("bigearthnet", roots, tmp_path / "out", Format.lmdb, client)
    data = _read_lmdb(tmp_path / "out")
    ref_key = f"{BEN_S2}_26_57_reference_map"
    assert sorted(data) == sorted(["S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48", f"{BEN_S2}_75_43", ref_key])
    ref_file = next((root / "Reference_Maps").rglob("*_reference_map.tif"))
    assert list(data[ref_key]) == ["Data"]
    np.testing.assert_array_equal(data[ref_key]["Data"], _band(ref_file))
    s2 = data[f"{BEN_S2}_75_43"]
    assert sorted(s2) == sorted(
        ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    )
    for band, array in s2.items():
        source = next((root / "BigEarthNet-S2").rglob(f"*_75_43_{band}.tif"))
        assert array.dtype == np.uint16
        np.testing.assert_array_equal(array, _band(source))


@pytest.mark.parametrize(
    ("dataset", "folder", "keys", "bands", "dtype", "shape"),
    [
        ("eurosat-ms", "EuroSAT_MS", ["AnnualCrop_1", "Pasture_300", "SeaLake_3000"],
         ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B08A"], "uint16", (64, 64)),
        ("uc-merced", "UCMerced_LandUse", ["airplane00", "airplane42", "forest10", "forest99"],
         ["Red", "Green", "Blue"], "uint8", (256, 256)),
        ("hydro", "Hydro", sorted(f"patch_{n}" for n in (0, 1, 10, 100, 1000, 10000, 100000)),
         ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"], "uint16", (256, 256)),
        ("hyspecnet-11k", "HySpecNet-11k", None, [f"B{i}" for i in range(1, 225)], "int16", (128, 128)),
    ],
)  # fmt: skip
def test_single_file_datasets(client, tmp_path: Path, dataset, folder, keys, bands, dtype, shape) -> None:
    root = shared_path("rico-hdl", folder)
    run_conversion(dataset, {dataset: root}, tmp_path / "out", Format.lmdb, client)
    data = _read_lmdb(tmp_path / "out")
    if keys is None:  # HySpecNet: the patch folders' names
        keys = sorted(p.name for p in root.iterdir() if p.is_dir())
        assert len(keys) == 2
    assert sorted(data) == keys
    for key, sample in data.items():
        source = next(p for p in root.rglob("*") if p.is_file() and p.stem in (key, f"{key}-SPECTRAL_IMAGE"))
        assert sorted(sample) == sorted(bands)
        for index, band in enumerate(bands, start=1):
            assert sample[band].dtype == np.dtype(dtype) and sample[band].shape == shape
            np.testing.assert_array_equal(sample[band], _band(source, index))


def _tif(path: Path, value: int, shape: tuple[int, int], dtype: str = "uint16") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(shape[0] * shape[1]).reshape(shape) + value).astype(dtype)
    profile = {"driver": "GTiff", "width": shape[1], "height": shape[0], "count": 1, "dtype": dtype,
               "crs": "EPSG:32643", "transform": from_origin(500000, 3000000, 10, 10)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return array


def test_ssl4eo_s12_layout(client, tmp_path: Path) -> None:
    written: dict[str, dict[str, np.ndarray]] = {}
    product_s2 = "20200823T054639_20200823T055618_T43RCP"
    product_s1 = "S1A_IW_GRDH_1SDV_20200607T010800_20200607T010825_032904_03CFBA_D457"
    l1c = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    for root, product, bands in [("s1", product_s1, ["VV", "VH"]), ("s2c", product_s2, l1c),
                                 ("s2a", product_s2, [b for b in l1c if b != "B10"])]:  # fmt: skip
        folder = tmp_path / root / "0000200" / product
        (folder / "metadata.json").parent.mkdir(parents=True)
        (folder / "metadata.json").write_text("{}")
        sample = {}
        for i, band in enumerate(bands):
            shape = (265, 264) if band == "B2" else (264, 264)  # an extra row occurs: kept as it is
            sample[band] = _tif(folder / f"{band}.tif", i, shape, "float32" if root == "s1" else "uint16")
        written[f"{root}_0000200_{product}"] = sample
    roots = {"s1": tmp_path / "s1", "s2c": tmp_path / "s2c", "s2a": tmp_path / "s2a"}
    run_conversion("ssl4eo-s12", roots, tmp_path / "out", Format.lmdb, client)
    data = _read_lmdb(tmp_path / "out")
    assert sorted(data) == sorted(written)
    assert "s2c_0000200_20200823T054639_20200823T055618_T43RCP" in data
    for key, sample in written.items():
        assert sorted(data[key]) == sorted(sample)
        for band, array in sample.items():
            np.testing.assert_array_equal(data[key][band], array)
    assert data[f"s2a_0000200_{product_s2}"]["B2"].shape == (265, 264)

    run_conversion("ssl4eo-s12", roots, tmp_path / "zarr", Format.zarr, client)
    group = zarr.open_group(str(tmp_path / "zarr"), mode="r")
    assert group["s2c"].attrs["keys"] == [f"s2c_0000200_{product_s2}"]
    np.testing.assert_array_equal(group["s2a"]["B2"][0, :265, :264], written[f"s2a_0000200_{product_s2}"]["B2"])
    np.testing.assert_array_equal(group["s2a"]["B2_shape"][0], [265, 264])


def test_major_tom_core_layout(client, tmp_path: Path) -> None:
    s2_product = "S2B_MSIL2A_20200223T032739_N9999_R018_T48QUE_20230924T183543"
    s1_product = "S1A_IW_GRDH_1SDV_20200223T110000_20200223T110025_031389_039CE1_ABCD_rtc"
    s2 = tmp_path / "s2" / "199U" / "199U_1099R" / s2_product
    s1 = tmp_path / "s1" / "199U" / "199U_1099R" / s1_product
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    arrays = {b: _tif(s2 / f"{b}.tif", i, (1068, 1068) if b in ("B02", "B03", "B04", "B08") else (534, 534))
              for i, b in enumerate(bands)}  # fmt: skip
    _tif(s2 / "cloud_mask.tif", 0, (1068, 1068), "uint8")
    (s2 / "thumbnail.png").write_bytes(b"\x89PNG")
    vv = _tif(s1 / "vv.tif", 7, (1068, 1068), "float32")
    _tif(s1 / "vh.tif", 9, (1068, 1068), "float32")
    run_conversion(
        "major-tom-core", {"s1": tmp_path / "s1", "s2": tmp_path / "s2"}, tmp_path / "out", Format.lmdb, client
    )
    data = _read_lmdb(tmp_path / "out")
    assert sorted(data) == [f"199U_1099R_{s1_product}", f"199U_1099R_{s2_product}"]
    assert sorted(data[f"199U_1099R_{s2_product}"]) == sorted(bands)  # cloud mask and thumbnail skipped
    assert sorted(data[f"199U_1099R_{s1_product}"]) == ["vh", "vv"]
    np.testing.assert_array_equal(data[f"199U_1099R_{s1_product}"]["vv"], vv)
    for band, array in arrays.items():
        np.testing.assert_array_equal(data[f"199U_1099R_{s2_product}"][band], array)


def test_a_folder_of_another_dataset_names_the_first_misfit(client, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"AnnualCrop_1\.tif does not fit the hydro layout"):
        run_conversion(
            "hydro", {"hydro": shared_path("rico-hdl", "EuroSAT_MS")}, tmp_path / "o", Format.lmdb, client
        )


def test_wrong_shapes_and_unreadable_files(client, tmp_path: Path) -> None:
    root = tmp_path / "eurosat" / "Forest"
    root.mkdir(parents=True)
    profile = {"driver": "GTiff", "width": 60, "height": 64, "count": 13, "dtype": "uint16", "crs": "EPSG:32633",
               "transform": from_origin(500000, 5000000, 10, 10)}  # fmt: skip
    with rasterio.open(root / "Forest_1.tif", "w", **profile) as dst:
        dst.write(np.ones((13, 64, 60), dtype="uint16"))
    with pytest.raises(ConversionError, match=r"Forest_1\.tif band B01 is 64 x 60 px, the dataset has 64 x 64"):
        run_conversion("eurosat-ms", {"eurosat-ms": tmp_path / "eurosat"}, tmp_path / "o1", Format.lmdb, client)
    (root / "Forest_1.tif").write_bytes(b"not a tiff")
    with pytest.raises(ConversionError, match=r"cannot read .*Forest_1\.tif"):
        run_conversion("eurosat-ms", {"eurosat-ms": tmp_path / "eurosat"}, tmp_path / "o2", Format.lmdb, client)


def convert_cli(dataset: str, root: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """``eoshard convert DATASET --input ROOT --target TARGET`` in a process of its own, one worker."""
    return subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "convert", dataset,
         "--input", str(root), "--target", str(target), "--workers", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_cli_prints_the_error_without_traceback(tmp_path: Path) -> None:
    result = convert_cli("hydro", tmp_path, tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "no hydro patches under" in " ".join(result.stderr.split())


def test_ctrl_c_in_convert_is_one_line_that_says_the_target_was_emptied(tmp_path: Path, monkeypatch) -> None:
    """It exited 130 with no word of what became of the target (which ``run_conversion`` empties)."""
    from typer.testing import CliRunner

    from eoshard.flows.cli import app
    from eoshard.flows.commands import convert

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "run_conversion", interrupted)
    target = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["convert", "hydro", "--input", str(shared_path("rico-hdl", "Hydro")), "--target", str(target),
              "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 130, result.output
    said = " ".join(result.output.split())
    assert f"interrupted: what this run wrote to {target} was removed: run the same command again" in said
