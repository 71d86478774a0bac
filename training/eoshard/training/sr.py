"""Super-resolution on real pairs (SR4RS style): Sentinel-2 patches in, the stored paired HR layers as targets.

A pair is one sample of a dataset built with an ``hr:`` section: LR = the sample's Sentinel-2 bands of one date
(the kept date with the highest valid fraction, the latest on ties, at the base resolution), HR = its
``hr`` layers (``P*4`` pixels). LR and HR are z-scored with their own ``dataset.json`` statistics; the ``sr4``
generator maps normalised LR to normalised HR, so its bicubic skip is the *radiometrically matched bicubic*
baseline. Samples whose HR or LR holds nodata are left out. Losses: L1, plus an optional WGAN-GP adversarial term
and an optional perceptual term (VGG-style features from a local safetensors file; nothing is downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from torch import nn

from eoshard.training.config import read_config
from eoshard.training.errors import ConfigError, DatasetFormatError
from eoshard.training.manifest import Manifest

SCALE = 4


@dataclass(frozen=True)
class SRConfig:
    dataset: str
    output: str
    bands: list[str]  # LR (Sentinel-2) bands, one per HR band, in the same order
    hr_bands: list[str]
    model: dict[str, Any] = field(default_factory=lambda: {"width": 32, "blocks": 4})
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    l1: float = 1.0
    adversarial: float = 0.0  # weight of the WGAN-GP generator term; 0 = off
    gp: float = 10.0
    perceptual: float = 0.0  # weight of the feature loss; needs perceptual_weights
    perceptual_weights: str | None = None  # safetensors of a VGG-style `features` stack (keys "<i>.weight")
    perceptual_layers: int = 4  # conv layers of the feature network used

    @classmethod
    def load(cls, path: str | Path) -> SRConfig:
        path = Path(path)
        raw = read_config(path, "super-resolution")
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a super-resolution config is a mapping, got {type(raw).__name__}")
        for key in ("dataset", "output", "perceptual_weights"):
            if raw.get(key) is not None:
                raw[key] = str((path.parent / raw[key]).resolve())
        try:
            config = cls(**raw)
        except TypeError as err:
            raise ConfigError(f"{path}: {err}; see docs/training.md, 'Super-resolution on real pairs'") from err
        if len(config.bands) != len(config.hr_bands):
            raise ConfigError(
                f"{path}: bands {config.bands} and hr_bands {config.hr_bands} must pair one to one (same count)"
            )
        if config.perceptual > 0 and not config.perceptual_weights:
            raise ConfigError(f"{path}: perceptual > 0 needs perceptual_weights (a local safetensors file)")
        return config


@dataclass(frozen=True)
class Pairs:
    """Normalised pairs: ``lr`` (N, C, P, P) and ``hr`` (N, C, 4P, 4P), with the statistics used."""

    lr: torch.Tensor
    hr: torch.Tensor
    lr_stats: tuple[list[float], list[float]]
    hr_stats: tuple[list[float], list[float]]


def _stats(manifest: Manifest, names: list[str]) -> tuple[list[float], list[float]]:
    stats = manifest.raw.get("statistics") or {}
    missing = [n for n in names if n not in stats]
    if missing:
        raise DatasetFormatError(f"{manifest.root}/dataset.json has no statistics for {missing}: rebuild it")
    return [float(stats[n]["mean"]) for n in names], [max(float(stats[n]["std"]), 1e-6) for n in names]


def read_pairs(manifest: Manifest, bands: list[str], hr_bands: list[str], indices: list[int]) -> Pairs:
    """The complete pairs among ``indices`` (samples), read from the Zarr store and normalised."""
    import zarr

    hr_meta = manifest.raw.get("hr")
    if not hr_meta:
        raise DatasetFormatError(f"{manifest.root} has no HR layers: build it with an `hr:` section")
    if int(hr_meta["factor"]) != SCALE or any(b not in hr_meta["bands"] for b in hr_bands):
        raise DatasetFormatError(
            f"{manifest.root}: HR layers are x{hr_meta['factor']} with bands {hr_meta['bands']}; "
            f"expected x{SCALE} with {hr_bands}"
        )
    groups = {manifest.group_of(b) for b in bands}
    if len(groups) != 1 or int(manifest.raw["groups"][next(iter(groups))].get("factor", 1)) != 1:
        raise ConfigError(
            f"LR bands {bands} must all be base-resolution bands of one group (e.g. B02 B03 B04 B08)"
        )
    group = next(iter(groups))
    root: Any = zarr.open_group(str(manifest.format_path("zarr")), mode="r")
    lr_pos = [manifest.groups[group].index(b) for b in bands]
    hr_pos = [list(hr_meta["bands"]).index(b) for b in hr_bands]
    lrs, hrs = [], []
    for i in indices:
        slot = manifest.slots[i] if manifest.slots else i
        kept = np.asarray(root["time_mask"][slot])
        score = np.where(kept, np.asarray(root["valid_fraction"][slot]), -1.0)
        t = int(np.flatnonzero(score == score.max())[-1])
        lr = np.asarray(root[group][slot, t])[lr_pos].astype("f4")
        hr = np.asarray(root["hr"][slot])[hr_pos].astype("f4")
        if (lr == 0).any() or (hr == 0).any() or not np.isfinite(lr).all():
            continue  # nodata in the pair: not a complete pair
        lrs.append(lr)
        hrs.append(hr)
    if not lrs:
        raise DatasetFormatError(
            f"{manifest.root}: none of the {len(indices)} samples holds a complete LR/HR pair"
        )
    lr_stats, hr_stats = _stats(manifest, bands), _stats(manifest, [f"hr_{b}" for b in hr_bands])
    return Pairs(_normalise(np.stack(lrs), lr_stats), _normalise(np.stack(hrs), hr_stats), lr_stats, hr_stats)


def _normalise(x: np.ndarray, stats: tuple[list[float], list[float]]) -> torch.Tensor:
    mean, std = (torch.tensor(s, dtype=torch.float32)[:, None, None] for s in stats)
    return (torch.from_numpy(x) - mean) / std


class FeatureNet(nn.Module):
    """VGG-style features from a safetensors state dict of a ``features`` stack (keys ``<index>.weight``).

    Convolutions one index apart from the previous one's ReLU follow it directly; a gap of three means a max-pool
    between them (torchvision's VGG numbering), so ``vgg16().features.state_dict()`` saved with safetensors works.
    """

    def __init__(self, path: str | Path, layers: int) -> None:
        super().__init__()
        from safetensors.torch import load_file

        state = load_file(str(path))
        convs = sorted({int(k.split(".")[0]) for k in state if k.endswith(".weight")})[:layers]
        if not convs:
            raise ConfigError(f"{path} holds no '<index>.weight' tensors of a VGG-style features stack")
        modules: list[nn.Module] = []
        for n, idx in enumerate(convs):
            if n and idx - convs[n - 1] > 2:
                modules.append(nn.MaxPool2d(2))
            weight = state[f"{idx}.weight"]
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
            conv.load_state_dict({"weight": weight, "bias": state[f"{idx}.bias"]})
            modules += [conv, nn.ReLU()]
        self.net = nn.Sequential(*modules).requires_grad_(False).eval()
        self.channels = int(state[f"{convs[0]}.weight"].shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:  # e.g. 4 bands into an RGB network: the first three
            x = (
                x[:, : self.channels]
                if x.shape[1] > self.channels
                else x.repeat(1, self.channels, 1, 1)[:, : self.channels]
            )
        return self.net(x)


def sr_output_facts(manifest: Manifest, hr_bands: list[str]) -> dict[str, Any]:
    """The ``mlm:output`` facts of an SR package: the HR bands it writes, the scale and their z-score."""
    mean, std = _stats(manifest, [f"hr_{b}" for b in hr_bands])
    return {
        "eoshard:bands": list(hr_bands), "eoshard:scale": SCALE,
        "eoshard:value_scaling": [{"type": "z-score", "mean": m, "stddev": s} for m, s in zip(mean, std, strict=True)],
    }  # fmt: skip


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM (Gaussian window 11, sigma 1.5, the Wang et al. constants) of (N, C, H, W) images."""
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    window = (g / g.sum())[:, None] * (g / g.sum())[None, :]
    c = a.shape[1]
    w = window.expand(c, 1, 11, 11).to(a.dtype)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float) -> float:
    return float(10 * torch.log10(data_range**2 / F.mse_loss(a, b)))


