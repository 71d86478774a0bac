"""A ``catalog.modifier`` for the token server of ``eoshard.flows.demo.serve`` (``Tokens``): it signs each asset
of 127.0.0.1 with a token from the server's ``/token``, as ``planetary_computer.sign_inplace`` does with the
Planetary Computer's token API."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

import pystac


def sign_inplace(item: pystac.Item) -> pystac.Item:
    for asset in item.assets.values():
        parts = urlsplit(asset.href)
        if parts.hostname != "127.0.0.1" or "token=" in parts.query:
            continue  # not the server's, or signed already
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/token", timeout=10) as answer:
            token = json.load(answer)["token"]
        asset.href = f"{asset.href}?token={token}"
    return item


def stamp_s2(item: pystac.Item) -> pystac.Item:
    """A modifier that marks each href ``?sig=s2`` (it opens nothing: for tests of who signs what)."""
    return _stamp(item, "s2")


def stamp_s1(item: pystac.Item) -> pystac.Item:
    """The same with ``?sig=s1``."""
    return _stamp(item, "s1")


def stamp_hr(item: pystac.Item) -> pystac.Item:
    """The same with ``?sig=hr``."""
    return _stamp(item, "hr")


def _stamp(item: pystac.Item, who: str) -> pystac.Item:
    for asset in item.assets.values():
        asset.href = f"{asset.href}?sig={who}"
    return item


def unreachable(item: pystac.Item) -> pystac.Item:
    """A modifier whose token service cannot be reached."""
    raise ConnectionError("token service http://127.0.0.1:9/token?key=s3cret refused the connection")
