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
