"""Models of the field's libraries: segmentation-models-pytorch decoders on timm/smp encoders, for any band count,
a temporal variant that shares the encoder over dates and pools them with a masked attention, and local weights.

Nothing downloads: encoders are built with ``encoder_weights=None`` and, when the config names a local
safetensors file (``weights``), its tensors are loaded into the model (whole-model keys, or encoder keys with or
without the ``encoder.`` prefix; a first convolution made for another band count is adapted as smp does it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eoshard.training.errors import ConfigError
from eoshard.training.vision import import_torchvision


def _smp() -> Any:
    try:
        import_torchvision()
        import segmentation_models_pytorch as smp
    except ImportError as err:
        raise ConfigError(
            f"the smp architectures need segmentation-models-pytorch, timm and torchvision ({err}): install them "
            "with pip install 'eoshard-training[models]'"
        ) from err
    return smp


def _create(decoder: str, encoder: str, in_channels: int, classes: int, **options: Any) -> nn.Module:
    smp = _smp()
    try:
        return smp.create_model(
            decoder,
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            **options,
        )
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ConfigError(
            f"segmentation-models-pytorch cannot build decoder {decoder!r} on encoder {encoder!r}: {err}; "
            "pick a decoder of smp.create_model (Unet, FPN, DeepLabV3Plus, ...) and an smp encoder "
            "(resnet18, efficientnet-b0, ...) or a timm one prefixed 'tu-' (tu-convnext_atto, ...)"
        ) from err


class SmpSegmenter(nn.Module):
    """An smp model (``decoder`` on ``encoder``) over the dates stacked as channels; H, W multiples of 32."""

    def __init__(
        self, in_channels: int, n_classes: int, decoder: str = "Unet", encoder: str = "resnet18",
        weights: str | None = None, **options: Any,
    ) -> None:  # fmt: skip
        super().__init__()
        self.net = _create(decoder, encoder, in_channels, n_classes, **options)
        if weights:
            load_local_weights(self.net, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalSmpSegmenter(nn.Module):
    """One smp encoder shared by all dates; per level, the dates' features are averaged with attention weights
    (scored from the deepest features and the day of year) over the dates that are not padding, then the smp
    decoder and head run once. Input (B, T, C, H, W), ``pad`` (B, T) True on padded dates."""

    def __init__(
        self, in_channels: int, n_classes: int, decoder: str = "Unet", encoder: str = "resnet18",
        weights: str | None = None, **options: Any,
    ) -> None:  # fmt: skip
        super().__init__()
        net: Any = _create(decoder, encoder, in_channels, n_classes, **options)
        if weights:
            load_local_weights(net, weights)
        self.net = net
        deepest = int(net.encoder.out_channels[-1])
        self.score = nn.Linear(deepest + 2, 1)

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor | None = None, doy: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t = x.shape[:2]
        feats = self.net.encoder(x.flatten(0, 1))
        angle = (doy if doy is not None else torch.zeros(b, t, device=x.device)).float() * (2 * torch.pi / 365.25)
        pooled = feats[-1].mean((-2, -1)).view(b, t, -1)
        scores = self.score(torch.cat([pooled, angle.sin()[..., None], angle.cos()[..., None]], -1))[..., 0]
        if pad is not None:
            scores = scores.masked_fill(pad.to(x.device), float("-inf"))
        attn = scores.softmax(1)  # (B, T): padded dates weigh exactly 0
        merged = [(f.view(b, t, *f.shape[1:]) * attn.view(b, t, 1, 1, 1)).sum(1) for f in feats]
        return self.net.segmentation_head(self.net.decoder(merged))


def load_local_weights(
    model: nn.Module, path: str | Path, transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    | None = None,
) -> None:  # fmt: skip
    """Load a local safetensors file into ``model`` (or its ``encoder``), its tensors passed through ``transform``
    first when given (a model's own checkpoint filter); refuse a file that matches nothing."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"weights {path} do not exist: give a local safetensors file (nothing is downloaded), or leave "
            "'weights' out for random initialisation"
        )
    tensors = load_file(str(path))
    if transform is not None:
        tensors = transform(tensors)
    own = model.state_dict()
    encoder = getattr(model, "encoder", None)
    prefix = "" if any(k in own for k in tensors) else "encoder."
    if prefix and encoder is None:
        raise ConfigError(f"{path} holds none of the model's tensors (e.g. {next(iter(own))!r})")
    state = {prefix + k.removeprefix("encoder."): v for k, v in tensors.items()}
    matched = {k: _adapt(v, own[k]) for k, v in state.items() if k in own}
    if not matched:
        raise ConfigError(
            f"{path} holds none of the model's tensors: its keys look like {sorted(tensors)[:3]}, the model's "
            f"like {sorted(own)[:3]}; save the model's or its encoder's state_dict with safetensors"
        )
    bad = [k for k, v in matched.items() if v.shape != own[k].shape]
    if bad:
        raise ConfigError(f"{path}: tensors {bad[:3]} have other shapes than the model's; build the same encoder")
    model.load_state_dict(matched, strict=False)


def _adapt(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A first convolution saved for another band count: its mean over input channels, repeated and rescaled
    (smp's rule for ``in_channels != 3``); any other tensor is returned as is."""
    other_bands = weight.ndim == 4 and target.ndim == 4 and weight.shape[1] != target.shape[1]
    if other_bands and weight.shape[0] == target.shape[0] and weight.shape[2:] == target.shape[2:]:
        mean = weight.mean(1, keepdim=True)
        return mean.repeat(1, target.shape[1], 1, 1) * (weight.shape[1] / target.shape[1])
    return weight
