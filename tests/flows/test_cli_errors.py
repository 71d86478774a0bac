"""Bad input through the real ``eoshard`` entry point: one actionable message, non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def config_for(demo_data, tmp_path: Path):
    def write(**changes: object) -> Path:
        data = {
            "name": "errors",
            "catalog": {"source": str(demo_data.catalog), "max_cloud": 60},
            "aoi": str(demo_data.aoi),
            "period": {"start": "2024-04-01", "end": "2024-09-30"},
            "bands": ["B02"],
            "output": {"path": str(tmp_path / "out")},
        }
        data.update(changes)
        path = tmp_path / "build.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def _assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    message = " ".join(result.stderr.split())  # rich may wrap long lines
    assert message.startswith("error: ")
    for fragment in fragments:
        assert fragment in message


def test_unknown_key(config_for) -> None:
    path = config_for(colour="blue")
    _assert_clean_failure(
        _run("build", str(path)),
        2,
        "colour: not a setting (got 'blue'); the top-level settings are: name, catalog,",
    )


def test_an_output_path_that_cannot_be_a_folder_is_refused_before_planning(config_for, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    path = config_for(output={"path": str(tmp_path / "taken" / "out")})
    _assert_clean_failure(
        _run("build", str(path)), 1, f"output.path {tmp_path}/taken/out: {tmp_path}/taken is a file, not a folder"
    )


def test_an_impossible_date_in_the_yaml_is_the_field_s_error(config_for) -> None:
    path = config_for()
    path.write_text(path.read_text().replace("'2024-04-01'", "2024-13-01"))  # unquoted: YAML's date form
    assert "start: 2024-13-01\n" in path.read_text()
    _assert_clean_failure(
        _run("build", str(path)), 2, "period.start: Input should be a valid date", "'2024-13-01'"
    )


def test_wrong_type(config_for) -> None:
    path = config_for(patches={"size": "large"})
    _assert_clean_failure(_run("build", str(path)), 2, "patches.size: Input should be a valid integer", "'large'")


def test_missing_file(config_for, tmp_path: Path) -> None:
    path = config_for(aoi=str(tmp_path / "nowhere.geojson"))
    _assert_clean_failure(_run("build", str(path)), 2, "aoi", "file not found", "nowhere.geojson")


def test_missing_config_file(tmp_path: Path) -> None:
    _assert_clean_failure(_run("build", str(tmp_path / "absent.yaml")), 2, "config file not found")


def test_aoi_that_overlaps_no_product(config_for) -> None:
    path = config_for(aoi=[-106.1, 35.5, -105.9, 35.7])
    _assert_clean_failure(
        _run("build", str(path)),
        1,
        "no product",
        "intersects the AOI",
        "check the AOI and its CRS, widen the period or raise max_cloud",
    )


def test_labelled_mode_without_labels(config_for) -> None:
    path = config_for(patches={"mode": "labelled"})
    _assert_clean_failure(
        _run("build", str(path)), 2, "patches.mode 'labelled' needs labels: add a labels section"
    )


def test_inspect_and_verify_of_a_newer_or_broken_dataset(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text('{"format_version": "9.0"}')
    for command in ("inspect", "verify"):
        _assert_clean_failure(_run(command, str(tmp_path)), 1, "format 9.0 is newer than this eoshard reads")
    (tmp_path / "dataset.json").write_text('{"format_version": "1.0", "name": "x"}')
    _assert_clean_failure(_run("inspect", str(tmp_path)), 1, "which are missing", "rebuild the dataset")


def test_jobs_without_a_scheduler_says_how_to_give_one(monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    _assert_clean_failure(
        _run("jobs", "logs", "some-job"), 1, "no scheduler given: add --scheduler tcp://HOST:PORT"
    )
    helped = _run("jobs", "cancel", "--help")
    assert helped.returncode == 0 and "--scheduler" in helped.stdout


def test_version() -> None:
    from importlib.metadata import version

    shown = _run("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"eoshard {version('eoshard')}"


def test_a_folder_given_as_the_config_is_named_so(tmp_path: Path) -> None:
    _assert_clean_failure(_run("build", str(tmp_path)), 2, f"{tmp_path} is a folder: give the YAML config file")


def test_build_takes_its_scheduler_from_dask_scheduler_address_and_checks_it_first(config_for) -> None:
    """As Dask's own Client() does; an address that is no scheduler's (a dashboard URL) is refused before planning."""
    result = _run("build", str(config_for()), env={"DASK_SCHEDULER_ADDRESS": "http://127.0.0.1:8787/status"})
    _assert_clean_failure(result, 1, "'http://127.0.0.1:8787/status' is not a Dask scheduler address")
    assert "products" not in result.stdout  # nothing was planned


FIBOA = ("parcels", "fiboa")


@pytest.mark.parametrize(
    ("labels", "code", "fragments"),
    [
        # real Austrian parcels against the Bavarian demo AOI: a dataset of background alone, said before any pixel
        ({"path": ("at", "inspire_schlaege_2025-1_polygon.gpkg.zip"), "class_column": "SNAR_CODE"}, 2,
         ["labels: none of the 100 polygons of", "overlaps the AOI", "check the AOI and the label file"]),
        # a misspelt name column failed after every shard was written
        ({"path": ("..", "si_raba_lulc_88polygons_epsg32633.gpkg"), "class_column": "LULC_ID",
          "class_name_column": "lulc_name"}, 2,
         ["has no column 'lulc_name' (labels.class_name_column); did you mean 'LULC_NAME'? it has", "'LULC_NAME'"]),
        # a misspelt class or id column: exit 1 without the file's name, or "labels:"
        ({"path": ("..", "si_raba_lulc_88polygons_epsg32633.gpkg"), "class_column": "lulc_id"}, 2,
         ["labels: ", "has no column 'lulc_id' (labels.class_column); did you mean 'LULC_ID'? it has", "'LULC_ID'"]),
        ({"path": ("..", "si_raba_lulc_88polygons_epsg32633.gpkg"), "class_column": "LULC_ID", "id_column": "pid"},
         2, ["has no column 'pid' (labels.id_column); it has", "or leave it out"]),
        # a layer the file lacks: "expected a GeoPackage" about a GeoPackage
        ({"path": ("..", "si_raba_lulc_88polygons_epsg32633.gpkg"), "class_column": "LULC_ID", "layer": "fields"},
         2, ["has no layer 'fields' (labels.layer); it has ['LULC']: name one of them"]),
    ],
)  # fmt: skip
def test_labels_that_would_fail_late_or_say_nothing_are_refused_first(
    config_for, labels: dict[str, object], code: int, fragments: list[str]
) -> None:
    from tests.conftest import shared_path

    path = shared_path(*FIBOA, *labels.pop("path"))  # type: ignore[misc]
    result = _run("build", str(config_for(labels={"path": str(path), **labels})))
    _assert_clean_failure(result, code, *fragments)
    assert "shard" not in result.stdout  # refused while planning


def test_labels_of_points_and_geoparquet_labels(config_for, tmp_path: Path) -> None:
    """Points are no label polygons (said, not built as background); GeoParquet is read by geopandas (GDAL's
    Parquet driver is optional and absent here)."""
    import geopandas as gpd

    from tests.conftest import shared_path

    parcels = gpd.read_file(shared_path("parcels", "si_raba_lulc_88polygons_epsg32633.gpkg"))
    points = tmp_path / "points.gpkg"
    parcels.assign(geometry=parcels.geometry.representative_point()).to_file(points)
    _assert_clean_failure(
        _run("build", str(config_for(labels={"path": str(points), "class_column": "LULC_ID"}))), 2,
        f"labels: {points} holds no polygons (its geometries: Point)",
    )  # fmt: skip
    two = tmp_path / "two-layers.gpkg"
    parcels.to_file(two, layer="fields")
    parcels.iloc[:3].to_file(two, layer="farms")
    result = _run("build", str(config_for(labels={"path": str(two), "class_column": "LULC_ID"})))
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in said, said
    assert said.startswith(
        f"warning: labels: {two} has 2 layers with geometries (fields, farms): reading the first, 'fields'; name "
        "the parcels' layer with labels.layer"
    )
    assert f"error: labels: none of the 88 polygons of {two}" in said  # the first layer was read
    parquet = tmp_path / "parcels.parquet"
    parcels.to_parquet(parquet)
    result = _run("build", str(config_for(labels={"path": str(parquet), "class_column": "LULC_ID"})))
    _assert_clean_failure(result, 2, f"labels: none of the 88 polygons of {parquet} overlaps the AOI")


def test_a_warning_under_a_spinner_gets_a_line_of_its_own_in_a_terminal(monkeypatch) -> None:
    """In a terminal, a warning while a spinner or progress bar runs goes above it, on a line of its own (written
    to stderr by another console, it was glued to the spinner's line); elsewhere, and without one, to stderr."""
    import io
    import re
    import warnings

    from rich.console import Console

    from eoshard.flows import app as app_module
    from eoshard.flows.cli import _show_warning

    out, err = io.StringIO(), io.StringIO()
    terminal = {"force_terminal": True, "width": 100, "color_system": None}
    monkeypatch.setattr(app_module, "console", Console(file=out, **terminal))
    monkeypatch.setattr(app_module, "errors", Console(file=err, **terminal))
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # shown, not raised as the tests' settings would
        warnings.showwarning = _show_warning
        with app_module.console.status("planning the build"):
            warnings.warn("1 of 480 label geometries were invalid", UserWarning, stacklevel=1)
        warnings.warn("after the spinner", UserWarning, stacklevel=1)
    assert err.getvalue() == "warning: after the spinner\n"
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    shown = [line for part in drawn.split("\r") for line in part.split("\n")]
    assert (
        "warning: 1 of 480 label geometries were invalid" in shown
    )  # a line of its own, the spinner cleared first


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["build", "x.yaml", "--workers", "0"], "'--workers': Input should be greater than or equal to 1"),
        (["refresh", "x.yaml", "--workers", "-2"], "'--workers': Input should be greater than or equal to 1"),
        (
            ["convert", "bigearthnet", "--target", "t", "--s2", ".", "--workers", "-2"],
            "'--workers': Input should be greater than or equal to 1",
        ),
        (["verify", "x", "--sources", "-1"], "'--sources': Input should be greater than or equal to 0"),
        (["inspect", "x", "--samples", "0"], "'--samples': Input should be greater than or equal to 1"),
        (["inspect", "x", "--samples", "65"], "'--samples': Input should be less than or equal to 64"),
        (["verify", "x", "--seed", "-1"], "'--seed': Input should be greater than or equal to 0"),
    ],
)
def test_counts_out_of_their_range_are_refused(args: list[str], said: str) -> None:
    """``--workers 0`` started a cluster of the default size, ``--workers -2`` one of none (a conversion waited for
    it forever); ``verify --sources -1`` said it verified -1 source samples; ``inspect --samples 0`` and
    ``verify --seed -1`` ended in matplotlib's and numpy's tracebacks, and ``inspect --samples 100000`` drew every
    sample of the dataset, one row each, for minutes."""
    from typer.testing import CliRunner

    from eoshard.flows.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert f"Invalid value for {said}" in " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "EOSHARD_READ_THREADS",
            "eight",
            "is 'eight', which is not a whole number of at least 1: set it to one (its default is 8)",
        ),
        (
            "EOSHARD_AHEAD_THREADS",
            "0",
            "is '0', which is not a whole number of at least 1: set it to one (its default is 16)",
        ),
        ("EOSHARD_BLOCK_CACHE_MB", "1 GB", "is '1 GB', which is not a size in MiB, 0 or more (e.g. 512)"),
        ("EOSHARD_BLOCK_STORE", "everything", "is 'everything', which is not 'shared' or 'all'"),
    ],
)
def test_a_tuning_variable_that_is_not_one_is_named_before_the_build_starts(
    config_for, tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    """Read when the shard tasks' modules load, in the command and in each local worker: one line, from the
    command, and nothing written."""
    path = config_for()
    result = _run("build", str(path), "--workers", "1", env={variable: value})
    _assert_clean_failure(result, 1, f"error: the environment variable {variable} {expected}", "or unset it")
    assert "Run Failed" not in result.stderr  # no worker's log of it
    assert not (tmp_path / "out" / "dataset.json").exists()
