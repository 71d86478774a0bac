"""Keep credentials out of saved files: signed asset URLs lose their signature before an item is written."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that carry credentials: Azure SAS (Planetary Computer), AWS SigV4 presigning, plain tokens.
SECRET_PARAMS = frozenset(
    {"sig", "se", "st", "sp", "sv", "sr", "spr", "skoid", "sktid", "skt", "ske", "sks", "skv", "token",
     "access_token", "api_key", "apikey", "key"}
)  # fmt: skip


def _secret(name: str) -> bool:
    return name.lower() in SECRET_PARAMS or name.lower().startswith("x-amz-")


def unsigned_href(href: str) -> str:
    """``href`` without user info or the query parameters that sign it (the rest of the query stays)."""
    parts = urlsplit(href)
    if not parts.query and not parts.username:
        return href
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _secret(k)]
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept), parts.fragment))


def unsigned_item_dict(item: dict[str, Any]) -> dict[str, Any]:
    """An item dict whose asset and link hrefs carry no signatures or user info (to be saved or logged)."""
    out = {**item, "assets": {}, "links": []}
    for key, asset in item.get("assets", {}).items():
        out["assets"][key] = {**asset, "href": unsigned_href(str(asset["href"]))}
    out["links"] = [{**link, "href": unsigned_href(str(link["href"]))} for link in item.get("links", [])]
    return out
