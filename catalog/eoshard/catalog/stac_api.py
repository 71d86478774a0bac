"""Search any STAC API through pystac-client: server-side filters, paging, retries, and errors that say what to do."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import pystac
import shapely
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from eoshard.catalog.credentials import redact_text, redact_url
from eoshard.catalog.errors import CatalogError, InvalidSourceError, SourceNotFoundError
from eoshard.catalog.retries import RetryPolicy
from eoshard.catalog.static import as_utc, checked_item

CloudFilter = Literal["auto", "cql2", "query", "client"]


class ApiError(CatalogError, ConnectionError):
    """A STAC API failed: unreachable, refused, or out of retries."""


class UnknownCollectionError(CatalogError, LookupError):
    """The API has no collection of that name."""


class CredentialsError(CatalogError, PermissionError):
    """The API refused the request's credentials (HTTP 401/403)."""


@dataclass(frozen=True)
class ApiOptions:
    """How to talk to an API. ``modifier`` signs items (e.g. ``planetary_computer.sign_inplace``) and
    ``request_modifier`` signs requests; ``headers`` may carry credentials, which never reach logs or errors."""

    page_size: int = 100
    cloud_filter: CloudFilter = "auto"
    headers: Mapping[str, str] = field(default_factory=dict)
    modifier: Callable[[Any], Any] | None = None
    request_modifier: Callable[[Any], Any] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class SearchResult:
    """The items found, and what it took: pages fetched and the filters the server applied."""

    items: pystac.ItemCollection
    pages: int
    cloud_filter: CloudFilter


def import_callable(path: str) -> Callable[[Any], Any]:
    """``"package.module:function"`` -> the function (for modifiers named in a config)."""
    module, _, name = path.partition(":")
    if not name:
        raise CatalogError(f"modifier {path!r} must be written package.module:function")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise CatalogError(
            f"cannot import modifier {path!r} ({err}): install its package or fix the name"
        ) from err
    if not callable(fn):
        raise CatalogError(f"modifier {path!r} is not callable")
    return fn


def public_url(url: str) -> str:
    """``url`` redacted (``credentials.redact_url``): safe to print."""
    return redact_url(url)


