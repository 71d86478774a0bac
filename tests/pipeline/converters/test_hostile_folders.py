"""Converters on real dataset folders (rico-hdl's samples, copied) that were tampered with: links out of the folder,
odd names, keys that collide or overflow, a target that overlaps the input. Each is a message, nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from eoshard.flows.commands.convert import Format, run_conversion
from eoshard.pipeline.converters import ConversionError, DatasetLayoutError
from tests.conftest import shared_path
from tests.pipeline.converters.test_convert import _read_lmdb, convert_cli

BEN_S2 = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
BEN_PATCH = f"{BEN_S2}_75_43"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _eurosat(tmp_path: Path) -> Path:
    root = tmp_path / "EuroSAT_MS"
    shutil.copytree(shared_path("rico-hdl", "EuroSAT_MS"), root)
    return root


def _ben_s2(tmp_path: Path, names: list[str]) -> Path:
    """A BigEarthNet S2 root holding the real patch under each of ``names`` (band files renamed to match)."""
    source = next(shared_path("rico-hdl", "BigEarthNet", "BigEarthNet-S2").glob(f"*/{BEN_PATCH}"))
    root = tmp_path / "BigEarthNet-S2"
    for name in names:
        patch = root / BEN_S2 / name
        patch.mkdir(parents=True)
        for band in source.iterdir():
            shutil.copyfile(band, patch / band.name.replace(BEN_PATCH, name))
    return root


def _ssl4eo_s1(tmp_path: Path, places: list[tuple[str, str]]) -> Path:
    """An SSL4EO-S12 S1 root (``location/product/VV.tif, VH.tif``) made of BigEarthNet's real S1 bands."""
    source = next(shared_path("rico-hdl", "BigEarthNet", "BigEarthNet-S1").glob("*/*"))
    root = tmp_path / "s1"
    for location, product in places:
        folder = root / location / product
        folder.mkdir(parents=True)
        for pol in ("VV", "VH"):
            shutil.copyfile(next(source.glob(f"*_{pol}.tif")), folder / f"{pol}.tif")
    return root


def _refused(client: Client, part: str, root: Path, target: Path, error: type[Exception], match: str) -> None:
    dataset = "bigearthnet" if part == "s2" else part
    with pytest.raises(error, match=match):
        run_conversion(dataset, {part: root}, target, Format.lmdb, client)
    assert not target.exists(), "nothing may be written for a refused folder"


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_link_out_of_the_folder_is_refused(client: Client, tmp_path: Path, how: str) -> None:
    root = _eurosat(tmp_path)
    outside = tmp_path / "elsewhere" / "private.tif"
    outside.parent.mkdir()
    shutil.copyfile(root / "Pasture" / "Pasture_300.tif", outside)
    link = root / "Pasture" / "Pasture_301.tif"
    link.symlink_to(outside if how == "absolute" else Path("..", "..", "elsewhere", "private.tif"))
    _refused(client, "eurosat-ms", root, tmp_path / "out", DatasetLayoutError,
             r"Pasture_301\.tif links to .*elsewhere/private\.tif, outside the dataset folder")  # fmt: skip


def test_a_link_inside_the_folder_is_read_as_its_target(client: Client, tmp_path: Path) -> None:
    root = _eurosat(tmp_path)
    (root / "Pasture" / "Pasture_301.tif").symlink_to(Path("..", "SeaLake", "SeaLake_3000.tif"))
    assert run_conversion("eurosat-ms", {"eurosat-ms": root}, tmp_path / "out", Format.lmdb, client) == 4
    data = _read_lmdb(tmp_path / "out")
    assert sorted(data) == ["AnnualCrop_1", "Pasture_300", "Pasture_301", "SeaLake_3000"]
    for band, array in data["SeaLake_3000"].items():
        np.testing.assert_array_equal(data["Pasture_301"][band], array)
    assert not np.array_equal(data["Pasture_300"]["B04"], data["Pasture_301"]["B04"])


def test_links_to_folders_and_broken_links_are_refused(client: Client, tmp_path: Path) -> None:
    root = _ben_s2(tmp_path, [BEN_PATCH])
    copy = tmp_path / "elsewhere" / f"{BEN_S2}_75_44"
    shutil.copytree(root / BEN_S2 / BEN_PATCH, copy)
    (root / BEN_S2 / copy.name).symlink_to(copy, target_is_directory=True)
    _refused(client, "s2", root, tmp_path / "o1", DatasetLayoutError,
             r"_75_44 is a link to the folder .*links to folders are not followed")  # fmt: skip
    (root / BEN_S2 / copy.name).unlink()
    (root / BEN_S2 / BEN_PATCH / f"{BEN_PATCH}_B13.tif").symlink_to(tmp_path / "gone.tif")
    _refused(client, "s2", root, tmp_path / "o2", DatasetLayoutError,
             r"_B13\.tif is a broken link \(to .*gone\.tif\): remove it")  # fmt: skip


