"""Which bands and valid mask a build uses, resolved per plan on the selected products.

``timeseries.mask: auto`` (the default) is ``scl`` when every selected product carries an SCL asset (under any
name of the band vocabulary: ``SCL``, ``scl``, ``SCL_20m``...), ``qa_pixel`` when every one is a Landsat scene
with a ``qa_pixel`` asset, else ``nodata``. Landsat products name their bands as Landsat does (``red``,
``nir08``). The resolved choices replace the config's in the plan's config, so the fingerprint, ``plan.json`` and
``dataset.json`` record what the build did, not what the config left open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pystac

from eoshard.flows.config import BuildConfig, ConfigError
from eoshard.pipeline.bands import canonical_keys
from eoshard.pipeline.errors import BandError
from eoshard.pipeline.items import stackstac_ready
from eoshard.pipeline.landsat import QA_BAND, QA_PIXEL_BITS, landsat_bands
from eoshard.pipeline.scl import SCL_CLASSES
from eoshard.pipeline.sensors import LS, item_sensor, sensor_bands


def has_scl(item: pystac.Item | Mapping[str, Any]) -> bool:
    """Whether the item carries the Sentinel-2 scene classification (under any name of the vocabulary)."""
    data = item.to_dict(transform_hrefs=False) if isinstance(item, pystac.Item) else item
    return "SCL" in canonical_keys(data.get("assets", {}))


def is_landsat_with_qa(item: pystac.Item | Mapping[str, Any]) -> bool:
    """Whether the item is a Landsat scene carrying ``qa_pixel`` (or ``QA_PIXEL``)."""
    data = stackstac_ready(item)
    return item_sensor(data) == LS and QA_BAND in data["assets"]


def resolve_bands(config: BuildConfig, products: Sequence[pystac.Item | Mapping[str, Any]]) -> BuildConfig:
    """``config`` with its bands as the products' sensor names them: Landsat's (``B04``, ``red``, ``SR_B4`` ->
    ``red``) for Landsat scenes; a Sentinel-2 config's bands are kept as they are."""
    if not products:
        return config
    bands = tuple(sensor_bands([stackstac_ready(p) for p in products], config.bands))
    return config if bands == config.bands else config.model_copy(update={"bands": bands})


def with_landsat_bands(config: BuildConfig, built: Sequence[str]) -> BuildConfig:
    """``config`` with Landsat's names of its bands when they are ``built``, a Landsat build's resolved bands
    (``B04`` -> ``red``); else ``config`` unchanged."""
    try:
        bands = tuple(landsat_bands(config.bands))
    except BandError:
        return config
    return config.model_copy(update={"bands": bands}) if list(bands) == list(built) else config


def resolve_mask(config: BuildConfig, products: Sequence[pystac.Item | Mapping[str, Any]]) -> BuildConfig:
    """``config`` with ``timeseries.mask: auto`` resolved on ``products``; an explicit choice is kept, and refused
    where the products lack its source (``scl`` of Landsat scenes, ``qa_pixel`` of other products)."""
    requested = config.timeseries.mask
    if requested == "auto":
        if products and all(has_scl(p) for p in products):
            config = with_mask(config, "scl")
        elif products and all(is_landsat_with_qa(p) for p in products):
            config = with_mask(config, "qa_pixel")
        else:
            config = with_mask(config, "nodata")
    elif requested == "qa_pixel" and not all(is_landsat_with_qa(p) for p in products):
        lacking = [str(stackstac_ready(p).get("id")) for p in products if not is_landsat_with_qa(p)]
        raise ConfigError(
            f"timeseries.mask: qa_pixel needs Landsat scenes with a qa_pixel asset, but {len(lacking)} product(s) "
            f"are not (e.g. {lacking[0]}): use mask: scl for Sentinel-2 L2A, or nodata"
        )
    elif requested == "scl" and any(item_sensor(stackstac_ready(p)) == LS for p in products):
        raise ConfigError(
            "timeseries.mask: scl reads the Sentinel-2 scene classification, but the products are Landsat scenes: "
            "use mask: qa_pixel (or auto) for their QA_PIXEL cloud bits, or nodata"
        )
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
    if resolved["mask"] == "qa_pixel":
        bits = ", ".join(f"bit {QA_PIXEL_BITS[b]} {b.replace('_', ' ')}" for b in resolved["qa_pixel_invalid"])
        how = "by default, as the products carry qa_pixel" if requested == "auto" else "timeseries.mask: qa_pixel"
        return f"valid mask: Landsat QA_PIXEL ({how}); invalid bits: {bits}. timeseries.mask: nodata keeps them"
    if requested == "auto":
        return (
            "valid mask: nodata only (not every product carries an SCL asset, nor qa_pixel): clouds count as valid"
        )
    return "valid mask: nodata only (timeseries.mask: nodata): clouds count as valid"
