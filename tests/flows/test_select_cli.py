"""``eoshard select`` through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import shapely
from PIL import Image

from tests.conftest import shared_path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "select", *args],
        capture_output=True, text=True, timeout=180, check=False, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip


def test_json_plot_and_saved_selection(demo_data, tmp_path: Path) -> None:
    out, plot = tmp_path / "selection.json", tmp_path / "selection.png"
    result = _run("--source", str(demo_data.catalog), "--aoi", "11.955,48.0,12.035,48.04", "--start", "2024-04-01",
                  "--end", "2024-09-30", "--max-cloud", "60", "--dates", "3", "--json", "--out", str(out),
                  "--plot", str(plot))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {tuple(sorted(r)) for r in rows} == {
        ("aoi_overlap", "aoi_uncovered", "cloud_cover", "datetime", "id", "tile", "valid_fraction")
    }
    days = sorted({r["datetime"][:10] for r in rows})
    assert len(days) == 3  # three acquisitions, each over both tiles
    assert all(r["cloud_cover"] <= 60 for r in rows)
    assert sorted({r["tile"] for r in rows}) == ["32UQU", "33UUP"]
    saved = pystac.ItemCollection.from_file(str(out))
    assert sorted(i.id for i in saved) == sorted(r["id"] for r in rows)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stderr.splitlines() == [f"selection saved to {out}", f"selection plot: {plot}"]  # stdout: JSON


def test_the_files_are_named_as_they_are(demo_data, tmp_path: Path) -> None:
    """Paths are printed as they are, not read as rich's markup (``[bold]`` was dropped, ``[/x]`` a traceback)."""
    folder = tmp_path / "runs[" / "x]"  # "runs[/x]"
    folder.mkdir(parents=True)
    out, plot = folder / "sel[bold].json", folder / "sel[bold].png"
    result = _run("--source", str(demo_data.catalog), "--aoi", "11.955,48.0,12.035,48.04", "--start", "2024-04-01",
                  "--end", "2024-09-30", "--out", str(out), "--plot", str(plot))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == [f"selection saved to {out}", f"selection plot: {plot}"]
    assert out.is_file() and plot.is_file()


