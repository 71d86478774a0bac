"""Find Sentinel-1/2 products in STAC APIs, static catalogs and DHuS mirrors, and select the best set."""

from eoshard.catalog.errors import CatalogError, EmptySelectionError, InvalidSourceError, SourceNotFoundError
from eoshard.catalog.search import search
from eoshard.catalog.selection import Selection, select, spread_dates
from eoshard.catalog.static import read_static_items

__all__ = [
    "CatalogError",
    "EmptySelectionError",
    "InvalidSourceError",
    "Selection",
    "SourceNotFoundError",
    "read_static_items",
    "search",
    "select",
    "spread_dates",
]
