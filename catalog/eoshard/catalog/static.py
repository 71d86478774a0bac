"""Search a static STAC catalog, ItemCollection or FeatureCollection file, in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pystac
import shapely
from shapely.geometry import shape

from eoshard.catalog.errors import InvalidSourceError, SourceNotFoundError


def _load_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SourceNotFoundError(
            f"catalog source {path} does not exist: expected a STAC catalog.json, an ItemCollection or a "
            "FeatureCollection file; check the path (relative paths are relative to the config file)"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidSourceError(f"catalog source {path} is not valid JSON ({err}): expected STAC JSON") from err
    if not isinstance(data, dict):
        raise InvalidSourceError(f"catalog source {path} holds a JSON {type(data).__name__}, expected an object")
    return data


def item_from_dict(data: dict[str, Any]) -> pystac.Item:
    """An item as the source wrote it: pystac's extension migrations are skipped, so ``proj:epsg`` and older
    extension fields stay where records and stackstac look for them."""
    return pystac.Item.from_dict(data, preserve_dict=False, migrate=False)


def read_static_items(source: Path | str, collection: str | None = None) -> Iterator[pystac.Item]:
    """All items of a static source, optionally only those of one collection.

    ``source`` is a ``catalog.json``/``collection.json`` (children are walked) or an
    ItemCollection/FeatureCollection file.
    """
    path = Path(source)
    data = _load_json(path)
    kind = data.get("type")
    if kind == "FeatureCollection":
        for item in map(item_from_dict, data.get("features", [])):
            if collection is None or item.collection_id == collection:
                yield item
        return
    if kind not in ("Catalog", "Collection"):
        raise InvalidSourceError(
            f"catalog source {path} has type {kind!r}: expected 'Catalog', 'Collection' or 'FeatureCollection'"
        )
    root = pystac.read_file(str(path.resolve()))
    assert isinstance(root, pystac.Catalog)
    for item in root.get_items(recursive=True):
        if collection is None or item.collection_id == collection:
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
