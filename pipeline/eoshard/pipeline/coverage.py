"""Exact per-pixel polygon coverage on a grid window: the arithmetic behind the label layers.

Every pixel is a square cell; a parcel's share of it is ``area(cell ∩ parcel) / area(cell)``. Polygons get their
shares from exactextract (``eoshard.pipeline.fractions``), the few cells where float32 could decide otherwise and
other geometries from shapely 2's vectorised set operations (exact polygon areas, no supersampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine

from eoshard.pipeline.fractions import (
    CLAIM_TOLERANCE,
    FULL_TOLERANCE,
    Claims,
    Shares,
    cell_boxes,
    cell_claims,
    exact_cell_shares,
    polygonal,
    settle,
)


@dataclass
class WindowLayers:
    """Per-pixel results for one window: best parcel (row index, -1 none) and the claim bookkeeping."""

    best: np.ndarray  # int64 index into the parcels, -1 where none claims the pixel
    best_share: np.ndarray  # float64 share of the best parcel
    coverage: np.ndarray  # float64 share covered by the union of the parcels
    mixed: np.ndarray  # bool: claimed by two or more parcels that differ in the compared attribute
    full_and_claimed: np.ndarray  # bool: fully inside one parcel and claimed by another


def parcel_shares(geom: shapely.Geometry, transform: Affine, shape: tuple[int, int]) -> Shares:
    """Rows, columns and shares of the window pixels that ``geom`` claims.

    Only the cells near the parcel's boundary are tested with polygon operations (``contains_properly``, then an
    exact intersection); a cell at least one cell away from every boundary point lies wholly inside or outside,
    so its centre decides: 1 inside, unclaimed outside. This gives exactly what testing every cell gives.
    """
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
    # Prepare a private copy: the parcel is shared by the windows (threads) it touches, and preparing one geometry
    # from two threads at once crashes GEOS.
    geom = shapely.from_wkb(shapely.to_wkb(geom))
    shapely.prepare(geom)
    near = _near_boundary(geom, inverse, rows, cols)
    shares = np.zeros(rr.size)
    if near is None:  # not a (multi)polygon: test every cell
        near = np.ones(rr.size, dtype=bool)
    far = ~near
    if far.any():
        x, y = transform * (cc[far] + 0.5, rr[far] + 0.5)
        shares[far] = shapely.contains_xy(geom, x, y)
    shares[near] = exact_cell_shares(geom, transform, rr[near], cc[near])
    claimed = shares > CLAIM_TOLERANCE
    return rr[claimed], cc[claimed], shares[claimed]


def _near_boundary(
    geom: shapely.Geometry, inverse: Affine, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray | None:
    """Flat mask over the ``rows`` x ``cols`` cells: within one cell of a cell the boundary passes through.

    The boundary is sampled every half cell, so a cell it crosses unsampled neighbours a sampled one: the one-cell
    margin covers it. None for geometries without a polygon boundary (collections).
    """
    if shapely.get_type_id(geom) not in (3, 6):  # Polygon, MultiPolygon
        return None
    coords, part = shapely.get_coordinates(shapely.boundary(geom), return_index=True)
    if len(coords) < 2:
        return None
    col = inverse.a * coords[:, 0] + inverse.b * coords[:, 1] + inverse.c
    row = inverse.d * coords[:, 0] + inverse.e * coords[:, 1] + inverse.f
    same = part[1:] == part[:-1]
    r0, r1, c0, c1 = row[:-1][same], row[1:][same], col[:-1][same], col[1:][same]
    steps = np.ceil(np.hypot(r1 - r0, c1 - c0) * 2).astype(np.int64) + 1
    segment = np.repeat(np.arange(steps.size), steps)
    t = (np.arange(segment.size) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(
        np.maximum(steps - 1, 1), steps
    )
    ys = np.floor(r0[segment] + t * (r1 - r0)[segment]).astype(np.int64) - rows[0] + 1
    xs = np.floor(c0[segment] + t * (c1 - c0)[segment]).astype(np.int64) - cols[0] + 1
    hit = np.zeros((rows.size + 2, cols.size + 2), dtype=bool)
    keep = (ys >= 0) & (ys < hit.shape[0]) & (xs >= 0) & (xs < hit.shape[1])
    hit[ys[keep], xs[keep]] = True
    near = np.zeros_like(hit)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near[max(dy, 0) : hit.shape[0] + min(dy, 0), max(dx, 0) : hit.shape[1] + min(dx, 0)] |= hit[
                max(-dy, 0) : hit.shape[0] + min(-dy, 0), max(-dx, 0) : hit.shape[1] + min(-dx, 0)
            ]
    return near[1:-1, 1:-1].ravel()


def window_shares(geoms: np.ndarray, transform: Affine, shape: tuple[int, int]) -> Claims:
    """Every claim of ``geoms`` on the window's pixels (flat pixel, parcel index, share), as ``parcel_shares``
    gives them: exactextract's shares for polygons on a north-up grid, settled exactly where decisions are close."""
    fast = polygonal(geoms) if transform.b == transform.d == 0 else np.zeros(len(geoms), dtype=bool)
    picked = np.flatnonzero(fast)
    pixel, owner, share = cell_claims(geoms[picked], transform, shape)
    owner = picked[owner]
    slow = np.flatnonzero(~fast)  # collections, or a rotated grid: GEOS alone
    if slow.size:
        found = [parcel_shares(geoms[n], transform, shape) for n in slow]
        pixel = np.concatenate([pixel, *(rows * shape[1] + cols for rows, cols, _ in found)])
        owner = np.concatenate([owner, np.repeat(slow, [rows.size for rows, _, _ in found])])
        share = np.concatenate([share, *(shares for _, _, shares in found)])
        order = np.argsort(owner, kind="stable")  # in parcel order, as the polygons' own claims come
        pixel, owner, share = pixel[order], owner[order], share[order]
    return settle((pixel, owner, share), fast, geoms, transform, shape)


