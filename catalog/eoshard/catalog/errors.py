"""Errors of the catalog portion: each says what was expected, what came, and what to do."""

from __future__ import annotations


class CatalogError(Exception):
    """Base of every error raised by ``eoshard.catalog``."""


class SourceNotFoundError(CatalogError, FileNotFoundError):
    """A catalog source (file, folder or URL) does not exist or cannot be reached."""


class InvalidSourceError(CatalogError, ValueError):
    """A catalog source exists but is not a STAC catalog, ItemCollection or FeatureCollection."""


class EmptySelectionError(CatalogError, LookupError):
    """No product matches the area, period and filters."""


class InvalidQueryError(CatalogError, ValueError):
    """A search or selection asks for something impossible: a period ending before it starts, a limit out of range."""