def test_the_map_shows_footprints_that_follow_the_aoi(demo_data, tmp_path: Path) -> None:
    """A footprint whose edge lies under the AOI's outline (an AOI drawn on the tile) still shows: footprints are
    filled. The AOI here is the bounding box of the demo's first product's footprint."""
    item = next(iter(pystac.Catalog.from_file(str(demo_data.catalog)).get_items(recursive=True)))
    x0, y0, x1, y1 = shapely.geometry.shape(item.geometry).bounds
    day = item.datetime.date().isoformat() if item.datetime else ""
    plot = tmp_path / "map.png"
    result = _run("--source", str(demo_data.catalog), f"--aoi={x0},{y0},{x1},{y1}", "--start", day, "--end", day,
                  "--max-cloud", "100", "--plot", str(plot))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"selection plot: {plot}")
    pixels = np.asarray(Image.open(plot).convert("RGB"), dtype=int)
    r, b = pixels[..., 0], pixels[..., 2]
    tinted = b - r > 15  # the blue of the footprints' fill (a blue outline alone is a few pixels)
    map_panel = tinted[:, pixels.shape[1] * 3 // 5 :]
    assert map_panel.mean() > 0.05, map_panel.mean()  # filled: 8.6 %; the outlines alone tint 0.6 %


def test_negative_bbox_and_empty_result(demo_data) -> None:
    result = _run("--source", str(demo_data.catalog), "--aoi=-106.1,35.5,-105.9,35.7", "--start", "2024-04-01",
                  "--end", "2024-09-30")  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "none of 19 products qualifies" in " ".join(result.stderr.split())


def test_missing_arguments_are_a_clear_error() -> None:
    result = _run("--aoi", "1,2,3,4")
    assert result.returncode == 2
    assert "give a CONFIG, or --source, --aoi, --start and --end" in result.stderr


def test_the_uncovered_part_per_date_and_min_aoi_coverage(demo_data) -> None:
    """The demo's swath edge leaves 38.1 % of the AOI uncovered on 2024-05-18 and 63.0 % on 2024-07-17."""
    args = ("--source", str(demo_data.catalog), "--aoi", str(demo_data.aoi), "--start", "2024-04-01",
            "--end", "2024-09-30", "--max-cloud", "60")  # fmt: skip
    rows = json.loads(_run(*args, "--json").stdout)
    uncovered = {r["datetime"][:10]: round(r["aoi_uncovered"], 3) for r in rows}
    assert uncovered == {"2024-04-08": 0.0, "2024-05-18": 0.381, "2024-06-07": 0.0, "2024-07-17": 0.63,
                         "2024-08-06": 0.0, "2024-08-26": 0.0, "2024-09-15": 0.0}  # fmt: skip
    table = _run(*args)
    assert table.returncode == 0, table.stderr
    assert "AOI uncovered" in table.stdout and "38.1%" in table.stdout
    kept = json.loads(_run(*args, "--min-aoi-coverage", "0.9", "--json").stdout)
    assert sorted({r["datetime"][:10] for r in kept}) == ["2024-04-08", "2024-06-07", "2024-08-06", "2024-08-26",
                                                         "2024-09-15"]  # fmt: skip
    shown = " ".join(_run(*args, "--min-aoi-coverage", "0.9").stdout.split())
    assert "its date covers 61.9% of the AOI, below min_aoi_coverage 90.0%" in shown


def test_json_writes_a_missing_cloud_cover_as_null(tmp_path: Path) -> None:
    """Earth Search's Sentinel-1 items have no eo:cloud_cover: JSON's null, not Python's NaN (invalid JSON)."""
    items = shared_path("stac", "earth-search__sentinel-1-grd.json")
    result = _run("--source", str(items), "--aoi=-55,51.2,-53.5,52.5", "--start", "2024-04-19", "--end", "2024-04-19",
                  "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "NaN" not in result.stdout
    rows = json.loads(result.stdout)
    assert [(r["cloud_cover"], r["tile"]) for r in rows] == [(None, None), (None, None)]  # two slices of one take


def test_a_plot_path_is_checked_before_the_work_and_named_as_written(demo_data, tmp_path: Path) -> None:
    args = ("--source", str(demo_data.catalog), "--aoi", "11.955,48.0,12.035,48.04", "--start", "2024-04-01",
            "--end", "2024-09-30")  # fmt: skip
    wrong = _run(*args, "--plot", str(tmp_path / "p.xyz"))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert f"--plot {tmp_path / 'p.xyz'}: matplotlib cannot write a .xyz file" in " ".join(wrong.stderr.split())
    bare = _run(*args, "--plot", str(tmp_path / "p"))
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.splitlines()[-1] == f"selection plot: {tmp_path / 'p.png'}"
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_select_of_a_config_with_a_saved_selection_shows_the_saved_products(demo_data, tmp_path: Path) -> None:
    """The build uses a saved selection as it is: ``select CONFIG`` shows those products, not a new search."""
    saved = tmp_path / "saved.json"
    picked = _run("--source", str(demo_data.catalog), "--aoi", str(demo_data.aoi), "--start", "2024-04-01",
                  "--end", "2024-09-30", "--dates", "2", "--out", str(saved), "--json")  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    ids = sorted(r["id"] for r in json.loads(picked.stdout))
    config = tmp_path / "build.yaml"
    config.write_text(
        f"name: saved\ncatalog:\n  source: {demo_data.catalog}\n  selection: {saved}\naoi: {demo_data.aoi}\n"
        f"period:\n  start: 2024-04-01\n  end: 2024-09-30\nbands: [B04]\noutput:\n  path: {tmp_path / 'out'}\n"
    )
    shown = _run(str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    assert sorted(r["id"] for r in json.loads(shown.stdout)) == ids
    assert f"names a saved selection (catalog.selection: {saved})" in " ".join(shown.stderr.split())


def test_exclude_leaves_products_out_by_id_and_names_ids_it_did_not_find(demo_data, tmp_path: Path) -> None:
    newest = "S2A_MSIL2A_20240518T102021_N0511_R065_T32UQU_20241002T080513"
    older = "S2A_MSIL2A_20240518T102021_N0510_R065_T32UQU_20240518T133202"
    config = tmp_path / "build.yaml"
    config.write_text(
        f"name: x\ncatalog:\n  source: {demo_data.catalog}\n  max_cloud: 60\n  exclude: [{newest}]\n"
        f"aoi: {demo_data.aoi}\nperiod:\n  start: 2024-04-01\n  end: 2024-09-30\nbands: [B04]\n"
        f"output:\n  path: {tmp_path / 'out'}\n"
    )
    shown = _run(str(config), "--exclude", "S2A_TYPO", "--json")
    assert shown.returncode == 0, shown.stderr
    ids = [r["id"] for r in json.loads(shown.stdout)]
    assert older in ids and newest not in ids
    assert shown.stderr.splitlines() == [
        "warning: 1 id(s) to exclude match none of the 19 products found (S2A_TYPO): check the ids"
    ]
    table = _run(str(config))
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if "excluded by id" in line]  # the table names no ids
    assert row.split()[1:4] == ["2024-05-18", "│", "32UQU"], row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--aoi", "500000,4000000,510000,4010000"), "is not minx,miny,maxx,maxy in degrees"),
        (("--aoi", "NOTVECTOR"), "cannot be read as vector data"),
        (
            ("--aoi", "UNCLOSED"),
            "aoi.geojson holds 1 feature whose geometry cannot be made into a shape (feature 0: Points of "
            "LinearRing do not form a closed linestring; features counted from 0 in the file's order)",
        ),
        (("--aoi", "11.955,48.0,12.035,48.04", "--kind", "stac-api"), "is not an http(s) URL"),
        (
            ("--aoi", "11.955,48.0,12.035,48.04", "--end", "2024-03-01"),
            "--end 2024-03-01 is before --start 2024-04-01",
        ),
    ],
)
def test_wrong_input_is_one_line_without_a_traceback(
    demo_data, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "aoi.txt").write_text("not a vector file")
    ring = [
        [11.955, 48.0],
        [12.035, 48.0],
        [12.035, 48.04],
        [11.955, 48.04],
    ]  # not closed: GDAL warns, GEOS refuses
    polygon = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    (tmp_path / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [polygon]}))
    files = {"NOTVECTOR": str(tmp_path / "aoi.txt"), "UNCLOSED": str(tmp_path / "aoi.geojson")}
    args = tuple(files.get(a, a) for a in args)
    result = _run("--source", str(demo_data.catalog), "--start", "2024-04-01", "--end", "2024-09-30", *args)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert message in " ".join(result.stderr.split())
    assert result.stderr.startswith("error: "), result.stderr  # no GDAL warning before it


