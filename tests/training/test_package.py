"""Model packages round trip through safetensors + STAC MLM JSON; pickled weights are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from eoshard.training.cli import main
from eoshard.training.errors import PackageError
from eoshard.training.package import load

from .helpers import random_package


def test_round_trip_keeps_weights_and_mlm_fields(tmp_path: Path) -> None:
    package = random_package(tmp_path)
    again = load(tmp_path / "pkg")
    for (k, a), (_, b) in zip(package.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    item = json.loads((tmp_path / "pkg" / "item.json").read_text())
    props = item["properties"]
    assert props["mlm:architecture"] == "fcn" and props["mlm:framework"] == "pytorch"
    assert props["mlm:input"][0]["bands"] == ["B02", "B03", "B04", "B08"]
    assert props["mlm:input"][0]["input"]["shape"] == [-1, 4, 32, 32]
    assert [c["value"] for c in props["mlm:output"][0]["classification:classes"]] == [1, 2, 3, 4, 5, 6]
    assert item["assets"]["weights"]["mlm:artifact_type"] == "safetensors"
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(package.model(x), again.model(x))


def test_pickled_weights_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    random_package(tmp_path)
    weights = tmp_path / "pkg" / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, weights)
    with pytest.raises(PackageError, match=r"pickled weights.*never unpickles"):
        load(tmp_path / "pkg")
    assert main(["predict", str(tmp_path / "pkg"), "in.zarr", "out.zarr"]) == 1
    assert "pickled weights" in capsys.readouterr().err
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(PackageError, match="not a safetensors file"):
        load(tmp_path / "pkg")
