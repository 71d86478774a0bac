"""Which sensor a product and a band belong to: Sentinel-1 (SAR backscatter) or Sentinel-2 (optical).

A cube holds one set of resolution groups per sensor (``s2_10m``, ``s2_20m``, ... and ``s1_10m``), each with
its own time steps; the sensor of a product comes from its STAC properties, the sensor of a band from its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eoshard.pipeline.errors import BandError, PipelineError, UnsupportedProductError

S1, S2 = "s1", "s2"
NODATA = 0  # of Sentinel-2 digital numbers
SENSOR_NAMES = {S2: "Sentinel-2", S1: "Sentinel-1"}
# Polarisation channels: the asset keys of Sentinel-1 GRD and RTC products (Planetary Computer, Element 84)
S1_BANDS = frozenset({"vv", "vh", "hh", "hv"})
S1_DTYPE = "float32"  # RTC backscatter, when the asset does not declare its data type


def item_sensor(item: Mapping[str, Any]) -> str:
    """``s1`` for a SAR product (``sar:*`` properties, or platform/constellation Sentinel-1), else ``s2``.

    Products of other optical sources (e.g. the paired very-high-resolution images) are read as ``s2`` is.
    """
    props = item["properties"]
    names = f"{props.get('constellation') or ''} {props.get('platform') or ''}".lower()
    if "sentinel-1" in names or any(str(k).startswith("sar:") for k in props):
        return S1
    return S2


def is_landsat(item: Mapping[str, Any]) -> bool:
    """Whether the product is a Landsat scene (platform/constellation Landsat, or ``landsat:*`` properties)."""
    props = item["properties"]
    names = f"{props.get('constellation') or ''} {props.get('platform') or ''}".lower()
    return "landsat" in names or any(str(k).startswith("landsat:") for k in props)


def check_supported(dicts: Sequence[Mapping[str, Any]]) -> None:
    """Refuse Landsat products by name: they would otherwise be read as Sentinel-2 (their ``red`` is ``B04``)."""
    landsat = [d for d in dicts if is_landsat(d)]
    if landsat:
        platform = landsat[0]["properties"].get("platform")
        raise UnsupportedProductError(
            f"{len(landsat)} of the {len(dicts)} products are Landsat scenes (e.g. {landsat[0].get('id')}, "
            f"platform {platform}): eoshard builds Sentinel-2 and Sentinel-1 products only; Landsat Collection 2 "
            "(30 m WRS-2 scenes, reflectance = DN * 2.75e-05 - 0.2, clouds in the qa_pixel bits) is not supported "
            "yet. `eoshard select` lists and chooses them; build from a Sentinel-2 collection (catalog.collection)"
        )


def band_sensor(band: str) -> str:
    """``s1`` for a polarisation channel (``vv``, ``vh``, ``hh``, ``hv``), ``s2`` for every other band."""
    return S1 if band.lower() in S1_BANDS else S2


def group_sensor(group: str) -> str:
    """``s1`` for a Sentinel-1 group (``s1_10m``), ``s2`` for every other group (indices are Sentinel-2's)."""
    return S1 if group.startswith(f"{S1}_") else S2


def split_by_sensor(
    dicts: Sequence[dict[str, Any]], bands: Sequence[str]
) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """Products and bands per sensor (Sentinel-2 first); each sensor asked for must have products, and back.

    Landsat products are refused (``check_supported``)."""
    check_supported(dicts)
    products: dict[str, list[dict[str, Any]]] = {}
    for data in dicts:
        products.setdefault(item_sensor(data), []).append(data)
    asked: dict[str, list[str]] = {}
    for band in bands:
        asked.setdefault(band_sensor(band), []).append(band)
    for sensor in SENSOR_NAMES:
        name, have, want = SENSOR_NAMES[sensor], products.get(sensor, []), asked.get(sensor, [])
        if want and not have:
            raise BandError(
                f"band(s) {want} are {name} bands, but none of the {len(dicts)} products is a {name} product "
                f"(sensor from platform/constellation or sar:* properties): add {name} products or drop the bands"
            )
        if have and not want:
            ids = [d.get("id") for d in have[:3]]
            raise BandError(
                f"{len(have)} product(s) are {name} products (e.g. {ids}), but no {name} band was asked "
                f"(bands: {list(bands)}): ask for their bands ({sorted(have[0]['assets'])}) or leave them out"
            )
    return {s: (products[s], asked[s]) for s in SENSOR_NAMES if s in products}


def check_sensor(data: Mapping[str, Any], bands: Sequence[str]) -> None:
    """Refuse bands of another sensor than the product's (a Sentinel-1 band asked of a Sentinel-2 product)."""
    sensor = item_sensor(data)
    other = [b for b in bands if band_sensor(b) != sensor]
    if other:
        raise BandError(
            f"band(s) {other} are {SENSOR_NAMES[band_sensor(other[0])]} bands, but product {data.get('id')} is "
            f"a {SENSOR_NAMES[sensor]} product with assets {sorted(data['assets'])}: ask each product for "
            "its own sensor's bands (open_cube splits products and bands by sensor)"
        )


def declared_nodata(dicts: Sequence[Mapping[str, Any]], bands: Sequence[str], default: float) -> float:
    """The nodata value the products' ``raster:bands`` declare for ``bands`` (``default`` where none does).

    A group is mosaicked and filled with one nodata value, so products that disagree are refused.
    """
    found: dict[str, float] = {}  # keyed by text, so that every NaN counts as one value
    for data in dicts:
        for band in bands:
            for raster in data["assets"].get(band, {}).get("raster:bands", [])[:1]:
                if raster.get("nodata") is not None:
                    found[str(float(raster["nodata"]))] = float(raster["nodata"])
    if len(found) > 1:
        raise PipelineError(
            f"the products declare different nodata values {sorted(found)} for {list(bands)}: "
            "a cube group has one nodata value; select products of one processing chain"
        )
    return next(iter(found.values())) if found else default


def declared_dtype(dicts: Sequence[Mapping[str, Any]], bands: Sequence[str], default: str) -> str:
    """The ``raster:bands`` data type of the first product's first band (``default`` where it says none)."""
    rasters = dicts[0]["assets"].get(bands[0], {}).get("raster:bands", []) if dicts and bands else []
    return str(rasters[0].get("data_type") or default) if rasters else default