@pytest.mark.parametrize(
    ("option", "value", "bound"),
    [
        ("--max-cloud", "-5", "greater than or equal to 0"),
        ("--max-cloud", "150", "less than or equal to 100"),
        ("--dates", "0", "greater than or equal to 1"),
        ("--min-aoi-coverage", "2", "less than or equal to 1"),
    ],
)
def test_an_option_out_of_its_range_is_named_before_any_search(
    demo_data, option: str, value: str, bound: str
) -> None:
    result = _run("--source", str(demo_data.catalog), "--aoi", "11.955,48.0,12.035,48.04", "--start", "2024-04-01",
                  "--end", "2024-09-30", option, value)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    told = " ".join(result.stderr.replace("│", "").split())  # typer's box, unwrapped
    assert f"Invalid value for '{option}': Input should be {bound}" in told


def test_a_config_and_the_options_it_replaces_are_not_mixed(demo_data, tmp_path: Path) -> None:
    config = tmp_path / "build.yaml"
    config.write_text(f"name: x\ncatalog:\n  source: {demo_data.catalog}\naoi: {demo_data.aoi}\nbands: [B04]\n"
                      f"period:\n  start: 2024-04-01\n  end: 2024-09-30\noutput:\n  path: {tmp_path / 'out'}\n")  # fmt: skip
    result = _run(str(config), "--start", "2024-05-01")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "give a CONFIG or --start, not both" in " ".join(result.stderr.split())
