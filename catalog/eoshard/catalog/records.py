"""One normalised product record from STAC items of any convention (Earth Search, Planetary Computer, ...)."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    extent_area: float | None  # m² of the product's whole raster grid (a UTM grid's proj:shape and proj:transform)
    epsg: int | None
    item: pystac.Item

    @property
    def radar(self) -> bool:
        """A SAR product (Sentinel-1): clouds do not hide its pixels."""
        return self.platform.startswith("sentinel-1") or any(k.startswith("sar:") for k in self.item.properties)

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


def _extent_area(item: pystac.Item, epsg: int | None) -> float | None:
    """The area in m² of the raster grid the product's pixels lie on (``proj:shape`` x ``proj:transform`` of the
    item or of its first asset declaring both), for a grid in UTM metres; else None."""
    if epsg is None or not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        return None
    for fields in (item.properties, *(a.extra_fields for a in item.assets.values())):
        shape_, transform = fields.get("proj:shape"), fields.get("proj:transform")
        if isinstance(shape_, list) and len(shape_) == 2 and isinstance(transform, list) and len(transform) >= 6:
            try:
                return abs(float(transform[0]) * float(transform[4])) * int(shape_[0]) * int(shape_[1])
            except (TypeError, ValueError):
                continue
    return None


def _baseline(props: dict[str, Any]) -> str | None:
    value = (
        props.get("s2:processing_baseline")
        or props.get("sentinel:processing_baseline")
        or props.get("processing:version")
    )
    return None if value is None else str(value)


def _copies_key(
    datatake: str, product: str | None, tile: str | None, props: dict[str, Any], when: datetime
) -> str:
    """What reprocessed copies of one product share: its product type (L1C and L2A, GRD and SLC of one datatake
    are different products), the datatake, and the part of it: the MGRS tile of Sentinel-2, the slice of a
    Sentinel-1 datatake (``s1:slice_number``, else its start time: the slices of one datatake are not copies)."""
    part = tile
    if part is None and (
        props.get("s1:datatake_id") or str(props.get("platform", "")).lower().startswith("sentinel-1")
    ):
        number = props.get("s1:slice_number")
        start = props.get("start_datetime") or when.isoformat()
        part = f"slice{number}" if number is not None else str(start)[:19]
    return "_".join(str(p) for p in (product, datatake, part) if p)


def bbox_bounds(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``(minx, miny, maxx, maxy)`` of a STAC bbox of 4 values, or of 6 (with heights: the third and sixth)."""
    half = len(bbox) // 2
    return bbox[0], bbox[1], bbox[half], bbox[half + 1]


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
    epsg = _epsg(item)
    product_type = props.get("s2:product_type") or props.get("sar:product_type")
    return ProductRecord(
        id=item.id,
        platform=str(props.get("platform", "")).lower(),
        product_type=product_type,
        datetime=when,
        tile=tile,
        relative_orbit=orbit,
        processing_baseline=_baseline(props),
        datatake=_copies_key(str(datatake), product_type or item.collection_id, tile, props, when),
        cloud_cover=None if cloud is None else float(cloud),
        nodata_percentage=None if nodata is None else float(nodata),
        footprint=shape(item.geometry)
        if item.geometry
        else shapely.box(*bbox_bounds(item.bbox))
        if item.bbox
        else shapely.Point(),
        epsg=epsg,
        extent_area=_extent_area(item, epsg),
        item=item,
    )
