"""Build configs: validated with readable messages, paths resolved, round trip through YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eoshard.flows.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def _valid(tmp_path: Path) -> dict:
    (tmp_path / "catalog.json").write_text("{}")
    (tmp_path / "parcels.gpkg").write_bytes(b"")
    return {
        "name": "t",
        "catalog": {"source": "catalog.json", "max_cloud": 30},
        "aoi": [11.9, 48.0, 12.0, 48.1],
        "period": {"start": "2024-04-01", "end": "2024-05-01"},
        "bands": ["B02"],
        "labels": {"path": "parcels.gpkg", "class_column": "code"},
        "output": {"path": "out"},
    }


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = parse_config(_valid(tmp_path), tmp_path)
    assert config.catalog.source == str((tmp_path / "catalog.json").resolve())
    assert config.output.path == (tmp_path / "out").resolve()
    assert config.aoi == (11.9, 48.0, 12.0, 48.1)
    assert config.patches.size == 64 and config.output.formats == ("zarr", "lmdb")


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    config = parse_config(_valid(tmp_path), tmp_path)
    again = parse_config(yaml.safe_load(config.to_yaml()), Path("/nonexistent"))
    assert again == config


def test_the_example_config_is_valid() -> None:
    demo = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    assert demo["catalog"]["source"] == "../data/demo/catalog/catalog.json"
    assert demo["bands"] == ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["catalog"].update(colection="x"),
            "catalog.colection: not a setting (got 'x'); did you mean 'collection'? the settings of catalog are: "
            "source, kind, collection, max_cloud,",
        ),
        (
            lambda d: d["period"].update(start="2024-13-01"),
            "period.start: Input should be a valid date or datetime, month value is outside expected range",
        ),
        (lambda d: d.update(patches={"size": "big"}), "patches.size: Input should be a valid integer"),
        (
            lambda d: d["catalog"].update(max_cloud=150),
            "catalog.max_cloud: Input should be less than or equal to 100",
        ),
        (lambda d: d["labels"].update(path="missing.gpkg"), "labels.path: file not found:"),
        (lambda d: d.pop("bands"), "bands: Field required"),
        (lambda d: d["period"].update(end="2024-01-01"), "period: end 2024-01-01 is before start 2024-04-01"),
        (lambda d: d.update(aoi=[12, 48, 11, 49]), "is not minx,miny,maxx,maxy in degrees"),
    ],
)
def test_each_problem_is_one_readable_line(tmp_path: Path, change, message: str) -> None:
    data = _valid(tmp_path)
    change(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, tmp_path, "build.yaml")
    text = str(info.value)
    assert text.startswith("build.yaml: ")
    assert message in text
    assert "\n" not in text


def test_several_problems_are_listed(tmp_path: Path) -> None:
    data = _valid(tmp_path)
    data["catalog"]["max_cloud"] = -1
    data["patches"] = {"size": 3}
    with pytest.raises(ConfigError) as info:
        parse_config(data, tmp_path, "build.yaml")
    lines = str(info.value).splitlines()
    assert lines[0] == "build.yaml: 2 problems in the config"
    assert lines[1].startswith("  - catalog.max_cloud: Input should be greater than or equal to 0")
    assert lines[2].startswith("  - patches.size: Input should be greater than or equal to 8")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping of settings, got list"):
        load_config(bad)


@pytest.mark.parametrize("mode", ["labelled", "parcels"])
def test_a_patch_mode_that_needs_labels_is_refused_with_the_config(tmp_path: Path, mode: str) -> None:
    data = _valid(tmp_path)
    data["patches"] = {"mode": mode}
    assert parse_config(data, tmp_path).patches.mode == mode  # with labels: fine
    data.pop("labels")
    with pytest.raises(ConfigError, match=f"patches.mode '{mode}' needs labels: add a labels section"):
        parse_config(data, tmp_path)


def test_config_errors_are_flows_errors() -> None:
    from eoshard.flows.errors import FlowsError

    assert issubclass(ConfigError, FlowsError) and issubclass(ConfigError, ValueError)


def test_class_codes_keyed_by_yaml_numbers_name_the_text_classes(tmp_path: Path) -> None:
    """Austria's crop codes are text ("109"); ``109: 4`` in YAML is a number key, once refused six times over."""
    data = _valid(tmp_path)
    data["labels"]["class_codes"] = yaml.safe_load("{109: 4, '110': 5, winter_wheat: 1}")
    config = parse_config(data, tmp_path)
    assert config.labels is not None and config.labels.class_codes == {"109": 4, "110": 5, "winter_wheat": 1}
    data["labels"]["class_codes"] = {True: 3}
    with pytest.raises(ConfigError, match=r"labels.class_codes.*: Input should be a valid string \(got True\)"):
        parse_config(data, tmp_path)
