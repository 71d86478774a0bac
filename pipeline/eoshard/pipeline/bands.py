"""One band vocabulary: Sentinel-2 band ids (``B01``..``B12``, ``B8A``, ``SCL``, ``AOT``, ``WVP``, ``TCI``).

Catalogs name the same asset differently: Earth Search v1/c1 by common name (``red``, ``nir``, ``swir16``,
``scl``), Planetary Computer by band id with a resolution suffix where several resolutions exist
(``B04``, ``SCL-20m``, ``B02_20m``), STAC ``eo:bands`` / ``bands`` (STAC 1.1) by the band's ``name``.
:func:`canonical_band` turns what a user asks for into the canonical id; :func:`canonical_assets` gives an
item dict the canonical asset keys beside its own (the same asset under both keys), so every later step reads
``B04`` whatever the catalog called it. Names outside the vocabulary (``vv``, ``vh``, custom assets) pass
unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_AUXILIARY = ("SCL", "AOT", "WVP", "TCI")
CANONICAL = frozenset(S2_BANDS + S2_AUXILIARY)
# STAC eo common names, as Earth Search v1/c1 uses them for asset keys, and its auxiliary keys
ALIASES: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12", "scl": "SCL", "aot": "AOT", "wvp": "WVP", "visual": "TCI",
}  # fmt: skip
_SUFFIX = re.compile(r"^(?P<band>.+?)[_-](?P<res>\d+)m$")  # SAFE / Planetary Computer: B04_20m, SCL-20m
_SHORT = re.compile(r"^B(?P<n>\d)$")  # B4 -> B04


def canonical_band(name: str) -> str:
    """``B04`` for ``red``, ``b04``, ``B4`` or ``B04``; names outside the vocabulary unchanged."""
    upper = name.upper()
    if upper in CANONICAL:
        return upper
    short = _SHORT.match(upper)
    if short:
        return f"B0{short['n']}"
    return ALIASES.get(name.lower(), name)


def _declared_name(asset: Mapping[str, Any]) -> str | None:
    """The band name an asset of exactly one band declares in ``eo:bands`` (STAC 1.0) or ``bands`` (1.1)."""
    for key in ("eo:bands", "bands"):
        bands = asset.get(key)
        if isinstance(bands, list) and len(bands) == 1 and isinstance(bands[0], Mapping):
            name = bands[0].get("name") or bands[0].get("eo:common_name") or bands[0].get("common_name")
            if name:
                return str(name)
    return None


def _candidates(key: str, asset: Mapping[str, Any]) -> list[tuple[str, tuple[int, float]]]:
    """The canonical names ``key`` may stand for, each with a rank (lower wins)."""
    found = []
    if canonical_band(key) in CANONICAL:
        found.append((canonical_band(key), (0 if key in CANONICAL else 1, 0.0)))
    suffixed = _SUFFIX.match(key)
    if suffixed and canonical_band(suffixed["band"]) in CANONICAL:
        found.append((canonical_band(suffixed["band"]), (2, float(suffixed["res"]))))  # finest resolution first
    declared = _declared_name(asset)
    if declared is not None and canonical_band(declared) in CANONICAL and not suffixed and "-" not in key:
        found.append((canonical_band(declared), (3, 0.0)))
    return found


def canonical_keys(assets: Mapping[str, Any]) -> dict[str, str]:
    """Canonical band -> the asset key that holds it (the asset's own key when already canonical)."""
    best: dict[str, tuple[tuple[int, float], str]] = {}
    for key, asset in assets.items():
        if not isinstance(asset, Mapping):
            continue
        for band, rank in _candidates(key, asset):
            if band not in best or (rank, key) < best[band]:
                best[band] = (rank, key)
    return {band: key for band, (_, key) in sorted(best.items())}


def canonical_assets(item: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the item dict with each canonical band key added beside the catalog's own key.

    ``assets["B04"]`` is the very asset dict of ``assets["red"]`` (Earth Search), so both read the same bytes;
    keys already present are never replaced.
    """
    assets = dict(item.get("assets", {}))
    for band, key in canonical_keys(assets).items():
        assets.setdefault(band, assets[key])
    return {**item, "assets": assets}
