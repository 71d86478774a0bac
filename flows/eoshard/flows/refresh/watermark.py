"""What a refresh has to add: acquisitions newer than a dataset's watermark, and reprocessed products of its dates.

The watermark is the newest acquisition a dataset holds, read from its manifest (``dataset.json``: ``dates`` as
``YYYY-MM-DDTHH:MM:SS`` UTC and ``products``, the ids of the products it was built from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pystac

from eoshard.catalog.errors import EmptySelectionError
from eoshard.flows.config import BuildConfig
from eoshard.flows.errors import FlowsError


class ManifestError(FlowsError, ValueError):
    """A dataset manifest that does not say what the dataset holds."""


def _acquired(item: pystac.Item) -> datetime:
    """An item's acquisition time in UTC, to the second as the manifest stores it."""
    if item.datetime is None:
        raise ManifestError(f"item {item.id} has no datetime: a refresh cannot place it in time")
    when = item.datetime if item.datetime.tzinfo else item.datetime.replace(tzinfo=UTC)
    return when.astimezone(UTC).replace(microsecond=0)


def watermark(manifest: Mapping[str, Any]) -> datetime:
    """The newest acquisition (UTC) a dataset holds."""
    dates = manifest.get("dates")
    if not dates:
        raise ManifestError(
            f"the manifest of dataset {manifest.get('name')!r} lists no dates (got {dates!r}): "
            "it is not a finished build; build it again before refreshing"
        )
    try:
        return max(datetime.fromisoformat(d).replace(tzinfo=UTC) for d in dates)
    except (TypeError, ValueError) as err:
        raise ManifestError(f"manifest dates must be YYYY-MM-DDTHH:MM:SS strings, got {dates!r}") from err


def newer_items(items: Iterable[pystac.Item], mark: datetime) -> list[pystac.Item]:
    """Items acquired after ``mark`` (compared to the second, as the manifest stores dates)."""
    return [item for item in items if _acquired(item) > mark]


def reprocessed_items(items: Iterable[pystac.Item], manifest: Mapping[str, Any]) -> list[pystac.Item]:
    """Items of dates the dataset holds that are not among its products (a newer processing baseline)."""
    held = {datetime.fromisoformat(d).replace(tzinfo=UTC) for d in manifest.get("dates", [])}
    known = set(manifest.get("products", []))
    return [item for item in items if _acquired(item) in held and item.id not in known]


def search_newer(config: BuildConfig, mark: datetime) -> list[pystac.Item]:
    """Search the config's catalog for acquisitions after ``mark`` up to the end of its period; [] when none."""
    from eoshard.flows.build import search_products

    if mark.date() > config.period.end:
        return []
    # the catalog filters by day; the exact cut is below
    narrowed = config.model_copy(update={"period": config.period.model_copy(update={"start": mark.date()})})
    try:
        found = search_products(narrowed)
    except EmptySelectionError:
        return []
    return newer_items(found, mark)