def test_a_name_with_dots_is_a_key_as_it_is_and_stays_inside(client: Client, tmp_path: Path) -> None:
    """``..`` inside a name is only characters: names come from listing the folder, never become paths."""
    name = f"{BEN_S2}_.._.._75_43"
    root = _ben_s2(tmp_path, [name])
    before = _files(tmp_path)
    roots = {"s1": None, "s2": root, "reference-maps": None}
    assert run_conversion("bigearthnet", roots, tmp_path / "out", Format.lmdb, client) == 1
    assert [p for p in _files(tmp_path) if not p.startswith("out")] == before
    sample = _read_lmdb(tmp_path / "out")[name]
    source = next(shared_path("rico-hdl", "BigEarthNet", "BigEarthNet-S2").glob(f"*/{BEN_PATCH}"))
    assert sorted(sample) == sorted(p.name[len(BEN_PATCH) + 1 : -4] for p in source.iterdir())
    with rasterio.open(source / f"{BEN_PATCH}_B8A.tif") as src:
        np.testing.assert_array_equal(sample["B8A"], src.read(1))


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (f"{BEN_S2}_tab\t_75_43", r"gives the key '.*tab\\t_75_43', which holds the control character\(s\) '\\t'"),
        (f"{BEN_S2}_\udcff_75_43", r"gives the key .*, which is not valid UTF-8"),
    ],
    ids=["control-character", "not-utf-8"],
)
def test_a_name_that_makes_an_unusable_key_is_refused(
    client: Client, tmp_path: Path, name: str, match: str
) -> None:
    root = _ben_s2(tmp_path, [name])
    roots = {"s1": None, "s2": root, "reference-maps": None}
    with pytest.raises(DatasetLayoutError, match=match):
        run_conversion("bigearthnet", roots, tmp_path / "out", Format.lmdb, client)
    assert not (tmp_path / "out").exists()


def test_a_file_name_ending_in_a_newline_does_not_pass_as_a_patch(client: Client, tmp_path: Path) -> None:
    """``Pasture_300.tif\\n`` fitted the layout's ``$`` and gave the key of ``Pasture_300.tif``."""
    root = _eurosat(tmp_path)
    shutil.copyfile(root / "Pasture" / "Pasture_300.tif", root / "Pasture" / "Pasture_300.tif\n")
    _refused(client, "eurosat-ms", root, tmp_path / "out", DatasetLayoutError,
             r"'.*Pasture_300\.tif\\n' does not fit the eurosat-ms layout")  # fmt: skip


def test_keys_that_collide_or_overflow_are_refused(client: Client, tmp_path: Path) -> None:
    product = "S1A_IW_GRDH_1SDV_20200607T010800_20200607T010825_032904_03CFBA_D457"
    root = _ssl4eo_s1(tmp_path / "a", [("0000200_x", product), ("0000200", f"x_{product}")])
    roots = {"s1": root, "s2c": None, "s2a": None}
    with pytest.raises(
        DatasetLayoutError, match=rf"both give the key 's1_0000200_x_{product}': one would be lost"
    ):
        run_conversion("ssl4eo-s12", roots, tmp_path / "o1", Format.lmdb, client)
    longest = _ssl4eo_s1(tmp_path / "b", [("L" * 255, "P" * 252)])  # s1_L..._P...: 511 bytes, the most
    roots = {"s1": longest, "s2c": None, "s2a": None}
    assert run_conversion("ssl4eo-s12", roots, tmp_path / "o2", Format.lmdb, client) == 1
    assert [len(k) for k in _read_lmdb(tmp_path / "o2")] == [511]
    longer = _ssl4eo_s1(tmp_path / "c", [("L" * 255, "P" * 253)])
    with pytest.raises(DatasetLayoutError, match=r"gives a key of 512 bytes; an LMDB key holds 1 to 511"):
        run_conversion(
            "ssl4eo-s12", {"s1": longer, "s2c": None, "s2a": None}, tmp_path / "o3", Format.lmdb, client
        )
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


@pytest.mark.parametrize("fmt", [Format.lmdb, Format.zarr])
def test_a_target_that_overlaps_the_input_or_holds_files_is_refused(client: Client, tmp_path: Path, fmt) -> None:
    root = _eurosat(tmp_path)
    before = _files(root)
    for target in (root / "converted", root, tmp_path):
        with pytest.raises(ConversionError, match=r"the target .* and the input .* overlap"):
            run_conversion("eurosat-ms", {"eurosat-ms": root}, target, fmt, client)
    assert _files(root) == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConversionError, match=r"busy exists and is not an empty folder"):
        run_conversion("eurosat-ms", {"eurosat-ms": root}, busy, fmt, client)
    assert (busy / "notes.txt").read_text() == "mine" and _files(busy) == ["notes.txt"]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("link", "Pasture_301.tif links to /etc/passwd, outside the dataset folder"),
        ("markup", "Pasture/[/]x.tif does not fit the eurosat-ms layout"),  # no Rich markup: printed as it is
    ],
)
def test_cli_refuses_a_hostile_folder_without_traceback(tmp_path: Path, tamper: str, expected: str) -> None:
    root = _eurosat(tmp_path)
    if tamper == "link":
        (root / "Pasture" / "Pasture_301.tif").symlink_to("/etc/passwd")
    else:
        (root / "Pasture" / "[").mkdir()
        (root / "Pasture" / "[" / "]x.tif").write_bytes(b"")
    result = convert_cli("eurosat-ms", root, tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert expected in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", [Format.lmdb, Format.zarr])
@pytest.mark.parametrize("made", [True, False])
def test_a_conversion_that_fails_halfway_leaves_the_target_as_it_found_it(
    client: Client, tmp_path: Path, fmt: Format, made: bool
) -> None:
    """Real Hydro patches (12 bands) read as EuroSAT-MS (13) fail after the target was opened: the target is new
    again (or empty, as it was given), and the right converter then writes into it."""
    target = tmp_path / "out"
    if not made:
        target.mkdir()
    hydro = shared_path("rico-hdl", "Hydro")
    with pytest.raises(ConversionError, match=r"has 12 bands, expected at least 13"):
        run_conversion("eurosat-ms", {"eurosat-ms": hydro}, target, fmt, client)
    assert target.exists() != made and (made or _files(target) == [])
    assert run_conversion("hydro", {"hydro": hydro}, target, fmt, client) > 0
