"""Search a Copernicus DHuS / OData mirror through sentinelsat, and give its products as STAC items.

Credentials come from ``DHUS_USER`` / ``DHUS_PASSWORD`` or from ``~/.netrc`` (sentinelsat's own lookup); they never
reach logs or errors. The items carry the properties that product records read, so selection treats them like
the items of any STAC API.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import pystac
import shapely
from requests.adapters import HTTPAdapter
from sentinelsat import SentinelAPI
from sentinelsat.exceptions import SentinelAPIError, UnauthorizedError

from eoshard.catalog.errors import CatalogError
from eoshard.catalog.stac_api import ApiError, ApiOptions, CredentialsError, public_url
from eoshard.catalog.static import as_utc

# STAC-like collection names -> DHuS keywords.
COLLECTIONS: dict[str, dict[str, str]] = {
    "sentinel-1": {"platformname": "Sentinel-1"},
    "sentinel-1-grd": {"platformname": "Sentinel-1", "producttype": "GRD"},
    "sentinel-2": {"platformname": "Sentinel-2"},
    "sentinel-2-l1c": {"platformname": "Sentinel-2", "producttype": "S2MSI1C"},
    "sentinel-2-l2a": {"platformname": "Sentinel-2", "producttype": "S2MSI2A"},
}


def _keywords(collection: str | None, max_cloud: float | None) -> dict[str, Any]:
    if collection is not None and collection not in COLLECTIONS:
        raise CatalogError(f"DHuS sources know the collections {sorted(COLLECTIONS)}, not {collection!r}")
    keywords: dict[str, Any] = dict(COLLECTIONS[collection]) if collection else {}
    if max_cloud is not None:
        keywords["cloudcoverpercentage"] = (0, max_cloud)
    return keywords


def _epsg_of_tile(tile: str | None) -> int | None:
    """The UTM EPSG code of an MGRS tile such as ``32UQU`` (bands N..X are north)."""
    if not tile or len(tile) < 3 or not tile[:2].isdigit():
        return None
    return (32600 if tile[2].upper() >= "N" else 32700) + int(tile[:2])


def item_of(uuid: str, product: Mapping[str, Any]) -> pystac.Item:
    """One DHuS product (sentinelsat's parsed OpenSearch entry) as a STAC item."""
    footprint = shapely.from_wkt(product["footprint"])
    when = product["beginposition"]
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    title = str(product.get("title", uuid))
    tile = product.get("tileid") or (
        title.split("_T")[-1][:5] if "_T" in title and title.startswith("S2") else None
    )
    properties: dict[str, Any] = {
        "platform": f"sentinel-{title[1:3].lower()}" if title[:1] == "S" else str(product.get("platformname", "")),
        "constellation": str(product.get("platformname", "")).lower(),
        "dhus:uuid": uuid,
        "dhus:size": product.get("size"),
    }
    optional = {
        "eo:cloud_cover": product.get("cloudcoverpercentage"),
        "s2:mgrs_tile": tile,
        "s2:processing_baseline": product.get("processingbaseline"),
        "s2:product_type": product.get("producttype") if title.startswith("S2") else None,
        "sar:product_type": product.get("producttype") if title.startswith("S1") else None,
        "s2:datatake_id": product.get("s2datatakeid"),
        "s1:datatake_id": product.get("missiondatatakeid") if title.startswith("S1") else None,
        "sat:relative_orbit": product.get("relativeorbitnumber"),
        "sat:orbit_state": str(product["orbitdirection"]).lower() if product.get("orbitdirection") else None,
        "proj:epsg": _epsg_of_tile(tile),
    }
    properties.update({k: v for k, v in optional.items() if v is not None})
    item = pystac.Item(
        id=title,
        geometry=shapely.geometry.mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=when,
        properties=properties,
    )
    if product.get("link"):
        item.add_asset(
            "product", pystac.Asset(href=str(product["link"]), media_type="application/zip", roles=["data"])
        )
    return item


def search_dhus(
    url: str,
    *,
    area: shapely.Geometry,
    start: date | datetime | str,
    end: date | datetime | str,
    collection: str | None = None,
    max_cloud: float | None = None,
    options: ApiOptions | None = None,
) -> list[pystac.Item]:
    """Products of the DHuS mirror at ``url`` (its ``.../apihub/`` or ``.../dhus/`` root) intersecting ``area``."""
    options = options or ApiOptions()
    api = SentinelAPI(
        os.environ.get("DHUS_USER"), os.environ.get("DHUS_PASSWORD"), api_url=url, show_progressbars=False,
        timeout=options.retry.timeout,
    )  # fmt: skip
    adapter = HTTPAdapter(max_retries=options.retry.urllib3_retry())
    api.session.mount("http://", adapter)
    api.session.mount("https://", adapter)
    api.page_size = min(options.page_size, 100)
    window = (as_utc(start, end=False), as_utc(end, end=True))
    try:
        products = api.query(area=shapely.to_wkt(area, rounding_precision=6), date=window,
                             **_keywords(collection, max_cloud))  # fmt: skip
    except UnauthorizedError as err:
        raise CredentialsError(
            f"the DHuS mirror at {public_url(url)} refused the credentials (HTTP 401): set DHUS_USER and "
            "DHUS_PASSWORD or an entry in ~/.netrc for its host"
        ) from err
    except SentinelAPIError as err:
        status = getattr(err.response, "status_code", None)
        raise ApiError(
            f"the DHuS mirror at {public_url(url)} failed (HTTP {status}): {err.msg[:300]}; check the URL and "
            "the query, or try again later"
        ) from err
    except OSError as err:
        raise ApiError(
            f"the DHuS mirror at {public_url(url)} could not be reached: {err}; check the URL (the mirror's root, "
            "e.g. https://host/dhus) and the network, or try again later"
        ) from err
    return [item_of(uuid, product) for uuid, product in products.items()]
