"""Models: U-Net and FCN for segmentation, a ConvGRU for timeseries (one per sensor for Sentinel-1 + 2), a residual x4
super-resolution generator."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from eoshard.training.errors import ConfigError


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(nn.Module):
    """A U-Net with ``depth`` down/up levels; input (B, C, H, W), H and W multiples of 2**depth."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(
            [_block(in_channels, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))]
        )
        self.merge = nn.ModuleList([_block(chans[i] * 2, chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)


class FCN(nn.Module):
    """A fully convolutional net without downsampling: its receptive field is ``2 * layers + 1`` pixels."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        cin = in_channels
        for _ in range(layers):
            mods += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        mods.append(nn.Conv2d(cin, n_classes, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvGRUCell(nn.Module):
    def __init__(self, cin: int, hidden: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(cin + hidden, 2 * hidden, 3, padding=1)
        self.cand = nn.Conv2d(cin + hidden, hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * n


class ConvGRUSegmenter(nn.Module):
    """A ConvGRU over the dates (padded dates leave the state unchanged), then a per-pixel classifier."""

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = ConvGRUCell(in_channels, hidden)
        self.head = nn.Conv2d(hidden, n_classes, 1)

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(recur(self.cell, self.hidden, x, pad))


def recur(cell: ConvGRUCell, hidden: int, x: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """The state of ``cell`` after the dates of ``x`` (B, T, C, H, W); padded dates leave it unchanged."""
    b, t, _, h, w = x.shape
    state = x.new_zeros(b, hidden, h, w)
    for i in range(t):
        new = cell(x[:, i], state)
        keep = pad[:, i].view(b, 1, 1, 1) if pad is not None else torch.zeros(b, 1, 1, 1, dtype=torch.bool)
        state = torch.where(keep.to(x.device), state, new)
    return state


class TwoSensorSegmenter(nn.Module):
    """One ConvGRU per sensor over its own dates (Sentinel-2 ``image``, Sentinel-1 ``image_s1`` of a format 1.1
    dataset), their states concatenated before a per-pixel classifier."""

    def __init__(self, in_channels: int, in_channels_s1: int, n_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = ConvGRUCell(in_channels, hidden)
        self.cell_s1 = ConvGRUCell(in_channels_s1, hidden)
        self.head = nn.Conv2d(2 * hidden, n_classes, 1)

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor | None, x_s1: torch.Tensor, pad_s1: torch.Tensor | None
    ) -> torch.Tensor:
        states = [recur(self.cell, self.hidden, x, pad), recur(self.cell_s1, self.hidden, x_s1, pad_s1)]
        return self.head(torch.cat(states, 1))


class SRGenerator(nn.Module):
    """Residual x4 generator (SR4RS spirit): residual blocks, two pixel-shuffle x2 stages, bicubic skip."""

    def __init__(self, in_channels: int, width: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, width, 3, padding=1)
        self.body = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(True), nn.Conv2d(width, width, 3, padding=1))
             for _ in range(blocks)]
        )  # fmt: skip
        self.up = nn.Sequential(
            nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True),
            nn.Conv2d(width, width * 4, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(True),
        )  # fmt: skip
        self.tail = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        y = f
        for block in self.body:
            y = y + block(y)
        base = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return base + self.tail(self.up(y + f))


class Discriminator(nn.Module):
    """A small patch discriminator for the optional adversarial SR loss."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width * 2, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def sr_loss(sr: torch.Tensor, hr: torch.Tensor, w_l1: float = 1.0, w_l2: float = 0.0) -> torch.Tensor:
    """Weighted L1 + L2 reconstruction loss."""
    return w_l1 * F.l1_loss(sr, hr) + w_l2 * F.mse_loss(sr, hr)


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: (||grad D(x_hat)|| - 1)^2 on random interpolates of real and fake."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


Builder = Callable[..., nn.Module]


def _sr4(in_channels: int, n_classes: int, **options: Any) -> nn.Module:
    return SRGenerator(in_channels, **options)


def _library(name: str, module: str = "library") -> Builder:
    def build(in_channels: int, n_classes: int, **options: Any) -> nn.Module:
        # smp, timm, torchvision (and terratorch) load only when such a model is built
        return getattr(importlib.import_module(f"eoshard.training.{module}"), name)(
            in_channels, n_classes, **options
        )

    return build


# name -> builder(in_channels, n_classes, **options); extend with ``register``
ARCHITECTURES: dict[str, Builder] = {
    "unet": UNet, "fcn": FCN, "convgru": ConvGRUSegmenter, "sr4": _sr4,
    "smp": _library("SmpSegmenter"), "smp-temporal": _library("TemporalSmpSegmenter"),
    "prithvi": _library("PrithviSegmenter", "prithvi"),
}  # fmt: skip
TEMPORAL = {"convgru", "smp-temporal", "prithvi"}  # input (B, T, C, H, W) with the padded-date mask
DATED = {"smp-temporal", "prithvi"}  # temporal models that also take each date's day of year
PER_DATE = {"sr4"}  # input one date's bands (B, C, H, W)


def register(name: str, builder: Builder, temporal: bool = False, per_date: bool = False) -> None:
    """Add an architecture: ``builder(in_channels, n_classes, **options)`` returns the module."""
    ARCHITECTURES[name] = builder
    if temporal:
        TEMPORAL.add(name)
    if per_date:
        PER_DATE.add(name)


def in_channels(architecture: str, n_bands: int, n_dates: int) -> int:
    """The input channels an architecture gets: the bands (temporal, per-date) or bands x dates (stacked)."""
    return n_bands if architecture in TEMPORAL or architecture in PER_DATE else n_bands * n_dates


def build_model(architecture: str, in_channels: int, n_classes: int, **options: Any) -> nn.Module:
    """A model by architecture name, with its options (width, depth, ...)."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"architecture {architecture!r} unknown: expected one of {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[architecture](in_channels, n_classes, **options)
    except TypeError as err:
        raise ConfigError(f"model options {options} do not fit architecture {architecture!r}: {err}") from err


def forward(
    model: nn.Module, architecture: str, image: torch.Tensor, pad: torch.Tensor | None = None,
    doy: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Run ``model`` on a (B, T, C, H, W) batch: temporal models see all dates, others the dates stacked as channels."""
    if architecture in DATED:
        return model(image, pad, doy)
    if architecture in TEMPORAL:
        return model(image, pad)
    return model(image.flatten(1, 2))
