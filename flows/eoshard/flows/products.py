"""The products a job works on: a saved selection when the config names one, else a search of its catalog
narrowed by the same selection rules as ``eoshard select`` (``select_products``)."""

from __future__ import annotations

import logging
import os

import pystac
import shapely

from eoshard.catalog import Selection, search, select
from eoshard.catalog.stac_api import ApiOptions
from eoshard.catalog.static import read_static_items
from eoshard.flows.config import BuildConfig, CatalogConfig, ConfigError
from eoshard.flows.signing import modifier_of


def api_options(catalog: CatalogConfig) -> ApiOptions:
    """How to talk to the config's API; header values are read from the environment, never from the file."""
    headers = {}
    for header, variable in catalog.headers_from_env.items():
        if variable not in os.environ:
            raise ConfigError(
                f"catalog.headers_from_env: {header} should come from the environment variable {variable}, "
                "which is not set: export it, or remove the header"
            )
        headers[header] = os.environ[variable]
    return ApiOptions(
        page_size=catalog.page_size,
        headers=headers,
        modifier=modifier_of(catalog.modifier),
    )


def find_products(config: BuildConfig, area_4326: shapely.Geometry) -> pystac.ItemCollection:
    """The saved selection (``catalog.selection``) as it was reviewed, or what the catalog search finds."""
    if config.catalog.selection is not None:
        items = list(read_static_items(config.catalog.selection))
        modifier = api_options(config.catalog).modifier
        for item in items:  # saved without signatures: sign them again
            if modifier is not None:
                modifier(item)
        return pystac.ItemCollection(items, clone_items=False)
    return search(
        config.catalog.source,
        area=area_4326,
        start=config.period.start,
        end=config.period.end,
        collection=config.catalog.collection,
        max_cloud=config.catalog.max_cloud,
        kind=config.catalog.kind,
        options=api_options(config.catalog),
    )


def apply_selection(config: BuildConfig, items: list[pystac.Item], area_4326: shapely.Geometry) -> Selection:
    """The selection rules of ``eoshard select`` with the config's AOI, period and cloud limit."""
    return select(items, area_4326, config.period.start, config.period.end, max_cloud=config.catalog.max_cloud,
                  min_aoi_coverage=config.catalog.min_aoi_coverage, exclude=config.catalog.exclude)  # fmt: skip


def select_products(config: BuildConfig, area_4326: shapely.Geometry) -> pystac.ItemCollection:
    """What the build uses: the saved selection as it was reviewed, else the search narrowed by the rules of
    ``eoshard select`` (reprocessed copies, tiles the AOI does not need and products off the AOI left out), so
    that ``select`` and ``build`` agree on the same config; never a product ``catalog.exclude`` names."""
    found = list(find_products(config, area_4326))
    unknown_exclusions(config.catalog.exclude, [i.id for i in found])
    return pystac.ItemCollection(chosen_products(config, found, area_4326), clone_items=False)


def chosen_products(
    config: BuildConfig, found: list[pystac.Item], area_4326: shapely.Geometry
) -> list[pystac.Item]:
    """Of ``found`` (the search's or saved selection's products), those the build uses, in their order: all of a
    saved selection, else those the rules of ``eoshard select`` keep; none that ``catalog.exclude`` names."""
    if config.catalog.selection is not None:
        return [i for i in found if i.id not in config.catalog.exclude]
    ids = {i.id for i in apply_selection(config, found, area_4326).items}
    return [i for i in found if i.id in ids]


def unknown_exclusions(exclude: list[str], found: list[str]) -> None:
    """Warn of ids in ``catalog.exclude`` that ``found`` (the ids a search or saved selection holds) lacks: a typo
    would leave the product in."""
    missing = sorted(set(exclude) - set(found))
    if missing:
        logging.getLogger(__name__).warning(
            "%d id(s) to exclude match none of the %d products found (%s): check the ids",
            len(missing),
            len(found),
            ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
        )
