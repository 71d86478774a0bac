"""The build checks each product's files against its item, and reads bands by any of their names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pystac
import pytest
import rasterio
import yaml
from rasterio.crs import CRS
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.flows.config import ConfigError, load_config
from tests.demo_config import demo_build_config, write_config

pytestmark = pytest.mark.slow


def test_a_cog_in_another_crs_than_its_item_stops_the_build(demo_data, tmp_path: Path) -> None:
    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    catalog = pystac.Catalog.from_file(str(world / "catalog" / "catalog.json"))
    item = sorted(
        (i for i in catalog.get_items(recursive=True) if i.properties["proj:code"] == "EPSG:32632"),
        key=lambda i: i.id,
    )[0]
    href = item.assets["B04"].get_absolute_href()
    assert href is not None
    with rasterio.open(href, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.crs = CRS.from_epsg(32633)
    demo = type(demo_data)(world, world / "catalog" / "catalog.json", demo_data.aoi, demo_data.parcels, 0)
    config = write_config(demo_build_config(demo, tmp_path / "out"), tmp_path / "build.yaml")
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(config), "--workers", "1"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"product {item.id} asset B04 (" in text
    assert "the item says EPSG:32632, the file says EPSG:32633" in text
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_common_names_in_the_config_are_the_band_ids(demo_data, tmp_path: Path) -> None:
    data = demo_build_config(demo_data, tmp_path / "out", bands=["blue", "green", "red", "nir"])
    config = load_config(write_config(data, tmp_path / "build.yaml"))
    assert config.bands == ("B02", "B03", "B04", "B08")
    assert yaml.safe_load(config.to_yaml())["bands"] == ["B02", "B03", "B04", "B08"]
    twice = demo_build_config(demo_data, tmp_path / "out", bands=["red", "B04"])
    with pytest.raises(ConfigError, match=r"bands \['B04 \(B04\)', 'red \(B04\)'\] name the same band twice"):
        load_config(write_config(twice, tmp_path / "twice.yaml"))


def _built_june(demo_data, tmp_path: Path) -> tuple[Path, str, str]:
    """A copy of the demo world and a dataset built from its June products: the dataset, its first product and the
    path of that product's B08 file."""
    world = tmp_path / "world"
    shutil.copytree(demo_data.root, world)
    demo = type(demo_data)(world, world / "catalog" / "catalog.json", demo_data.aoi, demo_data.parcels, 0)
    out = tmp_path / "out"
    config = demo_build_config(demo, out, period={"start": "2024-06-01", "end": "2024-06-30"})
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        built = CliRunner().invoke(
            app, ["build", str(write_config(config, tmp_path / "b.yaml")), "--workers", "1"]
        )
    assert built.exit_code == 0, built.output
    product = json.loads((out / "dataset.json").read_text())["products"][0]
    catalog = pystac.Catalog.from_file(str(world / "catalog" / "catalog.json"))
    item = next(i for i in catalog.get_items(recursive=True) if i.id == product)
    return out, product, item.assets["B08"].get_absolute_href() or ""


def _verify(out: Path, sources: int) -> Any:
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        return CliRunner().invoke(app, ["verify", str(out), "--sources", str(sources)])


def test_verify_names_a_cog_whose_crs_changed_after_the_build(demo_data, tmp_path: Path) -> None:
    """verify re-reads through the build's plan, so it checks the files against their items too."""
    out, product, b08 = _built_june(demo_data, tmp_path)
    with rasterio.open(b08, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.crs = CRS.from_epsg(3035)
    verified = _verify(out, 1)
    assert verified.exit_code != 0
    text = " ".join(verified.output.split())
    assert f"product {product} asset B08 (" in text and "the file says EPSG:3035" in text
    assert "Traceback" not in verified.output


def test_verify_of_a_source_file_gone_says_verify_again_or_check_the_dataset_alone(
    demo_data, tmp_path: Path
) -> None:
    """A source file removed after the build: verify cannot re-read it, says so and what to do about verify (not
    about a build), and the dataset's own files still verify without the sources."""
    out, product, b08 = _built_june(demo_data, tmp_path)
    Path(b08).unlink()
    verified = _verify(out, 1)
    assert verified.exit_code == 1
    text = " ".join(verified.output.split())
    assert f"could not read asset B08 of product {product} (" in text
    assert text.rstrip().endswith(
        "the file is not there (deleted or moved since its item was written: archives withdraw products, and process "
        "them again under new names): put it back, then run eoshard verify again (or with --sources 0, to check the "
        "dataset's own files alone)"
    ), text
    assert "Traceback" not in verified.output
    alone = CliRunner().invoke(app, ["verify", str(out), "--sources", "0"])
    assert alone.exit_code == 0, alone.output
    assert "no difference" in alone.output


def test_verify_of_a_source_file_cut_behind_its_header_says_so_without_a_traceback(
    demo_data, tmp_path: Path
) -> None:
    """The file opens (its header is whole), its blocks do not read: stackstac's error came out as 88 lines of
    traceback."""
    out, _, b08 = _built_june(demo_data, tmp_path)
    whole = Path(b08).read_bytes()
    Path(b08).write_bytes(whole[: len(whole) // 2])
    verified = _verify(out, 4)
    assert verified.exit_code == 1
    text = " ".join(verified.output.split())
    assert "error: could not re-read the source pixels of samples " in text and Path(b08).name in text, text
    assert text.rstrip().endswith(
        "repair the file, then run eoshard verify again (or with --sources 0, to check the dataset's own files alone)"
    ), text
    assert "Traceback" not in verified.output
