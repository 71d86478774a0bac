"""Find Sentinel-1/2 products in STAC APIs, static catalogs and DHuS mirrors, and select the best set."""

from typing import TYPE_CHECKING, Any

import lazy_loader

if TYPE_CHECKING:
    from eoshard.catalog.dhus import search_dhus
    from eoshard.catalog.errors import CatalogError, EmptySelectionError, InvalidSourceError, SourceNotFoundError
    from eoshard.catalog.product_search import search, search_records, source_kind
    from eoshard.catalog.records import ProductRecord, record_of
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

# each public name and the module that defines it, imported when the name is first asked for (design record
# 0020): importing one module of the package, as the CLI and the shard tasks do, loads no other
_lazy_getattr, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "dhus": ["search_dhus"],
        "errors": ["CatalogError", "EmptySelectionError", "InvalidSourceError", "SourceNotFoundError"],
        "product_search": ["search", "search_records", "source_kind"],
        "records": ["ProductRecord", "record_of"],
        "selection": ["Selection", "select", "spread_dates"],
        "stac_api": [
            "ApiError",
            "ApiOptions",
            "CredentialsError",
            "UnknownCollectionError",
            "open_api",
            "search_api",
        ],
        "static": ["read_static_items"],
    },
)


def __getattr__(name: str) -> Any:
    """A public name, imported on first use; any other gets Python's wording (and its "Did you mean", from
    ``__dir__``) instead of lazy_loader's."""
    if name in __all__:
        return _lazy_getattr(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
