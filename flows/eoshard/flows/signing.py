"""Signing a build's items again when the store refuses their signatures in the middle of the build.

Signed URLs expire (Planetary Computer's SAS tokens within hours): a build that outlives them would see its later
shards refused. The driver then removes each signature, as a saved selection does, and calls the modifier of the
product's source again (``catalog.modifier``, ``s1.modifier``, ``hr.modifier``), which signs with a fresh token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pystac

from eoshard.catalog.credentials import redact_text, unsigned_item_dict
from eoshard.catalog.stac_api import import_callable
from eoshard.flows.errors import FlowsError
from eoshard.pipeline.sensors import S1, item_sensor

if TYPE_CHECKING:
    from eoshard.flows.build import BuildPlan
    from eoshard.flows.config import BuildConfig


class SigningError(FlowsError):
    """The modifier failed while a build signed its products again (its token service unreachable, ...)."""


def can_sign_again(plan: BuildPlan) -> bool:
    """Whether ``signed_again`` can help: the config names a modifier and the shard tasks read the sources
    themselves (a build that reads through the cubes' graph has the hrefs in its graph)."""
    return plan.sources is not None and any(_modifiers(plan).values())


def signed_again(plan: BuildPlan) -> BuildPlan:
    """``plan`` with every asset of its products signed anew: each href without its signature, through the
    modifier of the product's source (``s1.modifier`` for Sentinel-1 when it is set: their own search; else
    ``catalog.modifier``, which signed a saved selection's Sentinel-1 products too; ``hr.modifier`` for the paired
    HR products); the products, patches and everything else unchanged."""
    assert plan.sources is not None, "see can_sign_again"
    modifiers = _modifiers(plan)
    hrefs: dict[str, str] = {}
    items = []
    for item in plan.items:
        modifier = modifiers[S1] if item_sensor(item) == S1 and modifiers[S1] else modifiers["catalog"]
        items.append(item if modifier is None else _sign(modifier, item, hrefs))
    hr = modifiers["hr"]
    hr_items = [item if hr is None else _sign(hr, item, hrefs) for item in plan.hr_items]
    return replace(plan, items=items, hr_items=hr_items, sources=plan.sources.with_hrefs(hrefs))


def modifier_of(path: str | None) -> Callable[[Any], Any] | None:
    """The function that ``package.module:function`` names, or None."""
    return import_callable(path) if path else None


def modifier_paths(config: BuildConfig) -> dict[str, str | None]:
    """The config's modifiers by the source they sign: ``catalog``, ``s1``, ``hr`` (None where not set)."""
    return {
        "catalog": config.catalog.modifier,
        S1: config.s1.modifier if config.s1 is not None else None,
        "hr": config.hr.modifier if config.hr is not None else None,
    }


def modifier_names(config: BuildConfig) -> str:
    """The config's modifiers, as messages name them."""
    paths = modifier_paths(config)
    named = [
        paths["catalog"],
        paths[S1] and f"{paths[S1]} for Sentinel-1",
        paths["hr"] and f"{paths['hr']} for HR",
    ]
    return " and ".join(n for n in named if n) or "no modifier"


def _modifiers(plan: BuildPlan) -> dict[str, Callable[[Any], Any] | None]:
    return {source: modifier_of(path) for source, path in modifier_paths(plan.config).items()}


def _sign(modifier: Callable[[Any], Any], item: dict[str, Any], hrefs: dict[str, str]) -> dict[str, Any]:
    """``item`` with fresh signatures; ``hrefs`` gets each old href -> its new one."""
    fresh = pystac.Item.from_dict(unsigned_item_dict(item), preserve_dict=False)
    try:
        modifier(fresh)
    except Exception as err:
        raise SigningError(
            f"the store refused the products' expired signatures, and signing product {item.get('id')} again failed: "
            f"{type(err).__name__}: {redact_text(str(err))}. The shards committed so far stay valid: check the "
            "modifier's service and the network, then rerun the same build to finish"
        ) from err
    assets = {}
    for key, asset in item["assets"].items():
        new = fresh.assets[key].href if key in fresh.assets else asset["href"]
        hrefs[str(asset["href"])] = new
        assets[key] = {**asset, "href": new}
    return {**item, "assets": assets}
