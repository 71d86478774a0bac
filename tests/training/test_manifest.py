"""What the trainers read from ``dataset.json``: the number of classes covers every code in the data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
