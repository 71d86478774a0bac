"""Bad inputs to ``eoshard-train`` (issue #15): a message and exit 1, never a traceback or a half-made output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eoshard.training.cli import main
from eoshard.training.data import split_indices
from eoshard.training.errors import DatasetFormatError, PackageError
from eoshard.training.manifest import Manifest
from eoshard.training.package import ITEM, load
from tests.training.helpers import HR, fake_dataset, fake_run, random_package


def _any_config(tmp: Path) -> str:
    """A fit config whose dataset is never read: ``--resume`` is checked first (by ``fit``, from the CLI or Python)."""
    (tmp / "any.yaml").write_text("dataset: nowhere\noutput: run\narchitecture: fcn\n")
    return str(tmp / "any.yaml")


def test_a_pickled_resume_file_is_refused_without_unpickling(tmp_path: Path, capsys) -> None:
    evil = tmp_path / "last.pt"
    torch.save({"model": {}, "payload": Path("/etc/passwd")}, evil)  # an object, not a tensor: needs unpickling
    assert main(["fit", _any_config(tmp_path), "--resume", str(evil)]) == 1
    err = capsys.readouterr().err
    assert f"--resume {evil} is not a checkpoint written by `eoshard-train fit`" in err
    assert "never unpickled" in err and "Traceback" not in err


def test_a_missing_or_garbage_resume_file(tmp_path: Path, capsys) -> None:
    assert main(["fit", _any_config(tmp_path), "--resume", str(tmp_path / "absent.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert main(["fit", _any_config(tmp_path), "--resume", str(tmp_path / "junk.pt")]) == 1
    assert "is not a checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("href", ["../w.safetensors", "/etc/hostname", "https://example.com/w.safetensors"])
def test_weights_outside_the_package_are_refused(tmp_path: Path, href: str) -> None:
    random_package(tmp_path)
    folder = tmp_path / "pkg"
    item = json.loads((folder / ITEM).read_text())
    for asset in item["assets"].values():
        if "mlm:model" in asset.get("roles", []):
            asset["href"] = href
    (folder / ITEM).write_text(json.dumps(item))
    with pytest.raises(PackageError, match="points outside the package"):
        load(folder)


@pytest.mark.needs_build
def test_an_unknown_split_names_the_splits_and_leaves_no_folder(shards: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(DatasetFormatError, match=r"split 'nosuch' is not in .*index.parquet: it has \["):
        split_indices(Manifest.read(shards), "nosuch")
    random_package(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path / "pkg"), str(shards), str(out), "--split", "nosuch"]) == 1
    assert "split 'nosuch' is not in" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", str(tmp_path / "pkg"), str(shards), str(out), "--split", "test"]) == 1  # 0 samples
    assert "holds no samples" in capsys.readouterr().err
    assert not out.exists()


def test_a_weights_file_cannot_resume_a_run(tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    save_file({"net.0.weight": torch.zeros(2)}, str(tmp_path / "best.safetensors"))
    assert main(["fit", _any_config(tmp_path), "--resume", str(tmp_path / "best.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: --resume {tmp_path / 'best.safetensors'} is not a checkpoint written by `eoshard-train fit`: it "
        "lacks ['model', 'opt', 'rng', 'sched', 'state'] (weights alone, e.g. best.safetensors, cannot resume a "
        "run). Pass checkpoints/last.pt of a fit output folder\n"
    )


def test_a_checkpoint_of_the_other_training_command_is_refused_by_name(tmp_path: Path, capsys) -> None:
    sr = tmp_path / "sr" / "last.pt"
    sr.parent.mkdir()
    torch.save({"command": "fit-sr", "model": {}, "opt": {}, "state": "{}", "rng": torch.zeros(2)}, sr)
    assert main(["fit", _any_config(tmp_path), "--resume", str(sr)]) == 1
    assert capsys.readouterr().err == (
        f"error: --resume {sr} was written by `eoshard-train fit-sr`, not `fit`: pass checkpoints/last.pt of a fit "
        "output folder\n"
    )
    seg = tmp_path / "last.pt"  # a fit checkpoint of before fit-sr wrote any: no "command" in it
    torch.save({"model": {}, "opt": {}, "sched": {}, "state": "{}", "rng": torch.zeros(2)}, seg)
    config = tmp_path / "sr.yaml"
    config.write_text(f"dataset: {tmp_path}\noutput: {tmp_path / 'out'}\nbands: [B04]\nhr_bands: [red]\n")
    assert main(["fit-sr", str(config), "--resume", str(seg)]) == 1
    assert capsys.readouterr().err == (
        f"error: --resume {seg} was written by `eoshard-train fit`, not `fit-sr`: pass checkpoints/last.pt of a "
        "fit-sr output folder\n"
    )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("folder.yaml", None, "cannot be read as text ([Errno 21] Is a directory"),
        ("c.yaml", "dataset: d\noutput: [o\n", "is not valid YAML (expected ',' or ']', but got '<stream end>' at line 3, column 1)"),
        ("c.yaml", "dataset: d\n output: o\n", "is not valid YAML (mapping values are not allowed here at line 2, column 8)"),
        ("c.json", '{"dataset": ', "is not valid JSON (Expecting value: line 1 column 13 (char 12))"),
    ],
)  # fmt: skip
def test_a_config_that_is_a_folder_or_malformed_is_one_line(
    tmp_path: Path, capsys, name: str, text: str | None, expected: str
) -> None:
    path = tmp_path / name
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    assert main(["fit", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: config {path} {expected}") and err.count("\n") == 1


def test_ctrl_c_during_fit_is_one_line_and_exit_130(tmp_path: Path, capsys, monkeypatch) -> None:
    from eoshard.training import fit

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "fit", interrupted)
    config = tmp_path / "c.yaml"
    config.write_text("dataset: d\noutput: run\n")
    assert main(["fit", str(config)]) == 130
    assert capsys.readouterr().err == "interrupted: fit stopped\n"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    assert main(["fit", str(config)]) == 130
    assert capsys.readouterr().err == (
        f"interrupted: fit stopped; continue with `eoshard-train fit {config} --resume "
        f"{tmp_path / 'run' / 'checkpoints' / 'last.pt'}`\n"
    )


def _lmdb_null_config(tmp_path: Path) -> Path:
    dataset = fake_dataset(tmp_path / "zarr-only", formats={"zarr": {"path": "data.zarr"}, "lmdb": None})
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"dataset": str(dataset), "output": str(tmp_path / "run"), "architecture": "fcn"})
    )
    return config


def test_fit_with_an_empty_validation_split_says_what_to_change(tmp_path: Path, capsys) -> None:
    dataset = fake_dataset(tmp_path / "ds")  # no index.parquet: a hash of each key puts val_fraction in val
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"dataset": "ds", "output": "run", "architecture": "fcn", "val_fraction": 0.001}))
    assert main(["fit", str(config)]) == 1
    assert capsys.readouterr().err == (
        f"error: empty split: the dataset {dataset} has 20 train and 0 validation samples, and fit needs both; no "
        "sample key falls in 'val': set val_fraction (now 0.001) in the config\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_zarr_only_dataset_read_as_lmdb_says_to_set_format_zarr(tmp_path: Path, capsys) -> None:
    config = _lmdb_null_config(tmp_path)
    expected = (
        f"error: the dataset {tmp_path / 'zarr-only'} has no 'lmdb' shards (it has ['zarr']): set `format: zarr` in "
        "the training config (evaluate: --format zarr), or rebuild it with lmdb\n"
    )
    assert main(["fit", str(config)]) == 1
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "run").exists()
    random_package(tmp_path)
    assert main(["evaluate", str(tmp_path / "pkg"), str(tmp_path / "zarr-only"), str(tmp_path / "eval")]) == 1
    assert capsys.readouterr().err == expected
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        ("B03 >", "mask expression 'B03 >' is not valid: invalid syntax"),
        ("B05 > 0", "mask expression 'B05 > 0' names 'B05', which is not one of the model's bands "
                    "B02 (blue), B03 (green), B04 (red), B08 (nir): use those names or their common names"),
        ("__import__('os')", "mask expression \"__import__('os')\" uses Call: only numbers"),
    ],
)  # fmt: skip
def test_export_checks_the_mask_as_predict_does(tmp_path: Path, capsys, mask: str, expected: str) -> None:
    run = fake_run(tmp_path)
    assert main(["export", str(run), str(tmp_path / "pkg"), "--mask", mask]) == 1
    assert capsys.readouterr().err.startswith(f"error: {expected}")
    assert not (tmp_path / "pkg").exists()
    assert main(["export", str(run), str(tmp_path / "pkg"), "--mask", "green > nir"]) == 0  # common names
    package = load(tmp_path / "pkg")
    assert package.item["properties"]["mlm:input"][0]["eoshard:mask"] == "green > nir"
    assert package.common_names == {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}  # band_metadata's


def test_export_of_a_run_on_a_dataset_without_class_names_declares_every_counted_class(tmp_path: Path) -> None:
    run = fake_run(tmp_path)  # an FCN of 7 outputs, as fit makes it for the codes 0..6 the dataset counts
    manifest = tmp_path / "dataset" / "dataset.json"
    raw = json.loads(manifest.read_text())
    # an integer class column without a name column: no names, the codes counted (export declared 1 class)
    raw["labels"] = {"layer": "class", "background": 0, "classes": {}, "class_counts": {"0": 9, "2": 5, "6": 1}}
    manifest.write_text(json.dumps(raw))
    assert main(["export", str(run), str(tmp_path / "pkg")]) == 0
    output = load(tmp_path / "pkg").item["properties"]["mlm:output"][0]
    assert output["result"]["shape"][1] == 7
    assert [c["name"] for c in output["classification:classes"]] == ["background"] + [
        f"class {c}" for c in range(1, 7)
    ]


def test_export_of_a_fit_sr_run_writes_an_sr_package(tmp_path: Path) -> None:
    run = fake_run(tmp_path, sr=True)
    assert main(["export", str(run), str(tmp_path / "pkg")]) == 0
    package = load(tmp_path / "pkg")
    assert (package.scale, package.n_dates, package.classes) == (4, 1, {})
    assert (package.bands, package.out_bands) == (["B04", "B03", "B02"], HR)
    assert (package.out_mean, package.out_std) == ([80.0, 81.0, 82.0], [20.0, 21.0, 22.0])
    output = package.item["properties"]["mlm:output"][0]
    assert output["eoshard:scale"] == 4 and output["result"]["shape"] == [-1, 3, -1, -1]


def _zarr_scene(path: Path) -> Path:
    import numpy as np
    import zarr

    arr = zarr.create_array(str(path), shape=(4, 20, 20), dtype="uint16", chunks=(4, 20, 20))
    arr[:] = np.full((4, 20, 20), 1000, dtype="uint16")
    arr.attrs.update(
        {"bands": ["B02", "B03", "B04", "B08"], "crs": "EPSG:32632", "transform": [10, 0, 0, 0, -10, 0]}
    )
    return path


def _damage(pkg: Path, what: str) -> None:
    weights, item = pkg / "model.safetensors", pkg / ITEM
    if what == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif what == "missing weights":
        weights.unlink()
    elif what == "truncated item":
        item.write_text(item.read_text()[:200])
    elif what == "no mlm:input":
        raw = json.loads(item.read_text())
        del raw["properties"]["mlm:input"]
        item.write_text(json.dumps(raw))
    else:  # a field of the item changed (found by tests/training/test_fuzz_packages.py), ``what`` says which
        raw = json.loads(item.read_text())
        scaling = raw["properties"]["mlm:input"][0]["value_scaling"]
        if what == "a null mean":
            scaling[1]["mean"] = None
        elif what == "a stddev of 0":
            scaling[0]["stddev"] = 0
        elif what == "a band without its scaling":
            del scaling[3]
        elif what == "weights without href":
            del raw["assets"]["weights"]["href"]
        item.write_text(json.dumps(raw))


@pytest.mark.parametrize(
    ("args", "damage", "expected"),
    [
        (["--band-index", "1", "2", "3"], None, "--band-index lists 3 bands, the model needs 4 (its bands, date after date): pass 4"),
        (["--band-index", "1", "2", "3", "5"], None, "--band-index [5] out of range: the input has bands 1 to 4"),
        (["--band-index", "0", "2", "3", "4"], None, "--band-index [0] out of range: the input has bands 1 to 4"),
        (["--pad", "foo"], None, "--pad 'foo' unknown: expected one of edge, reflect, symmetric, wrap, constant"),
        ([], "truncated weights", "model.safetensors is damaged (Error while deserializing header: incomplete metadata"),
        ([], "missing weights", "the weights file {pkg}/model.safetensors does not exist"),
        ([], "truncated item", "{pkg}/item.json is not valid JSON (Unterminated string"),
        ([], "no mlm:input", "{pkg}/item.json lacks or misstates a field (KeyError 'mlm:input'): expected the MLM item"),
        ([], "a null mean", "{pkg}/item.json misstates mlm:input[0].value_scaling[1].mean: Input should be a valid number, got None; expected"),
        ([], "a stddev of 0", "{pkg}/item.json misstates mlm:input[0].value_scaling[0].stddev: Input should be greater than 0, got 0;"),
        ([], "a band without its scaling", "{pkg}/item.json misstates mlm:input[0].value_scaling has 3 entries for 4 bands; expected"),
        ([], "weights without href", "{pkg}/item.json misstates assets.<mlm:model>.href: String should have at least 1 character, got ''"),
    ],
)  # fmt: skip
def test_predict_errors_are_one_line(
    tmp_path: Path, capsys, args: list[str], damage: str | None, expected: str
) -> None:
    random_package(tmp_path)
    pkg = tmp_path / "pkg"
    if damage:
        _damage(pkg, damage)
    scene = _zarr_scene(tmp_path / "in.zarr")
    assert main(["predict", str(pkg), str(scene), str(tmp_path / "out.zarr"), *args]) == 1
    err = capsys.readouterr().err
    assert expected.format(pkg=pkg) in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_predict_on_a_missing_tif_is_one_line_and_a_tif_output_gets_its_folder(tmp_path: Path, capsys) -> None:
    random_package(tmp_path)
    pkg = tmp_path / "pkg"
    assert main(["predict", str(pkg), str(tmp_path / "absent.tif"), str(tmp_path / "out.tif")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {tmp_path / 'absent.tif'} cannot be opened as a GeoTIFF (")
        and err.count("\n") == 1
    )
    out = tmp_path / "new" / "folder" / "out.tif"
    assert main(["predict", str(pkg), str(_zarr_scene(tmp_path / "in.zarr")), str(out)]) == 0
    assert out.is_file() and out.with_suffix(".qml").is_file()


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_predict_refuses_values_that_are_not_real_numbers(tmp_path: Path, capsys) -> None:
    """A SAR SLC's complex values went in with their imaginary part dropped (numpy's ComplexWarning, exit 0)."""
    import numpy as np
    import rasterio
    import zarr

    random_package(tmp_path)
    slc = tmp_path / "slc.tif"
    grid = {"crs": "EPSG:32632", "transform": rasterio.transform.from_origin(600000, 5300000, 10, 10)}
    with rasterio.open(slc, "w", driver="GTiff", count=4, height=20, width=20, dtype="complex64", **grid) as dst:
        dst.write(np.full((4, 20, 20), 3 + 4j, "complex64"))
        dst.descriptions = ("B02", "B03", "B04", "B08")
    flags = zarr.create_array(str(tmp_path / "flags.zarr"), shape=(4, 20, 20), dtype="bool")
    flags.attrs["bands"] = ["B02", "B03", "B04", "B08"]
    for scene, dtype, advice in ((slc, "complex64", "take their amplitude (abs) first"),
                                 (tmp_path / "flags.zarr", "bool", "convert the bands to numbers first")):  # fmt: skip
        assert main(["predict", str(tmp_path / "pkg"), str(scene), str(tmp_path / "out.tif")]) == 1
        assert capsys.readouterr().err == (
            f"error: {scene} holds {dtype} values where the model takes real numbers: {advice}\n"
        )
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"nodata": "abc"}, "the Zarr attribute 'nodata' is 'abc': expected a number, or 'nan' for floats; fix the attribute"),
        ({"nodata": [0]}, "the Zarr attribute 'nodata' is [0]: expected a valid number"),
        ({"transform": [10, 0]}, "the Zarr attribute 'transform' is [10, 0]: expected the 6 numbers a, b, c, d, e, f of an affine transform"),
        ({"transform": [0] * 6}, "is [0, 0, 0, 0, 0, 0]: expected a transform whose pixels have an area (a*e - b*d is 0)"),
        ({"bands": "B02"}, "the Zarr attribute 'bands' is 'B02': expected a valid list"),
        ({"bands": ["B02", "B03"]}, "the Zarr attribute 'bands' names 2 bands where the array has 4 per date"),
        ({"dates": ["2024-05-18", 7]}, "the Zarr attribute 'dates' is ['2024-05-18', 7]: expected a valid string"),
        ({"dates": ["18.05.2024"]}, "expected ISO 8601 dates (2024-05-18 or 2024-05-18T10:20:21Z), not '18.05.2024'"),
    ],
)  # fmt: skip
def test_a_zarr_scenes_attribute_of_another_shape_is_named(
    tmp_path: Path, capsys, attrs: dict, expected: str
) -> None:
    """Found by trying each attribute as a user might misstate it: a ValueError or TypeError from inside predict, or
    (a transform of zeros) a class map on a grid without area."""
    import zarr

    random_package(tmp_path)
    scene = _zarr_scene(tmp_path / "in.zarr")
    zarr.open_array(str(scene), mode="r+").attrs.update(attrs)
    assert main(["predict", str(tmp_path / "pkg"), str(scene), str(tmp_path / "out.zarr")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {scene}: ") and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
def test_a_crs_proj_does_not_know_is_named_before_any_prediction(tmp_path: Path, capsys) -> None:
    import zarr

    random_package(tmp_path)
    scene = _zarr_scene(tmp_path / "in.zarr")
    zarr.open_array(str(scene), mode="r+").attrs["crs"] = "EPSG:99999"
    assert main(["predict", str(tmp_path / "pkg"), str(scene), str(tmp_path / "out.tif")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the input's CRS 'EPSG:99999' is not one PROJ knows (") and err.endswith(
        "): give an EPSG code (EPSG:32632) or WKT\n"
    )
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.needs_build  # needs rasterio (the geotiff extra)
@pytest.mark.parametrize(
    ("crs", "far"),
    [("EPSG:32632", [10, 0, -6e16, 0, -10, 5300000]), ("EPSG:4326", [10, 0, 500000, 0, -10, 5300000])],
    ids=["utm", "degrees"],
)
def test_a_grid_where_its_crs_has_no_place_on_earth_is_named_before_any_prediction(
    tmp_path: Path, capsys, crs: str, far: list[float]
) -> None:
    """PROJ refused to take its outline to longitude and latitude for the map's STAC item: a rasterio error after
    the whole scene was predicted (found by the fuzz test of Zarr scenes' attributes). Metres read as degrees passed
    through PROJ unchanged, into an item whose bbox said 500000 degrees east."""
    import zarr

    random_package(tmp_path)
    scene = _zarr_scene(tmp_path / "in.zarr")
    zarr.open_array(str(scene), mode="r+").attrs.update({"crs": crs, "transform": far})
    assert main(["predict", str(tmp_path / "pkg"), str(scene), str(tmp_path / "out.tif")]) == 1
    assert capsys.readouterr().err == (
        f"error: the input's grid (transform {[float(v) for v in far]}, 20 x 20 px) lies where its CRS has no place "
        "on Earth: check that the transform and the CRS belong together\n"
    )
    assert not (tmp_path / "out.tif").exists()


def test_predict_into_a_path_that_is_neither_tif_nor_zarr_is_refused(tmp_path: Path, capsys) -> None:
    """``x.png`` became a Zarr folder named x.png."""
    random_package(tmp_path)
    out = tmp_path / "map.png"
    assert main(["predict", str(tmp_path / "pkg"), str(_zarr_scene(tmp_path / "in.zarr")), str(out)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"error: the output {out} ends in .png: give a .tif (a Cloud-Optimized GeoTIFF) or a .zarr path\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda raw: raw["labels"]["classes"].update(x="a"), "misstates a field (ValueError: invalid literal for int() with base 10: 'x')"),
        (lambda raw: raw.update(dates=["2024-05-01", 7]), "misstates a field (TypeError: expected a string, got 7)"),
        (lambda raw: raw.update(checksums=True), "misstates a field (TypeError: checksums: expected an object of file -> SHA-256, got True)"),
        (lambda raw: raw.update(statistics=1.0), "misstates a field (TypeError: statistics: expected an object, got 1.0)"),
        (lambda raw: raw["formats"].update(zarr={"path": "data.zarr", "shard_size": 0.5}), "misstates a field (TypeError: formats.zarr.shard_size: expected a count of samples, 1 or more, got 0.5)"),
        (lambda raw: raw["statistics"].update(B03=None), "misstates statistics.B03: expected an object with a numeric mean and std (null for a band without data), got None"),
        (lambda raw: raw["statistics"]["B04"].update(std="wide"), "misstates statistics.B04: expected an object with a numeric mean and std"),
    ],
)  # fmt: skip
def test_a_manifest_field_of_another_shape_is_named(tmp_path: Path, change, expected: str) -> None:
    """Found by the fuzz test of manifests (tests/flows/test_fuzz_inputs.py): each was a TypeError or ValueError
    from inside the readers, some only when the first batch was read."""
    from eoshard.training.data import band_stats

    folder = fake_dataset(tmp_path / "d")
    raw = json.loads((folder / "dataset.json").read_text())
    change(raw)
    (folder / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetFormatError) as caught:
        band_stats(Manifest.read(folder), ["B02", "B03", "B04"])
    assert str(caught.value).startswith(f"{folder / 'dataset.json'} {expected}")
