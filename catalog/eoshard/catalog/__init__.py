"""Find Sentinel-1/2 products in STAC APIs, static catalogs and DHuS mirrors, and select the best set."""

from eoshard.catalog.dhus import search_dhus
from eoshard.catalog.errors import CatalogError, EmptySelectionError, InvalidSourceError, SourceNotFoundError
from eoshard.catalog.records import ProductRecord, record_of
from eoshard.catalog.search import search, search_records, source_kind
from eoshard.catalog.selection import Selection, select, spread_dates
from eoshard.catalog.stac_api import (
    ApiError,
    ApiOptions,
    CredentialsError,
    UnknownCollectionError,
    open_api,
    search_api,
)
from eoshard.catalog.static import read_static_items

__all__ = [
    "ApiError",
    "ApiOptions",
    "CatalogError",
    "CredentialsError",
    "EmptySelectionError",
    "InvalidSourceError",
    "ProductRecord",
    "Selection",
    "SourceNotFoundError",
    "UnknownCollectionError",
    "open_api",
    "read_static_items",
    "record_of",
    "search",
    "search_api",
    "search_dhus",
    "search_records",
    "select",
    "source_kind",
    "spread_dates",
]
