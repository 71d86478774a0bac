"""Find Sentinel-1/2 products in STAC APIs, static catalogs and DHuS mirrors, and select the best set."""

from eoshard.catalog.errors import CatalogError, EmptySelectionError, InvalidSourceError, SourceNotFoundError
from eoshard.catalog.records import ProductRecord, record_of
from eoshard.catalog.search import search, search_records
from eoshard.catalog.selection import Selection, select, spread_dates
from eoshard.catalog.static import read_static_items

__all__ = [
    "CatalogError",
    "EmptySelectionError",
    "InvalidSourceError",
    "ProductRecord",
    "Selection",
    "SourceNotFoundError",
    "read_static_items",
    "record_of",
    "search",
    "search_records",
    "select",
    "spread_dates",
]
