"""The build config's ``cube`` section: validated, round-tripped, and passed through to the cube engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eoshard.flows.build import plan_build
from eoshard.flows.config import BuildConfig, ConfigError, parse_config


def _config(demo_data, tmp_path: Path, **cube: Any) -> dict[str, Any]:
    return {
        "name": "cube",
        "catalog": {"source": str(demo_data.catalog), "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B04", "B11"],
        "cube": cube,
        "output": {"path": str(tmp_path / "out")},
    }


def test_defaults_keep_stackstac_nearest(demo_data, tmp_path: Path) -> None:
    config = parse_config(_config(demo_data, tmp_path), tmp_path)
    assert (config.cube.engine, config.cube.resampling) == ("stackstac", "nearest")


def test_cube_section_round_trips_through_yaml(demo_data, tmp_path: Path) -> None:
    import yaml

    config = parse_config(_config(demo_data, tmp_path, engine="odc-stac", resampling="bilinear"), tmp_path)
    again = BuildConfig.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config and again.cube.engine == "odc-stac"


@pytest.mark.parametrize(
    ("cube", "message"),
    [
        ({"engine": "gdal"}, "cube.engine: Input should be 'stackstac' or 'odc-stac' (got 'gdal')"),
        ({"resampling": "closest"}, "cube.resampling: unknown resampling; expected one of nearest, bilinear"),
    ],
)
def test_bad_cube_settings_are_one_readable_line(demo_data, tmp_path: Path, cube, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(_config(demo_data, tmp_path, **cube), tmp_path)


@pytest.mark.parametrize(("engine", "layer"), [("stackstac", "fetch_raster_window"), ("odc-stac", "open-B04")])
def test_the_build_plan_uses_the_configured_engine(demo_data, tmp_path: Path, engine: str, layer: str) -> None:
    plan = plan_build(parse_config(_config(demo_data, tmp_path, engine=engine), tmp_path))
    layers = [str(name) for name in plan.cubes["s2_10m"].data.dask.layers]
    assert any(name.startswith(layer) for name in layers), layers
    assert plan.cubes["s2_10m"].dtype == "uint16" and plan.factors == {"s2_10m": 1, "s2_20m": 2}


def test_reflectance_option_reaches_the_plan(demo_data, tmp_path: Path) -> None:
    plan = plan_build(parse_config(_config(demo_data, tmp_path, reflectance=True), tmp_path))
    assert {name: dtype for name, (_, dtype) in plan.layouts().items() if name.startswith("s2_")} == {
        "s2_10m": "float32",
        "s2_20m": "float32",
    }
    assert plan.cubes["s2_10m"].attrs["units"] == "reflectance"
