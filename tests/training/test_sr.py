"""Super-resolution on the demo's real pairs (Sentinel-2 10 m -> the 2.5 m HR layers) beats bicubic upsampling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr
from PIL import Image
from safetensors.torch import save_file

from eoshard.training.cli import main
from eoshard.training.errors import ConfigError
from eoshard.training.package import load
from eoshard.training.predict import Tiling
from eoshard.training.scene import predict
from eoshard.training.sr import FeatureNet, SRConfig, evaluate_pairs, ssim
from eoshard.training.sr_fit import fit_pairs

from .helpers import raising

LR, HR = ["B04", "B03", "B02"], ["red", "green", "blue"]


@pytest.fixture(scope="module")
def pairs_dataset(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world as 24 px patches with the 2.5 m HR layers (96 px), built by the real CLI."""
    from typer.testing import CliRunner

    from eoshard.flows.cli import app
    from tests.demo_config import demo_build_config, write_config

    out = tmp_path_factory.mktemp("sr-build") / "demo"
    config = demo_build_config(
        demo_data, out, name="demo-sr", bands=LR, patches={"size": 24},
        hr={"source": str(demo_data.hr), "bands": HR, "resolution": 2.5},
        splits={"block_size": 480, "fractions": [0.7, 0.3, 0.0], "seed": 0},
        output={"path": str(out), "formats": ["zarr"], "shard_size": 64},
    )  # fmt: skip
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(
            app, ["build", str(write_config(config, out.parent / "b.yaml")), "--workers", "1"]
        )
    assert result.exit_code == 0, result.output
    return out


def _config(dataset: Path, out: Path, **extra) -> SRConfig:
    raw = {"dataset": str(dataset), "output": str(out), "bands": LR, "hr_bands": HR,
           "model": {"width": 16, "blocks": 2}, "epochs": 12, "batch_size": 16, "lr": 0.002, "seed": 1, **extra}  # fmt: skip
    path = out.parent / f"{out.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return SRConfig.load(path)


@pytest.mark.slow
@pytest.mark.needs_build
def test_sr_on_real_pairs_beats_bicubic_and_predicts_a_x4_cog(pairs_dataset: Path, tmp_path: Path, capsys) -> None:
    package = fit_pairs(_config(pairs_dataset, tmp_path / "run"))
    told = capsys.readouterr()
    epochs = re.findall(r"^epoch (\d+)/12: train L1 [0-9.]+, val L1 [0-9.]+, [0-9.]+ pairs/s$", told.err, re.M)
    assert epochs == [str(e) for e in range(1, 13)] and told.out == ""  # one line per epoch, on stderr
    with Image.open(tmp_path / "run" / "training_curve.png") as curve:
        assert curve.size == (600, 400)
    assert main(["evaluate-sr", str(package), str(pairs_dataset), "--split", "val"]) == 0
    report = json.loads(capsys.readouterr().out)
    print(report)
    assert report["pairs"] >= 10
    assert report["psnr"] > report["bicubic_psnr"] + 1.0, report
    assert report["ssim"] > report["bicubic_ssim"], report
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))

    sr = load(package)
    assert sr.out_bands == HR and sr.scale == 4
    image = np.random.default_rng(0).integers(300, 2000, (3, 40, 50)).astype("uint16")
    src = zarr.create_array(str(tmp_path / "lr.zarr"), shape=image.shape, dtype="uint16", chunks=(3, 40, 50))
    src[:] = image
    src.attrs.update({"bands": LR, "crs": "EPSG:32632", "transform": [10.0, 0.0, 720000.0, 0.0, -10.0, 5300000.0]})
    out = zarr.open_array(
        str(predict(sr, tmp_path / "lr.zarr", tmp_path / "sr.zarr", Tiling(32, 16, 8))), mode="r"
    )
    assert out.shape == (3, 160, 200) and out.attrs["bands"] == HR
    assert out.attrs["transform"] == [2.5, 0.0, 720000.0, 0.0, -2.5, 5300000.0]


