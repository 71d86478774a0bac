"""Per-cell coverage fractions of many polygons at once, with exactextract.

exactextract walks each polygon's rings through the grid and gives the exact share of every cell it touches
(computed in double precision, returned as float32), about ten times faster than a GEOS intersection per
boundary cell. ``eoshard.pipeline.coverage`` uses these shares wherever float32 precision decides the same as
double precision would, and recomputes the few others with GEOS (see there).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import shapely
from affine import Affine

Shares = tuple[np.ndarray, np.ndarray, np.ndarray]  # rows, columns, shares (float64) of one polygon's cells
Claims = tuple[np.ndarray, np.ndarray, np.ndarray]  # flat pixel, polygon index, share of every claim in a window

# A parcel claims a pixel when it covers more than this share of it; shared edges cover exactly 0.
CLAIM_TOLERANCE = 1e-9
FULL_TOLERANCE = 1e-9
# exactextract's shares are within this of the exact ones; closer decisions are recomputed with GEOS.
MARGIN = 1e-6

# exactextract crashes when two threads of one process run it at once (seen with dask's threaded scheduler).
_EXACTEXTRACT = threading.Lock()
_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


def cell_boxes(transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The square cells of pixels ``(rows, cols)`` of a north-up grid, as shapely polygons."""
    x0 = transform.c + cols * transform.a
    y0 = transform.f + rows * transform.e
    return shapely.box(x0, y0 + transform.e, x0 + transform.a, y0)


def exact_cell_shares(geom: shapely.Geometry, transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Double-precision shares of the cells ``(rows, cols)`` in ``geom`` (prepared, private to the caller): 1 for
    cells strictly inside, else the GEOS intersection's area over the cell's."""
    cells = cell_boxes(transform, rows, cols)
    shares = shapely.contains_properly(geom, cells).astype(np.float64)
    edge = shares == 0
    edge[edge] = shapely.intersects(geom, cells[edge])  # the others share nothing (an empty intersection)
    shares[edge] = shapely.area(shapely.intersection(cells[edge], geom)) / abs(transform.a * transform.e)
    return shares


def polygonal(geoms: np.ndarray) -> np.ndarray:
    """Which geometries exactextract takes (polygons and multipolygons; collections go through GEOS)."""
    return np.isin(shapely.get_type_id(geoms), _POLYGONAL)


def cell_claims(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]) -> Claims:
    """Every window cell each polygon of ``geoms`` covers at all: flat pixel, index into ``geoms``, float32 share
    (as float64), the polygons in order.

    ``transform`` must be north-up (no rotation); the window is ``shape`` cells from its origin.
    """
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    from eoshard.pipeline.wkb_features import CellWriter, WkbFeatureSource

    height, width = shape
    a, e = transform.a, transform.e
    some = np.flatnonzero(shapely.area(geoms) > 0)
    if some.size == 0:
        return _no_claims()
    # The raster spans the polygons whole (snapped to the grid) plus a margin of one cell, whatever the window:
    # a polygon's shares then do not depend on the window asked for (labels are the same whatever the chunking),
    # and no ring can lie on the raster's edge (exactextract crashes on that: a hole's side on the edge).
    minx, miny, maxx, maxy = shapely.total_bounds(geoms[some])
    c0 = math.floor((minx - transform.c) / a) - 1
    c1 = math.ceil((maxx - transform.c) / a) + 1
    r0 = math.floor((maxy - transform.f) / e) - 1
    r1 = math.ceil((miny - transform.f) / e) + 1
    raster = NumPyRasterSource(  # exactextract takes the grid from extent and shape: a view costs no memory
        np.broadcast_to(np.zeros(1, np.uint8), (r1 - r0, c1 - c0)),
        xmin=transform.c + c0 * a,
        ymin=transform.f + r1 * e,
        xmax=transform.c + c1 * a,
        ymax=transform.f + r0 * e,
    )
    features = WkbFeatureSource(list(zip(some.tolist(), shapely.to_wkb(geoms[some]), strict=True)))
    with _EXACTEXTRACT:
        found = exact_extract(raster, features, ["cell_id", "coverage"], include_cols=["n"], output=CellWriter())
    if not found["n"]:
        return _no_claims()
    # the cells of all polygons at once: a shard task's worker loads no pandas, and no array is made per polygon
    ids = np.concatenate(found["cell_id"]).astype(np.int64, copy=False)
    owner = np.repeat(np.asarray(found["n"], dtype=np.int64), [c.size for c in found["cell_id"]])
    cover = np.concatenate(found["coverage"]).astype(np.float32).astype(np.float64)
    rows, cols = np.divmod(ids, c1 - c0)
    rows += r0
    cols += c0
    keep = (cover > 0) & (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    return rows[keep] * width + cols[keep], owner[keep], cover[keep]


def _no_claims() -> Claims:
    empty = np.empty(0, dtype=np.int64)
    return empty, empty, np.empty(0)


def settle(
    claims: Claims, approx: np.ndarray, geoms: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> Claims:
    """The window's claims, with exact double-precision shares wherever exactextract's could decide otherwise.

    ``approx`` says which parcels' shares come from ``cell_claims``: they are within ``MARGIN`` of the exact
    ones (measured up to 6e-8 on real parcels; slivers are found and accurate), so every claim on a pixel is
    recomputed with GEOS where a decision is that close: a share below ``MARGIN`` (the claim rule), two largest
    claims within ``2 * MARGIN`` (the tie rule) or a claim within ``MARGIN`` of full (the double-claim rule).
    """
    width = shape[1]
    pixel, owner, share = claims
    share = share.copy()  # the recomputed shares go in place
    # most pixels have one claim, which only the claim rule can make close: only the others are sorted
    several = np.bincount(pixel, minlength=shape[0] * width)[pixel] >= 2
    p, s = pixel[several], share[several]
    order = np.lexsort((-s, p))  # by pixel, the largest share first
    p, s = p[order], s[order]
    first = np.r_[True, p[1:] != p[:-1]] if p.size else np.empty(0, bool)
    second = np.r_[s[1:], 0.0] if s.size else s
    paired = np.r_[~first[1:], False] & (second > CLAIM_TOLERANCE) if p.size else first  # a second claim follows
    close = paired & ((s - second <= 2 * MARGIN) | (s >= 1.0 - FULL_TOLERANCE - MARGIN))
    redone = np.zeros(shape[0] * width, dtype=bool)
    redone[p[first & close]] = True
    redone[pixel[share < MARGIN]] = True
    redo = approx[owner] & redone[pixel]
    for n in np.unique(owner[redo]):
        pick = redo & (owner == n)
        geom = shapely.from_wkb(shapely.to_wkb(geoms[n]))  # a private copy to prepare (see coverage)
        shapely.prepare(geom)
        share[pick] = exact_cell_shares(geom, transform, pixel[pick] // width, pixel[pick] % width)
    keep = share > CLAIM_TOLERANCE
    return pixel[keep], owner[keep], share[keep]
