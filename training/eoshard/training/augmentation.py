"""Batch augmentation with kornia: geometric (rotation: image bilinear, label nearest, pixels rotated in from
outside the patch ignored) and radiometric (per-band brightness offset, contrast, Gaussian noise) on normalised
images, on the training device. Random draws come from torch's generator, so a seeded run repeats exactly."""

from __future__ import annotations

from typing import Any

import torch

from eoshard.training.config import Augmentation


def is_active(config: Augmentation) -> bool:
    return any((config.rotate, config.brightness, config.contrast, config.noise)) and config.p > 0


def build(config: Augmentation) -> Any:
    """The kornia pipeline for ``config``, or None when it changes nothing."""
    if not is_active(config):
        return None
    import kornia.augmentation as K  # noqa: N812

    ops: list[Any] = []
    if config.rotate:
        ops.append(K.RandomRotation(degrees=config.rotate, p=config.p))
    if config.contrast:
        ops.append(
            K.RandomContrast(contrast=(1 - config.contrast, 1 + config.contrast), clip_output=False, p=config.p)
        )
    if config.noise:
        ops.append(K.RandomGaussianNoise(std=config.noise, p=config.p))
    return K.AugmentationSequential(*ops, data_keys=["input", "mask", "mask"]) if ops else _Identity()


class _Identity:
    def __call__(self, *args: torch.Tensor) -> list[torch.Tensor]:
        return list(args)


def apply(pipeline: Any, config: Augmentation, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Augment ``image`` (B, T, C, H, W), ``label`` and ``ignore`` together; the dates share one transform."""
    if pipeline is None:
        return batch
    image = batch["image"]
    b, t, c, h, w = image.shape
    keep = (~batch["ignore"]).float()[:, None]
    label = batch["label"].float()[:, None]
    flat, label, keep = pipeline(image.reshape(b, t * c, h, w), label, keep)
    if config.brightness:
        draw = (torch.rand(b, 1, c, 1, 1, device=image.device) * 2 - 1) * config.brightness
        hit = (torch.rand(b, 1, 1, 1, 1, device=image.device) < config.p).float()
        flat = (flat.view(b, t, c, h, w) + draw * hit).view(b, t * c, h, w)
    out = dict(batch)
    out["image"] = flat.reshape(b, t, c, h, w) * (~batch["pad"]).view(b, t, 1, 1, 1).to(image.dtype)
    out["label"] = label[:, 0].round().long()
    out["ignore"] = keep[:, 0] < 0.5
    return out
