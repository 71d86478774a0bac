"""One entry point to find products: ``search`` over a STAC API, a static catalog or file, or a DHuS mirror."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import pystac
import shapely

from eoshard.catalog.errors import EmptySelectionError, InvalidSourceError
from eoshard.catalog.records import ProductRecord, record_of
from eoshard.catalog.stac_api import ApiOptions, public_url, search_api
from eoshard.catalog.static import is_url, matches, read_static_items

SourceKind = Literal["auto", "stac-api", "static", "dhus"]


def source_kind(source: Path | str, kind: SourceKind = "auto") -> SourceKind:
    """``auto``: an http(s) URL ending in ``.json`` is a static file, any other URL a STAC API, a path static."""
    if kind != "auto":
        return kind
    if is_url(source):
        return "static" if str(source).split("?")[0].endswith((".json", ".geojson")) else "stac-api"
    return "static"


def search(
    source: Path | str,
    *,
    area: shapely.Geometry,
    start: date | datetime | str,
    end: date | datetime | str,
    collection: str | None = None,
    max_cloud: float | None = None,
    kind: SourceKind = "auto",
    options: ApiOptions | None = None,
) -> pystac.ItemCollection:
    """Products of ``source`` that intersect ``area`` (EPSG:4326), lie in ``[start, end]`` and are clear enough.

    Every kind of source applies the same filters (a STAC API on the server, the others in process), and items
    come sorted by (datetime, id), so the same inputs always give the same order.
    Raises ``EmptySelectionError`` when nothing matches.
    """
    options = options or ApiOptions()
    resolved = source_kind(source, kind)
    if resolved in ("stac-api", "dhus") and not is_url(source):
        raise InvalidSourceError(
            f"{source} is not an http(s) URL, and a {resolved} source is one (its root URL); a catalog or "
            "ItemCollection file is a static source (kind static, or auto)"
        )
    match resolved:
        case "stac-api":
            found = list(
                search_api(
                    str(source), area=area, start=start, end=end, collection=collection, max_cloud=max_cloud,
                    options=options,
                ).items
            )  # fmt: skip
        case "dhus":
            from eoshard.catalog.dhus import search_dhus

            found = search_dhus(str(source), area=area, start=start, end=end, collection=collection,
                                max_cloud=max_cloud, options=options)  # fmt: skip
        case _:
            items = read_static_items(source, collection)
            found = [item for item in items if matches(item, area, start, end, max_cloud)]
            if options.modifier is not None:  # a static catalog of signed storage: signed as an API's items are
                for item in found:
                    options.modifier(item)
    if not found:
        cloud = "" if max_cloud is None else f" with eo:cloud_cover <= {max_cloud:g}%"
        where = public_url(str(source)) if is_url(source) else str(source)
        raise EmptySelectionError(
            f"no product{' of collection ' + repr(collection) if collection else ''} in {where} intersects the "
            f"AOI (bounds {tuple(round(v, 5) for v in area.bounds)}, EPSG:4326) between {start} and {end}{cloud}: "
            "check the AOI and its CRS, widen the period or raise max_cloud"
        )
    found.sort(key=lambda item: (item.datetime or datetime.min, item.id))
    return pystac.ItemCollection(found, clone_items=False)


def search_records(source: Path | str, **query: Any) -> list[ProductRecord]:
    """``search``, as normalised product records (platform, tile, orbit, baseline, cloud, footprint, EPSG, ...)."""
    return [record_of(item) for item in search(source, **query)]
