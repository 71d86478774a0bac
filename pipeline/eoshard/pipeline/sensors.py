"""Which sensor a product and a band belong to: Sentinel-1 (SAR), Sentinel-2 or Landsat (optical).

A cube holds one set of resolution groups per sensor (``s2_10m``, ``s2_20m``, ... and ``s1_10m``; ``ls_30m``),
each with its own time steps; the sensor of a product comes from its STAC properties, the sensor of a band from its
name, and a band name resolves per the products' sensor (``red`` is Sentinel-2 ``B04``, or Landsat ``red``).
Landsat products build alone (not beside Sentinel-2 or Sentinel-1 products).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eoshard.pipeline.bands import CANONICAL, canonical_band
from eoshard.pipeline.errors import BandError, PipelineError, UnsupportedProductError
from eoshard.pipeline.landsat import landsat_bands

S1, S2, LS = "s1", "s2", "ls"
NODATA = 0  # of Sentinel-2 and Landsat digital numbers
DN_DTYPE = "uint16"  # the cubes' type of those numbers (before ``reflectance``)
SENSOR_NAMES = {S2: "Sentinel-2", S1: "Sentinel-1", LS: "Landsat"}
MAIN_SENSORS = (S2, LS)  # optical: their dates are the dataset's ``dates`` (one of them per build)
# Polarisation channels: the asset keys of Sentinel-1 GRD and RTC products (Planetary Computer, Element 84)
S1_BANDS = frozenset({"vv", "vh", "hh", "hv"})
S1_DTYPE = "float32"  # RTC backscatter, when the asset does not declare its data type


def item_sensor(item: Mapping[str, Any]) -> str:
    """``s1`` for a SAR product (``sar:*`` properties, or platform/constellation Sentinel-1), ``ls`` for a Landsat
    scene, else ``s2``.

    Products of other optical sources (e.g. the paired very-high-resolution images) are read as ``s2`` is.
    """
    props = item["properties"]
    names = f"{props.get('constellation') or ''} {props.get('platform') or ''}".lower()
    if "sentinel-1" in names or any(str(k).startswith("sar:") for k in props):
        return S1
    return LS if is_landsat(item) else S2


def is_landsat(item: Mapping[str, Any]) -> bool:
    """Whether the product is a Landsat scene (platform/constellation Landsat, or ``landsat:*`` properties)."""
    props = item["properties"]
    names = f"{props.get('constellation') or ''} {props.get('platform') or ''}".lower()
    return "landsat" in names or any(str(k).startswith("landsat:") for k in props)


def check_landsat_alone(dicts: Sequence[Mapping[str, Any]]) -> None:
    """Refuse Landsat products beside products of another sensor: a build has one band list and one optical
    time axis, and ``red`` cannot mean both Landsat ``red`` and Sentinel-2 ``B04``."""
    landsat = [d for d in dicts if item_sensor(d) == LS]
    others = [d for d in dicts if item_sensor(d) != LS]
    if landsat and others:
        kinds = sorted({SENSOR_NAMES[item_sensor(d)] for d in others})
        raise UnsupportedProductError(
            f"{len(landsat)} of the {len(dicts)} products are Landsat scenes (e.g. {landsat[0].get('id')}) and "
            f"{len(others)} are {' and '.join(kinds)} products (e.g. {others[0].get('id')}): expected products of "
            "one sensor, since Landsat builds alone (its 30 m groups, its band names, its qa_pixel mask); build "
            "each sensor's products into a dataset of its own (catalog.collection, or a selection of one sensor)"
        )


def sensor_bands(dicts: Sequence[Mapping[str, Any]], bands: Sequence[str]) -> list[str]:
    """The bands as the products' sensor names them: Landsat names for Landsat products (``B04``/``red``/``SR_B4``
    -> ``red``), the Sentinel-2 vocabulary otherwise (``red`` -> ``B04``)."""
    check_landsat_alone(dicts)
    if dicts and item_sensor(dicts[0]) == LS:
        sar = [b for b in bands if b.lower() in S1_BANDS]
        if sar:
            raise BandError(
                f"band(s) {sar} are Sentinel-1 bands, but the products are Landsat scenes: drop them (Landsat "
                "builds alone)"
            )
        return landsat_bands(bands)
    return [canonical_band(b) for b in bands]


def band_sensor(band: str) -> str:
    """``s1`` for a polarisation channel (``vv``, ``vh``, ``hh``, ``hv``), ``s2`` for every other band."""
    return S1 if band.lower() in S1_BANDS else S2


def group_sensor(group: str) -> str:
    """``s1`` for a Sentinel-1 group (``s1_10m``), ``ls`` for a Landsat one (``ls_30m``), ``s2`` for every other
    group (indices are on the optical dates)."""
    for sensor in (S1, LS):
        if group.startswith(f"{sensor}_"):
            return sensor
    return S2


def is_main(sensor: str) -> bool:
    """Whether the sensor's dates are the dataset's ``dates`` (Sentinel-2 or Landsat), not a time axis of its own."""
    return sensor in MAIN_SENSORS


def split_by_sensor(
    dicts: Sequence[dict[str, Any]], bands: Sequence[str]
) -> dict[str, tuple[list[dict[str, Any]], list[str]]]:
    """Products and bands per sensor (Sentinel-2 first); each sensor asked for must have products, and back.

    Landsat products build alone, with their bands in Landsat names (``sensor_bands``)."""
    if any(item_sensor(d) == LS for d in dicts):
        return {LS: (list(dicts), sensor_bands(dicts, bands))}
    bands = [canonical_band(b) for b in bands]  # "red" and "B04" read the same asset
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
    if sensor == LS:  # resolved by ``sensor_bands``: a Sentinel-2 id or a polarisation is not a Landsat band
        other = [b for b in bands if b in CANONICAL or band_sensor(b) == S1]
    else:
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
