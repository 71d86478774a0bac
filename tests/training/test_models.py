"""Model shapes and behaviours that could be wrong: padding dates ignored, x4 output, gradient penalty, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eoshard.training.cli import main
from eoshard.training.config import TrainConfig
from eoshard.training.errors import ConfigError
from eoshard.training.fit import seg_loss
from eoshard.training.models import Discriminator, build_model, gradient_penalty


def test_unet_and_sr_shapes() -> None:
    unet = build_model("unet", 8, 5, width=4, depth=2)
    assert unet(torch.randn(2, 8, 32, 32)).shape == (2, 5, 32, 32)
    sr = build_model("sr4", 4, 0, width=8, blocks=1)
    assert sr(torch.randn(1, 4, 10, 12)).shape == (1, 4, 40, 48)


def test_convgru_ignores_padded_dates() -> None:
    torch.manual_seed(0)
    model = build_model("convgru", 3, 4, hidden=6).eval()
    x = torch.randn(1, 5, 3, 8, 8)
    pad = torch.tensor([[False, False, False, True, True]])
    other = x.clone()
    other[:, 3:] = torch.randn(1, 2, 3, 8, 8)  # padded dates change, the output must not
    assert torch.equal(model(x, pad), model(other, pad))
    assert not torch.equal(model(x, None), model(other, None))


def test_ignored_pixels_do_not_count_in_the_loss() -> None:
    logits = torch.randn(1, 3, 4, 4)
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    ignore = torch.zeros(1, 4, 4, dtype=torch.bool)
    ignore[0, :2] = True
    changed = label.clone()
    changed[0, :2] = 2  # only ignored pixels change
    assert torch.equal(seg_loss(logits, label, ignore, None, 0.5), seg_loss(logits, changed, ignore, None, 0.5))


def test_gradient_penalty_is_zero_for_a_unit_slope_critic() -> None:
    disc = Discriminator(1)
    real, fake = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    assert gradient_penalty(disc, real, fake) >= 0

    class Linear(torch.nn.Module):  # D(x) = sum(x) / ||1||: gradient norm exactly 1
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum((1, 2, 3)) / 8.0

    assert float(gradient_penalty(Linear(), real, fake)) == pytest.approx(0.0, abs=1e-6)


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"unknown config fields \['epoch'\]"):
        TrainConfig.from_dict({"dataset": "d", "output": "o", "epoch": 3})
    with pytest.raises(ConfigError, match="architecture 'resnet' unknown"):
        build_model("resnet", 3, 2)
    (tmp_path / "c.yaml").write_text("dataset: d\noutput: o\nformat: tfrecord\n")
    assert main(["fit", str(tmp_path / "c.yaml")]) == 1
    assert "format 'tfrecord' unknown" in capsys.readouterr().err
