"""Exact per-pixel polygon coverage on a grid window: the arithmetic behind the label layers.

Every pixel is a square cell; a parcel's share of it is ``area(cell ∩ parcel) / area(cell)``, computed with
shapely 2's vectorised set operations (exact polygon areas, no supersampling). Cells strictly inside a parcel
are recognised with a prepared ``contains_properly`` test and count as 1 without an intersection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine

# A parcel claims a pixel when it covers more than this share of it; shared edges cover exactly 0.
CLAIM_TOLERANCE = 1e-9
FULL_TOLERANCE = 1e-9


@dataclass
class WindowLayers:
    """Per-pixel results for one window: best parcel (row index, -1 none) and the claim bookkeeping."""

    best: np.ndarray  # int64 index into the parcels, -1 where none claims the pixel
    best_share: np.ndarray  # float64 share of the best parcel
    coverage: np.ndarray  # float64 share covered by the union of the parcels
    mixed: np.ndarray  # bool: claimed by two or more parcels that differ in the compared attribute
    full_and_claimed: np.ndarray  # bool: fully inside one parcel and claimed by another


def cell_boxes(transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The square cells of pixels ``(rows, cols)`` of a north-up grid, as shapely polygons."""
    x0 = transform.c + cols * transform.a
    y0 = transform.f + rows * transform.e
    return shapely.box(x0, y0 + transform.e, x0 + transform.a, y0)


def parcel_shares(geom: shapely.Geometry, transform: Affine, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Rows, columns and shares of the window pixels that ``geom`` claims."""
    height, width = shape
    inverse = ~transform
    minx, miny, maxx, maxy = geom.bounds
    c0, r0 = inverse * (minx, maxy)
    c1, r1 = inverse * (maxx, miny)
    rows = np.arange(max(0, int(np.floor(r0))), min(height, int(np.ceil(r1))))
    cols = np.arange(max(0, int(np.floor(c0))), min(width, int(np.ceil(c1))))
    if rows.size == 0 or cols.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    cells = cell_boxes(transform, rr, cc)
    # Prepare a private copy: the parcel is shared by the windows (threads) it touches, and preparing one geometry
    # from two threads at once crashes GEOS.
    geom = shapely.from_wkb(shapely.to_wkb(geom))
    shapely.prepare(geom)
    inside = shapely.contains_properly(geom, cells)
    shares = np.ones(rr.size)
    edge = ~inside
    pixel_area = abs(transform.a * transform.e)
    shares[edge] = shapely.area(shapely.intersection(cells[edge], geom)) / pixel_area
    claimed = shares > CLAIM_TOLERANCE
    return rr[claimed], cc[claimed], shares[claimed]


def window_layers(
    geoms: np.ndarray, attribute: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> WindowLayers:
    """Coverage, best parcel and double-assignment masks of a window from the parcels touching it.

    ``geoms`` are in the order that breaks ties (the first parcel wins an exact tie); ``attribute`` (class or id)
    decides whether two claims on one pixel are a mix.
    """
    best = np.full(shape, -1, dtype=np.int64)
    best_share = np.zeros(shape)
    share_sum = np.zeros(shape)
    claims = np.zeros(shape, dtype=np.int32)
    first_attr = np.zeros(shape, dtype=attribute.dtype if attribute.size else np.int64)
    mixed = np.zeros(shape, dtype=bool)
    full = np.zeros(shape, dtype=bool)
    claimed_by: list[tuple[np.ndarray, int]] = []  # (flat pixel indices, parcel index)
    for index, geom in enumerate(geoms):
        rows, cols, shares = parcel_shares(geom, transform, shape)
        if rows.size == 0:
            continue
        claimed_by.append((rows * shape[1] + cols, index))
        fresh = claims[rows, cols] == 0
        first_attr[rows[fresh], cols[fresh]] = attribute[index]
        mixed[rows[~fresh], cols[~fresh]] |= first_attr[rows[~fresh], cols[~fresh]] != attribute[index]
        claims[rows, cols] += 1
        full[rows, cols] |= shares >= 1.0 - FULL_TOLERANCE
        share_sum[rows, cols] += shares
        better = shares > best_share[rows, cols]
        best[rows[better], cols[better]] = index
        best_share[rows[better], cols[better]] = shares[better]
    coverage = share_sum.copy()
    multi = claims >= 2
    if multi.any():  # overlapping or adjacent parcels: the share of their union, not the sum of shares
        _union_shares(coverage, multi, claimed_by, geoms, transform)
    return WindowLayers(best, best_share, np.minimum(coverage, 1.0), mixed, full & multi)


def _union_shares(
    coverage: np.ndarray,
    multi: np.ndarray,
    claimed_by: list[tuple[np.ndarray, int]],
    geoms: np.ndarray,
    transform: Affine,
) -> None:
    """Per multiply-claimed pixel, the share of the union of exactly its claimants (so chunks agree bit for bit)."""
    flat_multi = multi.ravel()
    pixels = np.concatenate([p[flat_multi[p]] for p, _ in claimed_by])
    owners = np.concatenate([np.full(int(flat_multi[p].sum()), i) for p, i in claimed_by])
    order = np.lexsort((owners, pixels))
    pixels, owners = pixels[order], owners[order]
    starts = np.flatnonzero(np.r_[True, pixels[1:] != pixels[:-1]])
    width = coverage.shape[1]
    pixel_area = abs(transform.a * transform.e)
    for start, stop in zip(starts, np.r_[starts[1:], pixels.size], strict=True):
        pixel = int(pixels[start])
        cell = cell_boxes(transform, np.array([pixel // width]), np.array([pixel % width]))[0]
        pieces = shapely.intersection(cell, geoms[owners[start:stop]])
        coverage[pixel // width, pixel % width] = shapely.area(shapely.union_all(pieces)) / pixel_area
