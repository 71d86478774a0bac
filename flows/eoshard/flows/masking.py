"""Which valid mask a build uses: ``timeseries.mask: auto`` (the default) resolves per plan.

``auto`` is ``scl`` when every selected product carries an SCL asset (under any name of the band vocabulary:
``SCL``, ``scl``, ``SCL_20m``...), else ``nodata``. The resolved choice replaces ``auto`` in the plan's config, so
the fingerprint, ``plan.json`` and ``dataset.json`` record what the build did, not what the config left open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pystac

from eoshard.flows.config import BuildConfig
from eoshard.pipeline.bands import canonical_keys
from eoshard.pipeline.masks import SCL_CLASSES


def has_scl(item: pystac.Item | Mapping[str, Any]) -> bool:
    """Whether the item carries the Sentinel-2 scene classification (under any name of the vocabulary)."""
    data = item.to_dict(transform_hrefs=False) if isinstance(item, pystac.Item) else item
    return "SCL" in canonical_keys(data.get("assets", {}))


def resolve_mask(config: BuildConfig, products: Sequence[pystac.Item | Mapping[str, Any]]) -> BuildConfig:
    """``config`` with ``timeseries.mask: auto`` resolved on ``products``; an explicit choice is kept."""
    requested = config.timeseries.mask
    if requested == "auto":
        config = with_mask(config, "scl" if products and all(has_scl(p) for p in products) else "nodata")
    logging.getLogger(__name__).info(mask_note(requested, config.timeseries.model_dump()))
    return config


def with_mask(config: BuildConfig, mask: str) -> BuildConfig:
    """``config`` with ``timeseries.mask`` set to ``mask``."""
    timeseries = config.timeseries.model_copy(update={"mask": mask})
    return config.model_copy(update={"timeseries": timeseries})


def mask_note(requested: str, resolved: Mapping[str, Any]) -> str:
    """What the build masks, in one line: ``requested`` is the config's mask, ``resolved`` the plan's timeseries."""
    if resolved["mask"] == "scl":
        classes = ", ".join(f"{c} {SCL_CLASSES[c]}" for c in resolved["scl_invalid"])
        how = "by default, as the products carry SCL" if requested == "auto" else "timeseries.mask: scl"
        return f"valid mask: SCL ({how}); invalid classes: {classes}. timeseries.mask: nodata keeps them"
    if requested == "auto":
        return "valid mask: nodata only (not every product carries an SCL asset): clouds count as valid"
    return "valid mask: nodata only (timeseries.mask: nodata): clouds count as valid"
