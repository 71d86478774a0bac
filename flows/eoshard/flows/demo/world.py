"""The demo world: field parcels, water and roads near 48.02 N 12.0 E, across the UTM 32/33 boundary.

Everything is a deterministic function of fixed seeds, so two runs write the same parcels and pixels.
Geometry is drawn in EPSG:32632 metres (the world CRS) and reprojected where needed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import LineString, Polygon, box

WORLD_CRS = "EPSG:32632"
PARCELS_CRS = "EPSG:3035"  # parcels ship in ETRS89-LAEA, as many EU datasets do
AOI_BOUNDS_LONLAT = (11.955, 48.0, 12.035, 48.04)
YEAR = 2024
ROAD_WIDTH_M = 12.0

# class code -> class name; 0 is background (no parcel)
CLASSES: dict[int, str] = {
    1: "winter_wheat",
    2: "maize",
    3: "rapeseed",
    4: "grassland",
    5: "sugar_beet",
    6: "potato",
}


@dataclass(frozen=True)
class World:
    """Parcels (in ``WORLD_CRS``) and the non-parcel land cover the imagery shows."""

    parcels: gpd.GeoDataFrame
    water: shapely.Geometry
    roads: shapely.Geometry


def _split(lo: float, hi: float, parts: int, rng: np.random.Generator) -> list[float]:
    """Cut ``[lo, hi]`` into ``parts`` pieces at jittered, 10 m rounded positions."""
    cuts = np.linspace(lo, hi, parts + 1)
    inner = cuts[1:-1] + rng.uniform(-0.15, 0.15, parts - 1) * (hi - lo) / parts
    return [lo, *np.round(inner, -1).tolist(), hi]


def _blocks(extent: tuple[float, float, float, float]) -> list[Polygon]:
    """Road-separated blocks of farmland covering ``extent``."""
    x0, y0, x1, y1 = extent
    xs = np.arange(x0, x1, 820.0)
    ys = np.arange(y0, y1, 610.0)
    half = ROAD_WIDTH_M / 2
    return [box(x + half, y + half, min(x + 820.0, x1) - half, min(y + 610.0, y1) - half) for x in xs for y in ys]


def _fields_of(block: Polygon, rng: np.random.Generator) -> list[Polygon]:
    """Split a block into fields that share their edges exactly."""
    bx0, by0, bx1, by1 = block.bounds
    fields: list[Polygon] = []
    xs = _split(bx0, bx1, int(rng.integers(2, 4)), rng)
    for xa, xb in itertools.pairwise(xs):
        ys = _split(by0, by1, int(rng.integers(1, 4)), rng)
        fields.extend(box(xa, ya, xb, yb) for ya, yb in itertools.pairwise(ys))
    return fields


def _river() -> shapely.Geometry:
    """A meandering river crossing the area from west to east, 30 m wide."""
    xs = np.linspace(718_500, 728_000, 60)
    ys = 5_322_400 + 350 * np.sin((xs - 718_500) / 1400.0) + 120 * np.sin((xs - 718_500) / 330.0)
    return LineString(np.column_stack([xs, ys])).buffer(15.0, cap_style="flat")


def _lake() -> shapely.Geometry:
    return (
        shapely.Point(721_900, 5_324_300)
        .buffer(260.0)
        .intersection(shapely.Point(722_050, 5_324_250).buffer(300.0))
    )


def _bowtie(field: Polygon) -> Polygon:
    """A self-intersecting ring over the field's box (a digitising error found in real LPIS)."""
    x0, y0, x1, y1 = field.bounds
    return Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])


def make_world(seed: int = 20240401) -> World:
    """Build the parcels and land cover of the demo world."""
    rng = np.random.default_rng(seed)
    extent = (719_400.0, 5_319_900.0, 727_000.0, 5_326_200.0)
    blocks = _blocks(extent)
    roads = box(*extent).difference(shapely.union_all(blocks))
    water = shapely.union_all([_river(), _lake()])

    geoms: list[shapely.Geometry] = []
    for block in blocks:
        for field in _fields_of(block, rng):
            if rng.random() < 0.08:  # some land is not declared: forest, fallow, yards
                continue
            geoms.append(field.difference(water))
    geoms = [g for g in geoms if not g.is_empty and g.area > 400.0]

    codes = rng.choice(list(CLASSES), size=len(geoms), p=[0.3, 0.25, 0.12, 0.18, 0.1, 0.05])
    for i in rng.choice(len(geoms), size=6, replace=False):  # farmyards inside fields: holes
        g = geoms[i]
        c = g.representative_point()
        geoms[i] = g.difference(box(c.x - 25, c.y - 25, c.x + 25, c.y + 25))
    for i in rng.choice(len(geoms), size=4, replace=False):  # geocoding errors: overlapping pairs
        geoms[i] = shapely.affinity.translate(geoms[i], xoff=23.0, yoff=-17.0)
    bowtie_at = int(rng.integers(len(geoms)))
    geoms[bowtie_at] = _bowtie(geoms[bowtie_at])

    ids = np.arange(100_001, 100_001 + len(geoms), dtype=np.int64)
    parcels = gpd.GeoDataFrame(
        {
            "parcel_id": ids,
            "class_code": codes.astype(np.int32),
            "class_name": [CLASSES[int(c)] for c in codes],
            "year": np.full(len(geoms), YEAR, dtype=np.int32),
        },
        geometry=geoms,
        crs=WORLD_CRS,
    )
    return World(parcels=parcels, water=water, roads=roads)