class _RedactCredentials(logging.Filter):
    """pystac-client logs request headers at DEBUG: hide their values where they may be credentials."""

    pattern = re.compile(
        r"('(?:authorization|x-api-key|api-key|cookie|ocp-apim-subscription-key)': ')[^']*'", re.I
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact_text(self.pattern.sub(r"\1***'", message))  # URLs: the allow-list of redact_url
        record.args = ()
        return True


_api_logger = logging.getLogger("pystac_client.stac_api_io")
if not any(isinstance(f, _RedactCredentials) for f in _api_logger.filters):
    _api_logger.addFilter(_RedactCredentials())


def _reason(err: BaseException) -> str:
    """The deepest useful cause of a failed request: a retry budget, a refused connection, a timeout."""
    seen: BaseException | None = err
    reason = str(err)
    while seen is not None:
        inner = getattr(seen, "reason", None)
        if isinstance(inner, BaseException):
            reason = str(inner)
        seen = seen.__cause__ or seen.__context__
    return re.sub(r"<[^>]*object at 0x[0-9a-f]+>:?\s*", "", reason)


def _api_error(url: str, err: APIError, what: str) -> CatalogError:
    status = getattr(err, "status_code", None)
    where = public_url(url)
    if status in (401, 403):
        return CredentialsError(
            f"the STAC API at {where} refused the credentials while {what} (HTTP {status}): check the token or "
            "headers in the environment (they are not shown here)"
        )
    if status is not None:
        return ApiError(
            f"the STAC API at {where} answered HTTP {status} while {what}: {str(err)[:300]!r}; check the "
            "request's collection and filters"
        )
    return ApiError(
        f"the STAC API at {where} failed while {what}: {_reason(err)}; check the URL and the network, try again "
        "later, or raise the retry budget"
    )


def open_api(url: str, options: ApiOptions | None = None) -> Client:
    """A pystac-client ``Client`` with our retries and timeout."""
    options = options or ApiOptions()
    io = StacApiIO(
        headers=dict(options.headers),
        request_modifier=options.request_modifier,
        timeout=options.retry.timeout,
        max_retries=options.retry.urllib3_retry(),
    )
    try:
        # Client.open hands its own headers and timeout to the StacApiIO again: give them there too. No
        # ``modifier`` here: pystac-client would call it on whole result pages (dicts), and ``search_api`` calls it
        # once on each Item, as a modifier written for Items expects.
        return Client.open(
            url, headers=dict(options.headers), request_modifier=options.request_modifier, stac_io=io,
            timeout=options.retry.timeout,
        )  # fmt: skip
    except APIError as err:
        raise _api_error(url, err, "reading its landing page") from err
    except (ValueError, OSError) as err:
        raise SourceNotFoundError(
            f"{public_url(url)} is not a STAC API landing page ({err}): give the API's root URL, e.g. "
            "https://earth-search.aws.element84.com/v1"
        ) from err


def _cloud_filter(client: Client, wanted: CloudFilter) -> CloudFilter:
    if wanted != "auto":
        return wanted
    if client.conforms_to(ConformanceClasses.FILTER):
        return "cql2"
    if client.conforms_to(ConformanceClasses.QUERY):
        return "query"
    return "client"


def _check_collection(client: Client, url: str, collection: str) -> None:
    try:
        found = client.get_collection(collection)
        if found is None:
            names = sorted(c.id for c in client.get_collections())
    except APIError as err:
        raise _api_error(url, err, f"reading collection {collection!r}") from err
    if found is None:
        raise UnknownCollectionError(
            f"the STAC API at {public_url(url)} has no collection {collection!r}; it has {names[:30]}"
        )


def _item_id(feature: Any) -> str:
    """The feature's id, quoted, for an error message (or that it has none)."""
    found = feature.get("id") if isinstance(feature, dict) else None
    return repr(found) if isinstance(found, str) else "(without an id)"


def search_api(
    url: str,
    *,
    area: shapely.Geometry,
    start: date | datetime | str,
    end: date | datetime | str,
    collection: str | None = None,
    max_cloud: float | None = None,
    options: ApiOptions | None = None,
) -> SearchResult:
    """Items of the API at ``url`` intersecting ``area`` (EPSG:4326) in ``[start, end]`` (whole days for dates),
    filtered on ``eo:cloud_cover <= max_cloud`` by the server (CQL2 or the query extension, whichever it offers)."""
    options = options or ApiOptions()
    client = open_api(url, options)
    if collection is not None:
        _check_collection(client, url, collection)
    how = _cloud_filter(client, options.cloud_filter) if max_cloud is not None else "client"
    kwargs: dict[str, Any] = {}
    if max_cloud is not None and how == "cql2":
        kwargs = {
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]},
            "filter_lang": "cql2-json",
        }
    elif max_cloud is not None and how == "query":
        kwargs = {"query": {"eo:cloud_cover": {"lte": max_cloud}}}
    interval = f"{as_utc(start, end=False).isoformat()}Z/{as_utc(end, end=True).isoformat()}Z"
    search = client.search(
        collections=[collection] if collection else None,
        intersects=shapely.geometry.mapping(area),
        datetime=interval,
        limit=options.page_size,
        **kwargs,
    )
    items: list[pystac.Item] = []
    pages = 0
    try:
        for page in search.pages_as_dicts():
            pages += 1
            features = page.get("features")
            if not isinstance(features, list):
                raise InvalidSourceError(
                    f"page {pages} of the search at the STAC API {public_url(url)} has no list of 'features' "
                    f"(got {type(features).__name__}): expected an ItemCollection; is {public_url(url)} a STAC API?"
                )
            items.extend(
                checked_item(
                    feature,
                    f"item {_item_id(feature)} on page {pages} of the STAC API {public_url(url)}",
                    "the API serves it so: tell its maintainers, or narrow the area or period to leave it out",
                )
                for feature in features
            )
    except APIError as err:
        raise _api_error(url, err, f"searching (page {pages + 1})") from err
    if options.modifier is not None:
        for item in items:
            options.modifier(item)
    if max_cloud is not None and how == "client":
        items = [
            i for i in items if (c := i.properties.get("eo:cloud_cover")) is not None and float(c) <= max_cloud
        ]
    return SearchResult(pystac.ItemCollection(items, clone_items=False), pages, how)