def window_layers(
    geoms: np.ndarray, attribute: np.ndarray, transform: Affine, shape: tuple[int, int]
) -> WindowLayers:
    """Coverage, best parcel and double-assignment masks of a window from the parcels touching it.

    ``geoms`` are in the order that breaks ties (the first parcel wins an exact tie); ``attribute`` (class or id)
    decides whether two claims on one pixel are a mix.
    """
    size = shape[0] * shape[1]
    pixel, owner, share = window_shares(geoms, transform, shape)
    claims = np.bincount(pixel, minlength=size)
    multi = claims >= 2
    best = np.full(size, -1, dtype=np.int64)
    best_share = np.zeros(size)
    coverage = np.zeros(size)
    # a pixel with one claim: its parcel and share, no mix, no double claim
    one = ~multi[pixel]
    alone = pixel[one]
    best[alone] = owner[one]
    best_share[alone] = coverage[alone] = share[one]
    pixel, owner, share = pixel[~one], owner[~one], share[~one]
    # per pixel, the largest share first and, among equal shares, the first parcel: the winner leads its pixel
    order = np.lexsort((owner, -share, pixel))
    pixel, owner, share = pixel[order], owner[order], share[order]
    lead = np.flatnonzero(np.r_[True, pixel[1:] != pixel[:-1]]) if pixel.size else np.empty(0, np.int64)
    best[pixel[lead]] = owner[lead]
    best_share[pixel[lead]] = share[lead]
    values = attribute[owner] if owner.size else np.empty(0, dtype=np.int64)
    mixed = np.zeros(size, dtype=bool)
    full = np.zeros(size, dtype=bool)
    if lead.size:
        mixed[pixel[lead]] = np.maximum.reduceat(values, lead) != np.minimum.reduceat(values, lead)
        full[pixel[lead]] = np.maximum.reduceat(share >= 1.0 - FULL_TOLERANCE, lead)
        # several claims: the share of their union, not the sum of shares
        _union_shares(coverage, multi, pixel, owner, geoms, transform, shape[1])
    return WindowLayers(
        best.reshape(shape),
        best_share.reshape(shape),
        np.minimum(coverage, 1.0).reshape(shape),
        mixed.reshape(shape),
        (full & multi).reshape(shape),
    )


def _union_shares(
    coverage: np.ndarray,
    multi: np.ndarray,
    pixel: np.ndarray,
    owner: np.ndarray,
    geoms: np.ndarray,
    transform: Affine,
    width: int,
) -> None:
    """Per multiply-claimed pixel, the share of the union of exactly its claimants (so chunks agree bit for bit)."""
    pick = multi[pixel]
    order = np.lexsort((owner[pick], pixel[pick]))
    pixels, owners = pixel[pick][order], owner[pick][order]
    starts = np.flatnonzero(np.r_[True, pixels[1:] != pixels[:-1]])
    pixel_area = abs(transform.a * transform.e)
    for start, stop in zip(starts, np.r_[starts[1:], pixels.size], strict=True):
        at = int(pixels[start])
        cell = cell_boxes(transform, np.array([at // width]), np.array([at % width]))[0]
        pieces = shapely.intersection(cell, geoms[owners[start:stop]])
        coverage[at] = shapely.area(shapely.union_all(pieces)) / pixel_area
