"""Library models (smp / timm encoders, any band count, local weights only), kornia augmentation, torchmetrics
metrics and the pydantic config: values that could be wrong, checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from eoshard.training.config import Augmentation, TrainConfig
from eoshard.training.errors import ConfigError
from eoshard.training.models import build_model, forward


def test_smp_models_for_any_band_count_and_timm_encoders() -> None:
    torch.manual_seed(0)
    unet = build_model("smp", 7, 5, decoder="Unet", encoder="resnet18")
    assert unet(torch.randn(2, 7, 32, 32)).shape == (2, 5, 32, 32)
    fpn = build_model("smp", 13, 3, decoder="FPN", encoder="tu-convnext_atto")  # a timm encoder
    assert fpn(torch.randn(1, 13, 64, 64)).shape == (1, 3, 64, 64)
    with pytest.raises(ConfigError, match="cannot build decoder 'Unet' on encoder 'no-such-net'"):
        build_model("smp", 3, 2, encoder="no-such-net")


def test_local_safetensors_weights_load_and_adapt_the_first_convolution(tmp_path: Path) -> None:
    torch.manual_seed(1)
    rgb = build_model("smp", 3, 2, encoder="resnet18")
    encoder = {k: v.contiguous() for k, v in rgb.net.encoder.state_dict().items()}  # type: ignore[union-attr]
    save_file(encoder, str(tmp_path / "encoder.safetensors"))
    model = build_model("smp", 6, 2, encoder="resnet18", weights=str(tmp_path / "encoder.safetensors"))
    mine = model.net.encoder.state_dict()  # type: ignore[union-attr]
    assert torch.equal(mine["layer1.0.conv1.weight"], encoder["layer1.0.conv1.weight"])
    # 6 bands from a 3-band stem: the mean filter repeated, scaled so a constant input gives the same response
    torch.testing.assert_close(mine["conv1.weight"].sum(1), encoder["conv1.weight"].sum(1))
    assert torch.allclose(mine["conv1.weight"][:, 0], mine["conv1.weight"][:, 5])
    with pytest.raises(ConfigError, match="do not exist: give a local safetensors file"):
        build_model("smp", 6, 2, encoder="resnet18", weights=str(tmp_path / "missing.safetensors"))
    save_file({"other": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="holds none of the model's tensors"):
        build_model("smp", 6, 2, encoder="resnet18", weights=str(tmp_path / "other.safetensors"))


def test_temporal_smp_model_ignores_padded_dates() -> None:
    torch.manual_seed(0)
    model = build_model("smp-temporal", 4, 3, encoder="resnet18").eval()
    x = torch.randn(2, 5, 4, 32, 32)
    pad = torch.tensor([[False, False, False, True, True], [False, True, True, True, True]])
    doy = torch.tensor([[10, 50, 90, 0, 0], [200, 0, 0, 0, 0]])
    other = x.clone()
    other[0, 3:] = torch.randn(2, 4, 32, 32)
    other[1, 1:] = 5.0
    with torch.no_grad():
        a, b = forward(model, "smp-temporal", x, pad, doy), forward(model, "smp-temporal", other, pad, doy)
        assert a.shape == (2, 3, 32, 32)
        torch.testing.assert_close(a, b)
        assert not torch.allclose(a, forward(model, "smp-temporal", other, None, doy))


def _batch() -> dict[str, torch.Tensor]:
    label = torch.ones(2, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 4
    image = label[:, None, None].float().repeat(1, 2, 3, 1, 1)  # every band equals the label
    pad = torch.tensor([[False, True], [False, False]])
    return {"image": image * (~pad)[..., None, None, None], "label": label,
            "ignore": torch.zeros(2, 32, 32, dtype=torch.bool), "pad": pad}  # fmt: skip


def test_kornia_rotation_moves_image_and_label_together_and_ignores_pixels_rotated_in() -> None:
    from eoshard.training import augmentation

    config = Augmentation(rotate=40, p=1.0)
    torch.manual_seed(0)
    out = augmentation.apply(augmentation.build(config), config, _batch())
    keep = ~out["ignore"]
    assert 0 < out["ignore"].float().mean() < 0.3  # the corners rotated in from outside the patch
    assert set(out["label"][keep].unique().tolist()) == {1, 4}  # nearest: no blended class codes
    agree = (out["image"][:, 0, 0].round().long() == out["label"])[keep].float().mean()
    assert agree > 0.95  # the image (bilinear) turned as the label did
    assert torch.equal(out["image"][0, 1], torch.zeros(3, 32, 32))  # a padded date stays padding


def test_kornia_radiometric_changes_values_not_geometry() -> None:
    from eoshard.training import augmentation

    config = Augmentation(brightness=0.5, contrast=0.3, noise=0.05, p=1.0)
    torch.manual_seed(0)
    batch = _batch()
    out = augmentation.apply(augmentation.build(config), config, batch)
    assert torch.equal(out["label"], batch["label"]) and not out["ignore"].any()
    diff = out["image"][1] - batch["image"][1]
    assert diff.abs().mean() > 0.05
    # one brightness offset per band: the band means moved by different amounts
    shift = diff.mean((0, 2, 3))
    assert shift.std() > 0.01


def test_config_is_validated_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="precision 'fp8' unknown"):
        TrainConfig.from_dict({"dataset": "d", "output": "o", "precision": "fp8"})
    with pytest.raises(ConfigError, match=r"batch_size: Input should be greater than or equal to 1 \(got 0\)"):
        TrainConfig.from_dict({"dataset": "d", "output": "o", "batch_size": 0})
    with pytest.raises(ConfigError, match=r"augmentation.rotate"):
        TrainConfig.from_dict({"dataset": "d", "output": "o", "augmentation": {"rotate": 400}})
    with pytest.raises(ConfigError, match="class_weights 'inverse'"):
        TrainConfig.from_dict({"dataset": "d", "output": "o", "class_weights": "inverse"})
    config = TrainConfig.from_dict({"dataset": "d", "output": "o", "augmentation": {"noise": 0.1}})
    assert TrainConfig.from_dict(config.to_dict()) == config  # round trip through plain JSON values


class _Logits(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the image holds the logits


def test_torchmetrics_report_matches_independent_counts(tmp_path: Path) -> None:
    from eoshard.training.evaluate import evaluate

    rng = np.random.default_rng(0)
    n, c = 40, 3
    label = torch.from_numpy(rng.integers(0, c, (n, 8, 8)))
    logits = torch.from_numpy(rng.normal(size=(n, 1, c, 8, 8)).astype("f4"))
    logits += 2.0 * torch.nn.functional.one_hot(label, c).permute(0, 3, 1, 2)[:, None]  # mostly right
    ignore = torch.from_numpy(rng.random((n, 8, 8)) < 0.2)
    data = [{"image": logits[i], "label": label[i], "ignore": ignore[i], "pad": torch.zeros(1, dtype=torch.bool),
             "dates": torch.zeros(1, dtype=torch.long)} for i in range(n)]  # fmt: skip
    report = evaluate(_Logits(), "logits", data, c, tmp_path, {1: "wheat", 2: "maize"})  # type: ignore[arg-type]
    keep = ~ignore.numpy()
    truth, pred = label.numpy()[keep], logits[:, 0].argmax(1).numpy()[keep]
    cm = np.bincount(truth * c + pred, minlength=c * c).reshape(c, c)
    assert np.array_equal(np.array(report["confusion_matrix"]), cm)  # ignored pixels left out
    tp = np.diag(cm)
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    np.testing.assert_allclose(report["iou"], iou, rtol=1e-6)
    np.testing.assert_allclose(report["f1"], 2 * tp / (cm.sum(0) + cm.sum(1)), rtol=1e-6)
    assert report["overall_accuracy"] == pytest.approx(tp.sum() / cm.sum())
    # AUROC from the rank statistic (Mann-Whitney), exact; the report's is binned at 101 thresholds
    probs = logits[:, 0].softmax(1).permute(0, 2, 3, 1).numpy()[keep]
    for k in range(c):
        pos, neg = probs[truth == k, k], probs[truth != k, k]
        exact = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
        assert report["auroc"][k] == pytest.approx(exact, abs=0.01)
    assert report["classes"] == ["background", "wheat", "maize"]
    assert {p.name for p in tmp_path.glob("*.png")} == {"confusion_matrix.png", "roc.png", "pr.png"}


def test_the_registry_takes_new_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    from eoshard.training import models

    monkeypatch.setattr(models, "ARCHITECTURES", dict(models.ARCHITECTURES))
    monkeypatch.setattr(models, "TEMPORAL", set(models.TEMPORAL))
    models.register("tiny", lambda c, n, width=2: torch.nn.Conv2d(c, n, 1), temporal=False)
    assert build_model("tiny", 8, 3)(torch.randn(1, 8, 4, 4)).shape == (1, 3, 4, 4)
    assert models.in_channels("tiny", 4, 2) == 8 and models.in_channels("smp-temporal", 4, 2) == 4
    with pytest.raises(ConfigError, match=r"model options \{'depth': 3\} do not fit architecture 'tiny'"):
        build_model("tiny", 8, 3, depth=3)


def test_missing_model_libraries_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'eoshard-training\[models\]'"):
        build_model("smp", 3, 2)


def test_missing_terratorch_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "terratorch", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'eoshard-training\[terratorch\]'"):
        build_model("prithvi", 3, 2, bands=["B02", "B8A", "B12"], num_frames=2, year=2024)
    with pytest.raises(ConfigError, match=r"takes bands of .* not \['B02', 'B08'\]"):
        build_model("prithvi", 2, 2, bands=["B02", "B08"], num_frames=2, year=2024)
