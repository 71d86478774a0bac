"""The ``eoshard`` command starts without the geo stack: each command loads what it needs when it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# what the commands need once they run; none of it is needed to parse the command line or print --help
GEO_STACK = (
    "dask", "distributed", "exactextract", "geopandas", "lmdb", "odc", "pandas", "pyproj", "pystac",
    "pystac_client", "rasterio", "scipy", "shapely", "stackstac", "xarray", "zarr",
)  # fmt: skip


def _loaded_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {GEO_STACK!r} if m in sys.modules)))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    return list(json.loads(run.stdout.splitlines()[-1]))


def test_the_cli_loads_no_geo_library_to_start() -> None:
    assert _loaded_after("import eoshard.flows.cli") == []


def test_help_lists_every_command_without_loading_them() -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from eoshard.flows.cli import app\n"
        "print(CliRunner().invoke(app, ['--help']).output)"
    )
    probe = (
        f"{code}\nimport sys; print(sorted(m for m in ('xarray', 'geopandas', 'stackstac') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd="/")
    for command in ("build", "select", "convert", "predict", "refresh", "verify", "inspect", "demo-data"):
        assert f" {command} " in run.stdout
    assert run.stdout.splitlines()[-1] == "[]"


def test_a_config_is_validated_without_the_cube_engines() -> None:
    code = (
        "from eoshard.flows.config import BuildConfig\n"
        "config = BuildConfig.model_validate({'name': 'x', 'aoi': [14.5, 46.0, 14.6, 46.1],\n"
        "    'catalog': {'source': 'https://earth-search.aws.element84.com/v1'},\n"
        "    'period': {'start': '2024-04-01', 'end': '2024-05-01'}, 'bands': ['B04', 'B08'],\n"
        "    'cube': {'resampling': 'bilinear', 'indices': {'ndvi': 'ndvi'}}, 'timeseries': {'mask': 'scl'},\n"
        "    'output': {'path': 'out'}})\n"
        "assert config.cube.resampling == 'bilinear' and config.cube.indices == {'ndvi': 'ndvi'}"
    )
    # rasterio names the resampling methods; the cube engines (stackstac, xarray, dask) stay unloaded
    assert _loaded_after(code) == ["rasterio"]


def test_a_missing_config_is_told_before_the_planner_and_dask_load(tmp_path: Path) -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from eoshard.flows.cli import app\n"
        f"result = CliRunner().invoke(app, ['build', {str(tmp_path / 'missing.yaml')!r}])\n"
        "print(result.exit_code, result.output.replace(chr(10), ' '))"
    )
    assert _loaded_after(code) == []
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert run.stdout.splitlines()[0] == f"2 error: config file not found: {tmp_path / 'missing.yaml'} "


def test_counts_are_said_in_the_singular_for_one() -> None:
    from eoshard.flows.words import counted

    assert [counted(n, "patch", "patches") for n in (0, 1, 2)] == ["0 patches", "1 patch", "2 patches"]
    assert [counted(n, "shard") for n in (1, 111)] == ["1 shard", "111 shards"]
