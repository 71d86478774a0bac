"""STAC items as the cube readers take them: stackstac-ready dicts, grouped into acquisitions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pystac
from rasterio.warp import transform_bounds

from eoshard.pipeline.bands import canonical_assets
from eoshard.pipeline.errors import BandError, PipelineError
from eoshard.pipeline.item_fields import check_item_fields, check_one_band
from eoshard.pipeline.landsat import landsat_assets
from eoshard.pipeline.sensors import check_sensor, is_landsat

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

Bounds = tuple[float, float, float, float]


def epsg_of(properties: Mapping[str, Any]) -> int | None:
    """The EPSG code in ``proj:epsg`` or an EPSG ``proj:code`` of an item's (or an asset's) fields."""
    if properties.get("proj:epsg") is not None:
        return int(properties["proj:epsg"])
    code = properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


# STAC 1.1 puts a single band's raster fields on the asset itself (CDSE: ``raster:scale``, ``nodata``, ...);
# STAC 1.0 lists them in ``raster:bands``. The 1.1 names -> the 1.0 ``raster:bands`` keys.
FLAT_RASTER_FIELDS = {
    "raster:scale": "scale",
    "raster:offset": "offset",
    "nodata": "nodata",
    "data_type": "data_type",
}


def raster_bands(asset: Mapping[str, Any]) -> dict[str, Any]:
    """The asset with ``raster:bands`` (STAC 1.0) made from its STAC 1.1 fields when it has none."""
    flat = {key: asset[field] for field, key in FLAT_RASTER_FIELDS.items() if asset.get(field) is not None}
    if asset.get("raster:bands") or not flat:
        return dict(asset)
    return {**asset, "raster:bands": [flat]}


def item_epsg(data: Mapping[str, Any]) -> int:
    """The item's EPSG code: its own ``proj:epsg``/``proj:code``, else the one its data assets share (CDSE
    declares ``proj:code`` only per asset)."""
    epsg = epsg_of(data["properties"])
    if epsg is not None:
        return epsg
    found = {e for a in data["assets"].values() if isinstance(a, Mapping) and (e := epsg_of(a)) is not None}
    if len(found) == 1:
        return found.pop()
    said = f"its assets declare {sorted(found)}" if found else "nor do its assets"
    raise PipelineError(
        f"item {data.get('id')} has neither proj:epsg nor an EPSG proj:code ({said}): cannot place its pixels on "
        "a grid; add proj:code to the item's properties"
    )


def stackstac_ready(item: pystac.Item | Mapping[str, Any]) -> dict[str, Any]:
    """The item as a dict that stackstac reads: ``proj:epsg`` filled from ``proj:code`` where missing.

    stackstac reads only ``proj:epsg``, while pystac 1.15 writes only ``proj:code``; asset hrefs are made absolute;
    STAC 1.1 raster fields of an asset become its ``raster:bands``; projection and raster fields that break the
    extensions are refused (``check_item_fields``); the canonical band keys are added (Landsat's
    own for a Landsat scene: ``red`` beside ``SR_B4``, never Sentinel-2's ``B04``).
    """
    if isinstance(item, pystac.Item):
        data = item.to_dict(transform_hrefs=False)
        for key, asset in item.assets.items():
            data["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    else:
        data = {**item, "properties": dict(item["properties"]), "assets": dict(item["assets"])}
    data["assets"] = {k: raster_bands(a) if isinstance(a, Mapping) else a for k, a in data["assets"].items()}
    check_item_fields(data)
    data["properties"]["proj:epsg"] = item_epsg(data)
    return landsat_assets(data) if is_landsat(data) else canonical_assets(data)


def acquisition_key(item: Mapping[str, Any]) -> str:
    """Products of one satellite, day and relative orbit form one acquisition (mosaicked together)."""
    props = item["properties"]
    day = str(props["datetime"])[:10]
    return f"{props.get('platform', '')}_{day}_R{props.get('sat:relative_orbit', '')}"


def prepare_items(
    items: Sequence[pystac.Item | Mapping[str, Any]], grid: GeoBox, bands: Sequence[str]
) -> list[dict[str, Any]]:
    """The items as stackstac-ready dicts, checked for ``bands``, in mosaic order.

    Within an acquisition the last product is on top: products in the grid's CRS go last, so where they
    overlap another product their pixels pass unresampled.
    """
    dicts = [stackstac_ready(item) for item in items]
    if not dicts:
        raise PipelineError("no products to build a cube from: the selection is empty")
    for data in dicts:
        check_sensor(data, bands)
        missing = [b for b in bands if b not in data["assets"]]
        if missing:
            raise BandError(
                f"product {data['id']} has no asset for band(s) {missing}; it has {sorted(data['assets'])}: "
                "fix the config's bands"
            )
        check_one_band(data, bands)
    epsg = grid_epsg(grid)
    dicts.sort(key=lambda d: (acquisition_key(d), d["properties"]["proj:epsg"] == epsg, d["id"]))
    return dicts


def grid_epsg(grid: GeoBox) -> int:
    epsg = grid.crs.epsg if grid.crs is not None else None
    if epsg is None:
        raise PipelineError(f"the grid's CRS {grid.crs} has no EPSG code: give the grid an EPSG CRS (e.g. UTM)")
    return int(epsg)


def acquisition_times(dicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each acquisition's datetime (that of its last product in ``dicts``)."""
    return {acquisition_key(d): d["properties"]["datetime"] for d in dicts}


def acquisition_order(dicts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The acquisitions of ``dicts`` in the cube's time order (datetime, then key)."""
    times = acquisition_times(dicts)
    return sorted(times, key=lambda k: (times[k], k))


def asset_bounds(item: Mapping[str, Any], band: str, epsg: int) -> Bounds | None:
    """The asset's bounds in ``epsg``, from its (or its item's) ``proj:transform`` and ``proj:shape``, or the bbox."""
    asset, props = item["assets"][band], item["properties"]
    transform = asset.get("proj:transform") or props.get("proj:transform")
    shape = asset.get("proj:shape") or props.get("proj:shape")
    own = int(props["proj:epsg"])
    if transform and shape:
        a, _, c, _, e, f = (float(v) for v in transform[:6])
        height, width = int(shape[0]), int(shape[1])
        xs, ys = (c, c + a * width), (f, f + e * height)
        bounds: Bounds = (min(xs), min(ys), max(xs), max(ys))
    elif props.get("proj:bbox"):
        bounds = tuple(float(v) for v in props["proj:bbox"][:4])  # type: ignore[assignment]
    elif item.get("bbox"):
        own, bounds = 4326, tuple(float(v) for v in item["bbox"][:4])  # type: ignore[assignment]
    else:
        return None
    if own == epsg:
        return bounds
    return tuple(float(v) for v in transform_bounds(f"EPSG:{own}", f"EPSG:{epsg}", *bounds, densify_pts=21))  # type: ignore[return-value]
