"""One normalised product record from STAC items of any convention (Earth Search, Planetary Computer, ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pystac
import shapely
from shapely.geometry import shape


@dataclass(frozen=True)
class ProductRecord:
    """What selection needs of a product, whatever the source's property names."""

    id: str
    platform: str
    product_type: str | None
    datetime: datetime
    tile: str | None  # MGRS tile for Sentinel-2
    relative_orbit: int | None
    processing_baseline: str | None
    datatake: str
    cloud_cover: float | None
    nodata_percentage: float | None
    footprint: shapely.Geometry  # EPSG:4326
    epsg: int | None
    item: pystac.Item

    @property
    def acquisition(self) -> str:
        """Products of one platform, day and relative orbit: one overpass, mosaicked together."""
        return f"{self.platform}_{self.datetime:%Y-%m-%d}_R{self.relative_orbit if self.relative_orbit is not None else ''}"


_TILE_IN_ID = re.compile(r"_T(\d{2}[A-Z]{3})_")  # ESA product names: ..._R095_T20EPT_...
_ORBIT_IN_ID = re.compile(r"_R(\d{3})_")


def _tile(props: dict[str, Any]) -> str | None:
    """The MGRS tile, from every convention met: Planetary Computer ``s2:mgrs_tile``, the MGRS extension
    (Earth Search v1/c1), Earth Search v0 ``sentinel:utm_zone/latitude_band/grid_square``, ``grid:code``
    (``MGRS-33UUU``, CDSE), ``s2:tile_id`` or the ESA product name; for Landsat the WRS-2 path and row
    (``010065``)."""
    if props.get("s2:mgrs_tile"):
        return str(props["s2:mgrs_tile"])
    for prefix in ("mgrs", "sentinel"):
        if props.get(f"{prefix}:utm_zone") is not None:
            zone, band, square = (
                props.get(f"{prefix}:{k}", "") for k in ("utm_zone", "latitude_band", "grid_square")
            )
            return f"{int(zone):02d}{band}{square}"
    code = props.get("grid:code")
    if isinstance(code, str) and code.startswith("MGRS-"):
        return code.removeprefix("MGRS-")
    if props.get("landsat:wrs_path") is not None and props.get("landsat:wrs_row") is not None:
        return f"{int(props['landsat:wrs_path']):03d}{int(props['landsat:wrs_row']):03d}"  # Landsat WRS-2 scene
    for key in ("s2:tile_id", "sentinel:product_id", "s2:product_uri"):
        found = _TILE_IN_ID.search(str(props.get(key) or ""))
        if found:
            return found[1]
    return None


def _relative_orbit(props: dict[str, Any]) -> int | None:
    """``sat:relative_orbit``, else the ``R095`` of the ESA product name (Earth Search v0 has no sat:*), else
    the Landsat WRS-2 path (the repeating ground track, as a relative orbit is)."""
    if props.get("sat:relative_orbit") is not None:
        return int(props["sat:relative_orbit"])
    if props.get("landsat:wrs_path") is not None:
        return int(props["landsat:wrs_path"])
    for key in ("sentinel:product_id", "s2:product_uri"):
        found = _ORBIT_IN_ID.search(str(props.get(key) or ""))
        if found:
            return int(found[1])
    return None


def _own_epsg(fields: dict[str, Any]) -> int | None:
    if fields.get("proj:epsg") is not None:
        return int(fields["proj:epsg"])
    code = fields.get("proj:code")
    return int(code.split(":")[1]) if isinstance(code, str) and code.upper().startswith("EPSG:") else None


def _epsg(item: pystac.Item) -> int | None:
    """The item's EPSG code, else the one its assets share (CDSE declares ``proj:code`` per asset only)."""
    own = _own_epsg(item.properties)
    if own is not None:
        return own
    found = {e for a in item.assets.values() if (e := _own_epsg(a.extra_fields)) is not None}
    return found.pop() if len(found) == 1 else None


def _baseline(props: dict[str, Any]) -> str | None:
    value = (
        props.get("s2:processing_baseline")
        or props.get("sentinel:processing_baseline")
        or props.get("processing:version")
    )
    return None if value is None else str(value)


def record_of(item: pystac.Item) -> ProductRecord:
    """The item as a product record; missing properties stay ``None``."""
    props = item.properties
    when = item.datetime or item.common_metadata.start_datetime
    assert when is not None, f"item {item.id} has no datetime"
    cloud = props.get("eo:cloud_cover")
    nodata = props.get("s2:nodata_pixel_percentage")
    orbit = _relative_orbit(props)
    datatake = (
        props.get("s2:datatake_id")
        or props.get("s1:datatake_id")
        or f"{props.get('platform')}_{when:%Y%m%dT%H%M%S}"
    )
    datatake = re.sub(r"_N\d{2}\.\d{2}$", "", str(datatake))  # ESA's datatake ids carry the baseline: drop it
    tile = _tile(props)
    return ProductRecord(
        id=item.id,
        platform=str(props.get("platform", "")).lower(),
        product_type=props.get("s2:product_type") or props.get("sar:product_type"),
        datetime=when,
        tile=tile,
        relative_orbit=orbit,
        processing_baseline=_baseline(props),
        datatake=f"{datatake}_{tile}" if tile else str(datatake),
        cloud_cover=None if cloud is None else float(cloud),
        nodata_percentage=None if nodata is None else float(nodata),
        footprint=shape(item.geometry)
        if item.geometry
        else shapely.box(*item.bbox)
        if item.bbox
        else shapely.Point(),
        epsg=_epsg(item),
        item=item,
    )
