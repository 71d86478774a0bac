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
    output = props["mlm:output"][0]
    # one class per output channel (the model has 7): the background (0) is declared and named as such
    assert [c["value"] for c in output["classification:classes"]] == [0, 1, 2, 3, 4, 5, 6]
    assert output["classification:classes"][0]["name"] == "background" and output["result"]["shape"][1] == 7
    assert any("/classification/" in e for e in item["stac_extensions"])
    assert any("/mlm/" in e for e in item["stac_extensions"])
    assert item["assets"]["weights"]["mlm:artifact_type"] == "safetensors"
    x = torch.randn(1, 4, 16, 16)
    assert torch.equal(package.model(x), again.model(x))
    # the input bands' common names, as STAC 1.1 band metadata (eo extension)
    assert props["bands"] == [{"name": "B02", "eo:common_name": "blue"}, {"name": "B03", "eo:common_name": "green"},
                              {"name": "B04", "eo:common_name": "red"}, {"name": "B08", "eo:common_name": "nir"}]  # fmt: skip
    assert "https://stac-extensions.github.io/eo/v2.0.0/schema.json" in item["stac_extensions"]
    assert again.common_names == {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}
    del props["bands"]  # a package exported before common names were recorded
    (tmp_path / "pkg" / "item.json").write_text(json.dumps(item))
    assert load(tmp_path / "pkg").common_names == {}


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


def test_export_refuses_weights_whose_outputs_disagree_with_the_class_list(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from eoshard.training.models import build_model
    from eoshard.training.package import export

    net = build_model("fcn", 4, 5, width=8, layers=2)  # 5 outputs, but the dataset's classes make 7
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    stats = {"bands": ["B02", "B03", "B04", "B08"], "mean": [0.0] * 4, "std": [1.0] * 4}
    config = {"architecture": "fcn", "model": {"width": 8, "layers": 2}}
    with pytest.raises(PackageError, match="does not fit 'fcn' with 4 bands x 1 dates in and 7 channels out"):
        export(tmp_path / "w.safetensors", config, stats, {i: f"c{i}" for i in range(1, 7)}, 1, 32, tmp_path / "p")
    assert not (tmp_path / "p").exists()


@pytest.mark.needs_build  # stac-model is in the full environment (extra 'mlm'), not in the base install
def test_mlm_item_is_written_by_stac_model_and_equals_the_base_install_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stac_model.schema import MLModelProperties

    from eoshard.training import package

    args = ({"architecture": "smp-temporal", "model": {"encoder": "resnet18"}},
            {"bands": ["B04", "B08"], "mean": [1.0, 2.0], "std": [3.0, 4.0]}, {2: "wheat"}, 6, 32, "m", 3)  # fmt: skip
    item = package.mlm_item(*args)
    props = {k.removeprefix("mlm:"): v for k, v in item["properties"].items() if k.startswith("mlm:")}
    parsed = MLModelProperties.model_validate(props)
    assert parsed.output[0].classes is not None and [c.value for c in parsed.output[0].classes] == [0, 1, 2]
    assert [c.name for c in parsed.output[0].classes] == ["background", "class 1", "wheat"]
    assert parsed.input[0].input.shape == [-1, 6, 2, 32, 32]  # temporal: (batch, time, channel, H, W)
    assert item["properties"]["mlm:input"][0]["eoshard:n_dates"] == 6

    def missing(props: dict) -> None:
        raise ImportError("no stac-model")

    monkeypatch.setattr(package, "_through_stac_model", missing)
    plain = package.mlm_item(*args)
    plain["properties"]["datetime"] = item["properties"]["datetime"]
    assert json.dumps(plain) == json.dumps(item)  # same keys, same order, same values
