"""Keep credentials out of everything eoshard writes or prints: one redaction for every URL.

``redact_url`` removes the user info and every query parameter that is not known to be harmless. It is an
allow-list: a signing scheme nobody listed (GCS ``X-Goog-Signature``, CloudFront ``Signature``/``Key-Pair-Id``,
Azure SAS ``sig``, AWS ``X-Amz-*``, a ``password=`` or ``token=`` parameter, ...) is removed because it is *not*
listed as harmless, not because someone thought of it. The parameters kept identify what a URL points at (STAC and
OGC search parameters, object versions), never who may read it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Query parameters known to carry no credential (compared case-insensitively).
HARMLESS_PARAMS = frozenset(
    {"collections", "collection", "bbox", "datetime", "limit", "page", "ids", "intersects", "query", "filter",
     "filter-lang", "filter_lang", "filter-crs", "sortby", "fields", "f", "format", "q", "version", "versionid",
     "generation", "alt", "service", "request", "crs", "layers", "width", "height", "offset", "start", "rows",
     "$format", "$skip", "$top", "$filter", "$orderby", "orderby",
     # titiler's, in Planetary Computer's rendered_preview and tilejson links: which item and bands to draw
     "item", "items", "assets", "asset_bidx", "bidx", "nodata", "rescale", "colormap_name", "color_formula",
     "expression", "resampling", "tile_format", "tile_scale", "minzoom", "maxzoom"}
)  # fmt: skip

REDACTED = "REDACTED"


def harmless(name: str) -> bool:
    """True for a query parameter that may be written and printed (see ``HARMLESS_PARAMS``)."""
    return name.lower() in HARMLESS_PARAMS


def redact_url(url: str) -> str:
    """``url`` without user info and without every query parameter not known to be harmless.

    A string without a scheme (a local path, a relative href) keeps its path; a query string on it (``./B04.tif?
    sig=...``, anything after ``?`` with a ``=``) is filtered the same way.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return REDACTED  # not parseable: nothing of it can be shown safely
    if not parts.query and "@" not in parts.netloc:
        return url
    if not parts.scheme and "=" not in parts.query:
        return url  # a file name with a "?" in it, not a query
    # the kept parameters as they were written (``bidx=1,2,3`` stays, not ``bidx=1%2C2%2C3``)
    kept = [p for p in parts.query.split("&") if p and harmless(unquote_plus(p.partition("=")[0]))]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), parts.fragment))


_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"<>]*@")
_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&?;#\s'\"<>]+)=(?P<value>[^&;#\s'\"<>)]*)")


def redact_text(text: str) -> str:
    """Free text (a log line, a traceback) with every URL's user info removed and the value of every query
    parameter that is not known to be harmless replaced by ``REDACTED``: the same allow-list as ``redact_url``,
    for URLs (or bare ``path?query`` parts) that foreign libraries put into their messages."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _PARAM.sub(lambda m: m[0] if harmless(m["name"]) else f"{m['sep']}{m['name']}={REDACTED}", text)


# The name older code and tests use: a signed asset href loses its signature the same way.
unsigned_href = redact_url


def redact_hrefs(value: Any) -> Any:
    """``value`` (JSON-like) with every ``href`` string redacted, at any depth (assets, alternates, links)."""
    if isinstance(value, dict):
        return {
            k: redact_url(v) if k == "href" and isinstance(v, str) else redact_hrefs(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_hrefs(v) for v in value]
    return value


def unsigned_item_dict(item: dict[str, Any]) -> dict[str, Any]:
    """An item dict whose hrefs (assets, alternates, links) carry no signatures or user info (to be saved or logged)."""
    out: dict[str, Any] = redact_hrefs(item)
    return out
