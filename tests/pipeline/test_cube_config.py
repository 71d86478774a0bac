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


def test_float_outputs_make_float32_groups_in_the_build_plan(demo_data, tmp_path: Path) -> None:
    cube = {"reflectance": True, "indices": {"nd": "(B11 - B04) / (B11 + B04)"}}
    plan = plan_build(parse_config(_config(demo_data, tmp_path, **cube), tmp_path))
    assert {name: str(c.dtype) for name, c in plan.cubes.items()} == {
        "s2_10m": "float32", "s2_20m": "float32", "indices": "float32"
    }  # fmt: skip
    assert plan.groups["indices"] == ["nd"] and plan.factors["indices"] == 1  # on the base grid
    assert plan.nan_fill() == ("s2_10m", "s2_20m", "indices")


def test_indices_are_checked_in_the_config(demo_data, tmp_path: Path) -> None:
    data = _config(demo_data, tmp_path, indices={"ndvi": "NDVI", "red_edge": "B04 / 2 - (B11 + 1)"})
    data["bands"] = ["B04", "B08", "B11"]
    assert parse_config(data, tmp_path).cube.indices == {"ndvi": "NDVI", "red_edge": "B04 / 2 - (B11 + 1)"}
    data["bands"] = ["B04", "B11"]
    with pytest.raises(ConfigError, match=r"cube.indices.ndvi reads band\(s\) \['B08'\]: add them to bands"):
        parse_config(data, tmp_path)
    data["cube"] = {"indices": {"x": "B04 ** 2"}}
    with pytest.raises(ConfigError, match=r"cube.indices: expression 'B04 \*\* 2' uses 'B04 \*\* 2'"):
        parse_config(data, tmp_path)