@pytest.mark.slow
@pytest.mark.needs_build
def test_adversarial_and_perceptual_terms_train(pairs_dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    vgg_like = {"0.weight": torch.randn(8, 3, 3, 3) * 0.1, "0.bias": torch.zeros(8),
                "2.weight": torch.randn(8, 8, 3, 3) * 0.1, "2.bias": torch.zeros(8),
                "5.weight": torch.randn(16, 8, 3, 3) * 0.1, "5.bias": torch.zeros(16)}  # fmt: skip
    save_file(vgg_like, str(tmp_path / "features.safetensors"))
    feats = FeatureNet(tmp_path / "features.safetensors", 3)
    assert [type(m).__name__ for m in feats.net] == [
        "Conv2d",
        "ReLU",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
    ]
    config = _config(pairs_dataset, tmp_path / "gan", epochs=2, adversarial=0.01, perceptual=0.1,
                     perceptual_weights=str(tmp_path / "features.safetensors"))  # fmt: skip
    report = evaluate_pairs(fit_pairs(config), pairs_dataset)
    assert np.isfinite(report["psnr"]) and report["pairs"] >= 10


def _state(run: Path) -> dict:
    return json.loads(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["state"])


@pytest.mark.slow
@pytest.mark.needs_build
def test_a_stopped_fit_sr_resumes_to_the_weights_of_an_uninterrupted_run(
    pairs_dataset: Path, tmp_path: Path, capsys
) -> None:
    extra = {"epochs": 2, "adversarial": 0.01}  # the critic too: its weights, its optimiser, the penalty's draws
    fit_pairs(_config(pairs_dataset, tmp_path / "straight", **extra))
    out = tmp_path / "stopped"
    config = _config(pairs_dataset, out, **extra)
    last = out / "checkpoints" / "last.pt"
    assert fit_pairs(config, stop_after_epochs=1) == last
    assert not (out / "package").exists()
    capsys.readouterr()

    assert main(["fit-sr", str(tmp_path / "stopped.yaml")]) == 1  # a plain rerun would train over the run
    assert capsys.readouterr().err == (
        f"error: output folder {out} already holds a run (checkpoint {last}): continue it with `--resume {last}`, "
        "or start over into another output folder or with --overwrite\n"
    )
    assert main(["fit-sr", str(tmp_path / "stopped.yaml"), "--resume", str(last)]) == 0
    told = capsys.readouterr()
    assert re.findall(r"^epoch (\d)/2: ", told.err, re.M) == ["2"]
    assert json.loads(told.out) == {"package": str(out / "package")}
    straight = _state(tmp_path / "straight")
    assert _state(out) == straight and straight["epoch"] == 2 and len(straight["val_l1"]) == 2
    for name in ("best.safetensors", "package/model.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name

    fit_pairs(config, overwrite=True, stop_after_epochs=1)  # starts over: the first epoch again, the same
    again = _state(out)
    assert again["epoch"] == 1 and again["train_l1"] == straight["train_l1"][:1]


def test_ssim_is_one_for_equal_images_and_follows_the_formula() -> None:
    a = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 255
    assert float(ssim(a, a, 255.0)) == pytest.approx(1.0)
    # flat images 100 and 120: no variance, so SSIM is the luminance term (2 mu_a mu_b + C1) / (mu_a² + mu_b² + C1)
    c1 = (0.01 * 255) ** 2
    flat = torch.full((1, 1, 20, 20), 100.0, dtype=torch.float64)
    expected = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    assert float(ssim(flat, flat + 20, 255.0)) == pytest.approx(expected, rel=1e-9)


def test_sr_config_pairs_bands_one_to_one(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"dataset": ".", "output": "o", "bands": ["B04"], "hr_bands": HR})
    )
    with pytest.raises(ConfigError, match="must pair one to one"):
        SRConfig.load(tmp_path / "c.yaml")


@pytest.mark.slow
@pytest.mark.needs_build
def test_a_batch_of_pairs_too_big_for_the_memory_says_to_lower_batch_size(
    pairs_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eoshard.training.sr_fit as sr_fit_module

    no_room = RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 81604378624 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip
    monkeypatch.setattr(sr_fit_module, "_step", raising(no_room))
    with pytest.raises(ConfigError) as told:
        fit_pairs(_config(pairs_dataset, tmp_path / "run", epochs=1, batch_size=512))
    assert str(told.value) == (
        "a batch of 512 pairs needs more memory than there is ([enforce fail at alloc_cpu.cpp:118] "
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 81604378624 bytes. Error code 12 (Cannot "
        "allocate memory)): lower batch_size in the config, then fit-sr again (--overwrite starts the run over)"
    )
