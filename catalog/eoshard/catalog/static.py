"""Search a static STAC catalog, ItemCollection or FeatureCollection file, in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pystac
import requests
import shapely
from shapely.geometry import shape

from eoshard.catalog.errors import EmptySelectionError, InvalidSourceError, SourceNotFoundError
from eoshard.catalog.records import bbox_bounds


def is_url(source: Path | str) -> bool:
    return str(source).startswith(("http://", "https://"))


def _load_json(source: Path | str) -> dict[str, Any]:
    """The JSON object of a static source: a local file, or an http(s) URL (read with pystac's ``StacIO``)."""
    if is_url(source):
        try:
            response = requests.get(str(source), timeout=60)
            response.raise_for_status()
            text: str | bytes = response.content
        except requests.RequestException as err:
            raise SourceNotFoundError(
                f"catalog source {source} could not be read ({err}): expected a STAC catalog.json, an "
                "ItemCollection or a FeatureCollection at that URL; check the URL and that this machine reaches it"
            ) from err
    else:
        path = Path(source)
        if not path.exists():
            raise SourceNotFoundError(
                f"catalog source {path} does not exist: expected a STAC catalog.json, an ItemCollection or a "
                "FeatureCollection file; check the path (relative paths are relative to the config file)"
            )
        if not path.is_file():
            raise InvalidSourceError(
                f"catalog source {path} is a folder: expected its catalog.json, an ItemCollection or a "
                "FeatureCollection file"
            )
        text = path.read_bytes()
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidSourceError(f"catalog source {source} is not valid JSON ({err}): expected STAC JSON") from err
    if not isinstance(data, dict):
        raise InvalidSourceError(f"catalog source {source} holds a JSON {type(data).__name__}, expected an object")
    return data


def item_from_dict(data: dict[str, Any]) -> pystac.Item:
    """An item as the source wrote it: pystac's extension migrations are skipped, so ``proj:epsg`` and older
    extension fields stay where records and stackstac look for them."""
    return pystac.Item.from_dict(data, preserve_dict=False, migrate=False)


def _problem(data: Any) -> str | None:
    """What makes ``data`` unusable as a STAC Item here, or None."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if not isinstance(data.get("id"), str) or not data["id"]:
        return "no string 'id'"
    props, assets = data.get("properties"), data.get("assets", {})
    if not isinstance(props, dict):
        return "no 'properties' object"
    if not isinstance(assets, dict) or not all(
        isinstance(a, dict) and isinstance(a.get("href"), str) for a in assets.values()
    ):
        return "'assets' is not an object of assets with string hrefs"
    if not isinstance(data.get("links", []), list) or not all(
        isinstance(link, dict) and isinstance(link.get("href"), str) for link in data.get("links", [])
    ):
        return "'links' is not a list of links with string hrefs"
    geometry = data.get("geometry")
    if geometry is not None:
        try:
            footprint = shape(geometry)
        except Exception as err:  # shapely raises many kinds for a malformed GeoJSON geometry
            return f"its geometry is not GeoJSON ({type(err).__name__}: {str(err)[:80]})"
        if not footprint.is_empty and not _degrees(footprint.bounds):
            return f"its geometry's bounds {_rounded(footprint.bounds)} are not longitude and latitude in degrees"
    bbox = data.get("bbox")
    if bbox is not None and (
        not isinstance(bbox, list) or len(bbox) not in (4, 6) or not all(_number(v) for v in bbox)
    ):
        return "its 'bbox' is not a list of 4 or 6 numbers"
    if bbox is not None and not _degrees(bbox_bounds(bbox)):
        return f"its 'bbox' {bbox!r} is not longitude and latitude in degrees"
    cloud = props.get("eo:cloud_cover")
    if cloud is not None and not _number(cloud):
        return f"its eo:cloud_cover {cloud!r} is not a number"
    for key in ("s2:nodata_pixel_percentage", "sat:relative_orbit"):  # what product records read as numbers
        value = props.get(key)
        if value is not None and not _number(value):
            return f"its {key} {value!r} is not a number"
    for key in ("mgrs:utm_zone", "sentinel:utm_zone", "landsat:wrs_path", "landsat:wrs_row"):  # the tile's parts
        value = props.get(key)
        if value is not None and not _integer(value):
            return f"its {key} {value!r} is not an integer"
    for where, fields in [("properties", props), *((f"asset {name!r}", a) for name, a in assets.items())]:
        epsg = fields.get("proj:epsg")
        if epsg is not None and not (_number(epsg) and float(epsg).is_integer()):
            return f"the proj:epsg {epsg!r} of its {where} is not an EPSG code (an integer)"
        code = fields.get("proj:code")  # pystac's migration writes proj:epsg [32632] as "EPSG:[32632]"
        if code is not None and not (
            isinstance(code, str) and (not code.upper().startswith("EPSG:") or code[5:].isdigit())
        ):
            return (
                f"the proj:code {code!r} of its {where} is not a CRS code such as 'EPSG:32632' "
                "(pystac reads a proj:epsg so)"
            )
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = props.get(key)
        if value is not None and not _timestamp(value):
            return f"its {key} {value!r} is not an RFC 3339 timestamp"
    if props.get("datetime") is None and props.get("start_datetime") is None:
        return "it has neither datetime nor start_datetime"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _degrees(bounds: tuple[float, ...]) -> bool:
    """Whether ``(minx, miny, maxx, maxy)`` can be longitude and latitude (STAC's WGS 84): latitudes within 90
    degrees, longitudes within 360 (a footprint across the antimeridian may run past 180)."""
    minx, miny, maxx, maxy = bounds
    return -360 <= minx <= 360 and -360 <= maxx <= 360 and -90 <= miny <= maxy <= 90


def _rounded(bounds: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(v, 5) for v in bounds)


def _integer(value: Any) -> bool:
    """A whole number, or its digits as text (``int`` reads both)."""
    return (_number(value) and float(value).is_integer()) or (isinstance(value, str) and value.strip().isdigit())


def _timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def checked_item(data: Any, where: str, what_to_do: str = "fix or drop that item") -> pystac.Item:
    """``data`` as an item, or an ``InvalidSourceError`` naming ``where``, what is wrong with it and ``what_to_do``."""
    problem = _problem(data)
    if problem is None:
        try:
            return item_from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError, pystac.STACError, pystac.STACTypeError) as err:
            problem = f"pystac cannot read it ({type(err).__name__}: {str(err)[:120]})"
    raise _refusal(where, problem, what_to_do)


def _refusal(where: str, problem: str, what_to_do: str = "fix or drop that item") -> InvalidSourceError:
    return InvalidSourceError(
        f"{where} is not a usable STAC Item: {problem}. Expected a Feature with id, geometry, properties "
        f"(datetime) and assets as the STAC Item spec describes; {what_to_do}"
    )


def read_static_items(source: Path | str, collection: str | None = None) -> Iterator[pystac.Item]:
    """All items of a static source, optionally only those of one collection.

    ``source`` is a ``catalog.json``/``collection.json`` (children are walked) or an
    ItemCollection/FeatureCollection file, a local path or an http(s) URL. A source with no item (of
    ``collection``) is an ``EmptySelectionError`` that names the collections it holds.
    """
    name = str(source) if is_url(source) else str(Path(source))
    seen: dict[str | None, int] = {}
    for item in _all_items(source, name):
        seen[item.collection_id] = seen.get(item.collection_id, 0) + 1
        if collection is None or item.collection_id == collection:
            yield item
    if collection is None and not seen:
        raise EmptySelectionError(f"catalog source {name} holds no STAC items: expected at least one")
    if collection is not None and collection not in seen:
        held = ", ".join(f"{c!r} ({n})" for c, n in sorted(seen.items(), key=lambda kv: str(kv[0])))
        raise EmptySelectionError(
            f"catalog source {name} holds no item of collection {collection!r}; its items are of "
            f"{held or 'no collection at all'}: give one of those, or no collection"
        )


def _all_items(source: Path | str, name: str) -> Iterator[pystac.Item]:
    data = _load_json(source)
    kind = data.get("type")
    if kind == "FeatureCollection":
        features = data.get("features", [])
        if not isinstance(features, list):
            raise InvalidSourceError(
                f"catalog source {name}: 'features' is a JSON {type(features).__name__}, expected a list of STAC Items"
            )
        for n, feature in enumerate(features):
            yield checked_item(feature, f"feature {n} of {name}")
        return
    if kind not in ("Catalog", "Collection"):
        raise InvalidSourceError(
            f"catalog source {name} has type {kind!r}: expected 'Catalog', 'Collection' or 'FeatureCollection'"
        )
    root = pystac.read_file(name if is_url(source) else str(Path(source).resolve()))
    assert isinstance(root, pystac.Catalog)
    walk = root.get_items(recursive=True)
    while True:
        try:
            item = next(walk)
        except StopIteration:
            return
        except Exception as err:  # pystac raises a bare Exception for a link it cannot read over HTTP
            raise InvalidSourceError(
                f"catalog {name}: an item or child catalog it links to cannot be read ({type(err).__name__}: "
                f"{str(err)[:160]}); expected STAC JSON at every link: fix or drop that link"
            ) from err
        problem = _problem(item.to_dict(include_self_link=False, transform_hrefs=False))
        if problem is not None:
            raise _refusal(f"item {item.id!r} ({item.get_self_href()}) of catalog {name}", problem)
        yield item


def as_utc(value: date | datetime | str, end: bool) -> datetime:
    """A naive UTC datetime; a bare date covers the whole day."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return datetime.combine(value, time.max if end else time.min)


def matches(
    item: pystac.Item,
    area: shapely.Geometry,
    start: date | datetime | str,
    end: date | datetime | str,
    max_cloud: float | None,
) -> bool:
    """The filter a STAC API applies for ``intersects``, ``datetime`` and ``eo:cloud_cover <= max_cloud``."""
    if item.geometry is None or not shape(item.geometry).intersects(area):
        return False
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        return False
    if not as_utc(start, end=False) <= as_utc(when, end=False) <= as_utc(end, end=True):
        return False
    if max_cloud is not None:
        cloud = item.properties.get("eo:cloud_cover")
        if cloud is None or float(cloud) > max_cloud:
            return False
    return True
