"""One entry point to find products: ``search`` over a static source (the API sources join it later)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pystac
import shapely

from eoshard.catalog.errors import EmptySelectionError
from eoshard.catalog.static import matches, read_static_items


def search(
    source: Path | str,
    *,
    area: shapely.Geometry,
    start: date | datetime | str,
    end: date | datetime | str,
    collection: str | None = None,
    max_cloud: float | None = None,
) -> pystac.ItemCollection:
    """Products of ``source`` that intersect ``area`` (EPSG:4326), lie in ``[start, end]`` and are clear enough.

    Items come sorted by (datetime, id), so the same inputs always give the same order.
    Raises ``EmptySelectionError`` when nothing matches.
    """
    found = [item for item in read_static_items(source, collection) if matches(item, area, start, end, max_cloud)]
    if not found:
        cloud = "" if max_cloud is None else f" with eo:cloud_cover <= {max_cloud:g}%"
        raise EmptySelectionError(
            f"no product{' of collection ' + repr(collection) if collection else ''} in {source} intersects the "
            f"AOI (bounds {tuple(round(v, 5) for v in area.bounds)}, EPSG:4326) between {start} and {end}{cloud}: "
            "check the AOI and its CRS, widen the period or raise max_cloud"
        )
    found.sort(key=lambda item: (item.datetime or datetime.min, item.id))
    return pystac.ItemCollection(found, clone_items=False)