def evaluate_pairs(package_dir: str | Path, dataset: str | Path, split: str = "val") -> dict[str, float]:
    """PSNR and SSIM of the package's SR and of bicubic upsampling (radiometrically matched) against the HR."""
    from eoshard.training.data import split_indices
    from eoshard.training.package import load

    package = load(package_dir)
    manifest = Manifest.read(dataset)
    hr_bands = package.out_bands or package.bands
    pairs = read_pairs(manifest, package.bands, hr_bands, split_indices(manifest, split))
    mean, std = (torch.tensor(s, dtype=torch.float64)[:, None, None] for s in pairs.hr_stats)
    stats = manifest.raw["statistics"]
    top = max(float(stats[f"hr_{b}"]["max"]) for b in hr_bands)
    data_range = 255.0 if top <= 255 else top

    def values(x: torch.Tensor) -> torch.Tensor:
        return (x.double() * std + mean).clamp(0, data_range)

    with torch.no_grad():
        sr = values(package.model(pairs.lr))
    bicubic = values(F.interpolate(pairs.lr, scale_factor=SCALE, mode="bicubic", align_corners=False))
    hr = values(pairs.hr)
    return {
        "pairs": float(len(hr)), "psnr": psnr(sr, hr, data_range), "ssim": float(ssim(sr, hr, data_range)),
        "bicubic_psnr": psnr(bicubic, hr, data_range), "bicubic_ssim": float(ssim(bicubic, hr, data_range)),
    }  # fmt: skip
