"""What the trainers read from ``dataset.json``: the number of classes covers every code in the data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eoshard.training.errors import DatasetFormatError
from eoshard.training.manifest import Manifest
from tests.training.helpers import fake_dataset


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # an integer class column without a name column: no names, the codes only counted (it gave 1 class)
        ({"classes": {}, "class_counts": {"0": 900, "1": 50, "6": 50}}, 7),
        # names for some codes (a code whose parcels all lack a name has none): the counted 6 still counts
        ({"classes": {"1": "wheat", "3": "maize"}, "class_counts": {"0": 9, "1": 5, "3": 5, "6": 1}}, 7),
        ({"classes": {"1": "wheat", "8": "forest"}, "class_counts": {"0": 9, "1": 5}}, 9),
        ({"classes": {}}, 1),  # nothing labelled: the background alone
    ],
)
def test_n_classes_covers_the_named_and_the_counted_codes(tmp_path: Path, labels: dict, expected: int) -> None:
    root = fake_dataset(tmp_path / "ds")
    raw = json.loads((root / "dataset.json").read_text())
    raw["labels"] = {"layer": "class", "background": 0, **labels}
    (root / "dataset.json").write_text(json.dumps(raw))
    assert Manifest.read(root).n_classes == expected


def test_bands_are_named_as_the_dataset_or_by_their_common_names(tmp_path: Path) -> None:
    root = fake_dataset(tmp_path / "ds")
    raw = json.loads((root / "dataset.json").read_text())
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
    raw["band_metadata"] = {b: {"sensor": "sentinel-2", "common_name": c} for b, c in common.items()}
    (root / "dataset.json").write_text(json.dumps(raw))
    manifest = Manifest.read(root)
    assert manifest.band_names(["nir", "B03", "Red", "b02"]) == ["B08", "B03", "B04", "B02"]
    expected = "band 'swir16' is not in the dataset; it has B02 (blue), B03 (green), B04 (red), B08 (nir)"
    with pytest.raises(DatasetFormatError, match=re.escape(expected)):
        manifest.band_names(["red", "swir16"])
    raw["band_metadata"]["B03"]["common_name"] = "red"  # two bands of one common name: neither is guessed
    (root / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(DatasetFormatError, match=r"band 'red' stands for \['B03', 'B04'\], more than one"):
        Manifest.read(root).band_names(["red"])
