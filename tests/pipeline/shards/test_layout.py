"""The dataset layout value: what docs/format.md says, a manifest round trip, clear errors on broken manifests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from odc.geo.geobox import GeoBox

from eoshard.pipeline import DatasetError, ManifestError, read_layout
from eoshard.pipeline.shards import layout

ROOT = Path(__file__).resolve().parents[3]
FORMAT_MD = (ROOT / "docs" / "format.md").read_text()


def _block(heading: str) -> str:
    """The first fenced block after ``heading`` in docs/format.md."""
    section = FORMAT_MD.split(heading, 1)[1]
    return section.split("```", 2)[1]


def test_format_md_lists_the_manifest_keys_of_the_layout_in_order() -> None:
    names: list[str] = []
    for line in _block("## dataset.json").splitlines():
        if not line or line.startswith(" "):
            continue  # continuation lines explain the entry above
        head = re.split(r"\s{2,}", line.strip())[0]
        names += [n.strip() for n in head.split(",")]
        names += re.findall(r";\s+(\w+):", line)  # "n_samples ...;  n_candidates: ..."
    assert tuple(names) == layout.MANIFEST_KEYS + layout.OPTIONAL_KEYS


def test_format_md_names_the_files_and_group_fields_of_the_layout() -> None:
    files = [line.split()[0].split("/")[0] for line in _block("## Files").splitlines() if line.startswith("  ")]
    expected = [
        layout.MANIFEST_FILE,
        layout.INDEX_FILE,
        layout.COLLECTION_FILE,
        layout.CARD_FILE,
        layout.ZARR_DIR,
        layout.LMDB_DIR,
        layout.LMDB_DIR,
        layout.BUILD_DIR,
    ]
    assert files == expected
    (groups,) = [line for line in _block("## dataset.json").splitlines() if line.startswith("groups")]
    fields = re.sub(r"\[[^\]]*\]|:", "", groups.split("{name: {", 1)[1].split("}}")[0]).split(",")
    assert [f.strip() for f in fields] == [k for k in layout.GROUP_KEYS if k != "expressions"]
    assert "also has expressions {index: formula}" in _block("## dataset.json")


HR = {"bands": ["B"], "tensors": ["hr_B"], "resolution": 2.5, "factor": 4, "shape": [1, 192, 192], "dtype": "uint16",
      "products": []}  # fmt: skip


def _layout(**changes: object) -> layout.DatasetLayout:
    grid = GeoBox.from_bbox((600_000, 5_000_000, 600_960, 5_000_480), "EPSG:32633", resolution=10)
    values: dict[str, object] = dict(
        name="t", grid=grid,
        patch={"size": 48, "stride": 48, "mode": "grid", "min_labelled_fraction": 0.0},
        bands=("B04", "B11"),
        groups={
            "s2_10m": layout.GroupLayout("s2_10m", ("B04",), 10.0, 1, (2, 1, 48, 48), "uint16"),
            "s2_20m": layout.GroupLayout("s2_20m", ("B11",), 20.0, 2, (2, 1, 24, 24), "uint16"),
            "indices": layout.GroupLayout("indices", ("ndvi",), 10.0, 1, (2, 1, 48, 48), "float32", {"ndvi": "(B08-B04)"}),
        },
        dates=("2024-04-01T10:00:00", "2024-04-11T10:00:00"), products=("p1", "p2"),
        timeseries={"mask": "nodata"}, n_samples=1, keys=("k0", "k1"), dropped={"too_few_dates": 1},
        splits={"seed": 0, "counts": {"train": 1, "val": 0, "test": 0}}, statistics={},
        labels=layout.LabelLayout({"class": ("int32", 10.0)}, {"1": "wheat"}, {"1": 12}), hr=None,
        zarr=layout.ZarrLayout(16, 1, 2), lmdb=layout.LmdbLayout(("part-00",)), checksums={"data.zarr/s2_10m/c/0/0/0/0/0": "ab"},
    )  # fmt: skip
    values.update(changes)
    return layout.DatasetLayout(**values)  # type: ignore[arg-type]


def test_a_manifest_round_trips_through_json_and_keeps_unknown_keys(tmp_path: Path) -> None:
    value = _layout(extra={"band_metadata": {"B04": {"name": "red"}}})
    manifest = value.to_manifest()
    assert (
        tuple(manifest)[: len(layout.MANIFEST_KEYS)] == layout.MANIFEST_KEYS
        and list(manifest)[-1] == "band_metadata"
    )
    assert manifest["groups"]["s2_10m"] == {
        "bands": ["B04"], "resolution": 10.0, "factor": 1, "shape": [2, 1, 48, 48], "dtype": "uint16", "nodata": 0,
    }  # fmt: skip
    assert manifest["groups"]["indices"]["nodata"] == "nan" and manifest["n_candidates"] == 2
    assert manifest["transform"] == [10.0, 0.0, 600_000.0, 0.0, -10.0, 5_000_480.0] and manifest["shape"] == [
        48,
        96,
    ]
    (tmp_path / "dataset.json").write_text(json.dumps(manifest, indent=2))
    again = read_layout(tmp_path)
    assert again == value
    assert json.dumps(again.to_manifest(), indent=2) == (tmp_path / "dataset.json").read_text()
    assert again.groups["s2_20m"].grid(again.grid).shape == (24, 48)
    assert again.lmdb_paths(tmp_path) == [tmp_path / "data.lmdb" / "part-00"]


def test_a_manifest_with_hr_layers_round_trips(tmp_path: Path) -> None:
    value = _layout(hr={**HR, "nodata": 0, "dates": ["2024-05-01T10:00:00"]})
    (tmp_path / "dataset.json").write_text(json.dumps(value.to_manifest(), indent=2))
    assert read_layout(tmp_path).hr == {**HR, "nodata": 0, "dates": ["2024-05-01T10:00:00"]}


def test_a_1_1_manifest_keeps_the_s1_dates_beside_the_s2_dates(tmp_path: Path) -> None:
    s1 = layout.GroupLayout("s1_10m", ("vv", "vh"), 10.0, 1, (3, 2, 48, 48), "float32")
    dates = ("2024-04-08T05:25:12", "2024-04-14T17:02:41", "2024-04-20T05:25:13")
    value = _layout(format_version="1.1", sensor_dates={"s1": dates}, groups={**_layout().groups, "s1_10m": s1},
                    extra={"band_metadata": {}})  # fmt: skip
    manifest = value.to_manifest()
    assert list(manifest)[len(layout.MANIFEST_KEYS) :] == ["sensor_dates", "band_metadata"]
    assert manifest["sensor_dates"] == {"s1": list(dates)} and manifest["dates"] == list(_layout().dates)
    assert manifest["groups"]["s1_10m"]["shape"] == [3, 2, 48, 48]
    (tmp_path / "dataset.json").write_text(json.dumps(manifest, indent=2))
    assert read_layout(tmp_path) == value
    assert "sensor_dates" not in _layout().to_manifest()  # a 1.0 manifest as before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m.update(format_version="2.0"),
            r"format 2.0 is newer than this eoshard reads \(1.1\): upgrade",
        ),
        (lambda m: m.update(format_version="1.7"), r"format 1.7 is newer than this eoshard reads"),
        (lambda m: m.pop("format_version"), "no format_version string"),
        (lambda m: m.pop("groups"), r"needs the keys \['groups'\], which are missing"),
        (
            lambda m: m.update(shape=[48]),
            r"shape: list should have at least 2 items after validation, not 1, got \[48\] \(docs/format.md\)",
        ),
        (
            lambda m: m["groups"]["s2_10m"].pop("factor"),
            r"groups.s2_10m.factor is missing \(docs/format.md\): the file is broken",
        ),
        # found by the fuzz test of manifests (tests/flows/test_fuzz_inputs.py): inspect's KeyError, verify's TypeError
        (lambda m: m["patch"].update(size=None), "patch.size: input should be a valid integer, got None"),
        (
            lambda m: m["splits"].update(counts=[1, 0, 0]),
            r"splits.counts: input should be a valid dictionary, got \[1, 0, 0\]",
        ),
        (lambda m: m.update(n_samples=True), "n_samples: input should be a valid integer, got True"),
        (
            lambda m: m.update(crs=""),
            r"a value does not have the shape of format 1.0 \(CRSError: Invalid projection",
        ),
        (
            lambda m: m.update(bands=[]),
            r"bands: list should have at least 1 item after validation, not 0, got \[\]",
        ),
        # the fuzz test again (forty-seventh session): an HR section without its fields, verify's KeyError 'hr'
        (lambda m: m.update(hr={}), r"hr.bands is missing \(docs/format.md\)"),
        (
            lambda m: m.update(hr={**HR, "shape": [1, 192]}),
            r"hr.shape: list should have at least 3 items after validation, not 2",
        ),
    ],
)
def test_a_broken_or_newer_manifest_is_a_clear_error(tmp_path: Path, change, message: str) -> None:
    manifest = _layout().to_manifest()
    change(manifest)
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message) as info:
        read_layout(tmp_path)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)
    assert str(tmp_path / "dataset.json") in str(info.value)


def test_no_manifest_or_no_json_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"has no dataset\.json: it is not an eoshard dataset, or its build did not"
    ):
        read_layout(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format_version": "1.0",')
    with pytest.raises(ManifestError, match="is not valid JSON"):
        read_layout(tmp_path)
    with pytest.raises(DatasetError, match=r"nosuch does not exist: give the folder a build wrote"):
        read_layout(tmp_path / "nosuch")
    with pytest.raises(DatasetError, match=r"dataset\.json is a file, not a dataset folder"):
        read_layout(tmp_path / "dataset.json")


def test_open_dataset_of_an_lmdb_only_dataset_says_what_to_do(tmp_path: Path) -> None:
    from eoshard.pipeline import open_dataset

    (tmp_path / "dataset.json").write_text(json.dumps(_layout(zarr=None).to_manifest()))
    with pytest.raises(
        DatasetError, match=r"was built without Zarr \(formats: lmdb only\): read its samples from"
    ):
        open_dataset(tmp_path)
