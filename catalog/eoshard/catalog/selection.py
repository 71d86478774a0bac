"""Select the best products for an area and period: duplicates, clouds, AOI cover, dates spread in time.

Deterministic: the same items give the same selection, and every product left out carries its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import shapely

from eoshard.catalog.errors import EmptySelectionError, InvalidQueryError
from eoshard.catalog.records import ProductRecord, record_of

_EPS = 1e-9
MIN_GAIN = 1e-3  # a product adding less than 0.1 % of the AOI to its date's cover is not taken...
MIN_GAIN_OF_PRODUCT = 1e-2  # ...unless that is at least 1 % of its own footprint (an AOI much larger than a tile)


@dataclass(frozen=True)
class Selection:
    """The chosen items, a table of every product's scores and reason, and the AOI part nothing covers."""

    items: pystac.ItemCollection
    table: pd.DataFrame
    uncovered: shapely.Geometry  # EPSG:4326


def _keep_newest(records: list[ProductRecord], reasons: dict[str, str]) -> list[ProductRecord]:
    """Reprocessed copies of one datatake and tile collapse to the newest processing baseline."""
    groups: dict[str, list[ProductRecord]] = {}
    for r in records:
        groups.setdefault(r.datatake, []).append(r)
    kept = []
    for group in groups.values():
        group.sort(
            key=lambda r: (r.processing_baseline or "", str(r.item.properties.get("s2:generation_time", "")), r.id)
        )
        newest = group[-1]
        kept.append(newest)
        for older in group[:-1]:
            reasons[older.id] = f"reprocessed copy: {newest.id} {_why_newer(older, newest)}"
    return kept


def _why_newer(older: ProductRecord, newest: ProductRecord) -> str:
    """The exact reason one copy wins: a newer baseline, else a later generation time, else the id order."""
    if (older.processing_baseline or "") != (newest.processing_baseline or ""):
        return f"has the newer processing baseline {newest.processing_baseline}"
    old_time, new_time = (str(r.item.properties.get("s2:generation_time", "")) for r in (older, newest))
    if old_time != new_time:
        return (
            f"has the same processing baseline {newest.processing_baseline} and was generated later ({new_time})"
        )
    return f"has the same processing baseline {newest.processing_baseline} and generation time: the last id wins"


def spread_dates(days: Sequence[date], k: int, start: date, end: date, min_gap: int = 0,
                 costs: Sequence[float] | None = None) -> list[int]:  # fmt: skip
    """Indices of up to ``k`` of the sorted ``days`` minimising the largest gap (period edges included).

    As many dates as ``min_gap`` allows (up to ``k``); among the choices with the smallest largest gap, the lowest
    total cost (e.g. cloud cover), then the most even gaps (the smallest sum of squared gaps), then the earliest
    indices. Exact: one dynamic programme finds the smallest largest gap, a second the cheapest, then most even,
    choice whose every gap stays within it; O(n² k), vectorised over the previous date.

    The largest gap is often one the choice cannot change (the period's start or end far from any acquisition):
    every choice then ties on it, and without the evenness rule the earliest dates won (six of twelve fortnightly
    acquisitions from April to mid-September, with the period ending on 31 October, were three in April and May
    and three more 45 days apart).
    """
    n = len(days)
    k = min(k, n)
    if k <= 0:
        return []
    cost = np.asarray(costs if costs is not None else [0.0] * n, dtype=np.float64)
    ordinal = np.array([d.toordinal() for d in days], dtype=np.int64)
    lead = (ordinal - start.toordinal()).astype(np.float64)
    tail = (end.toordinal() - ordinal).astype(np.float64)
    shortest = max(min_gap, 1)
    # gap[m, j]: the smallest largest gap choosing m+1 dates ending at day j (a bottleneck path: exact)
    gap = np.full((k, n), np.inf)
    gap[0] = lead
    for m in range(1, k):
        for cols, rows, step in _steps(ordinal, shortest):
            gap[m, cols] = np.where(step >= shortest, np.maximum(gap[m - 1, rows, None], step), np.inf).min(axis=0)
    m = max(m for m in range(k) if np.isfinite(gap[m]).any())  # the most dates the gap rule allows
    best = float(np.maximum(gap[m], tail).min())
    # total[level, j], squares[level, j], back[level, j]: the cheapest, then most even, level+1 dates ending at day
    # j with every gap within ``best`` (the cost and the sum of squared gaps so far)
    total = np.full((m + 1, n), np.inf)
    squares = np.full((m + 1, n), np.inf)
    back = np.full((m + 1, n), -1, dtype=np.int64)
    total[0] = np.where(lead <= best, cost, np.inf)
    squares[0] = lead**2
    for level in range(1, m + 1):
        for cols, rows, step in _steps(ordinal, shortest, best):
            costs_before = np.where((step >= shortest) & (step <= best), total[level - 1, rows, None], np.inf)
            squares_then = squares[level - 1, rows, None] + step**2
            pick, at = _cheapest_then_even(costs_before, squares_then), np.arange(step.shape[1])
            back[level, cols] = rows.start + pick
            total[level, cols] = costs_before[pick, at] + cost[cols]
            squares[level, cols] = squares_then[pick, at]
    ends = np.where(tail <= best, total[m], np.inf)
    j = int(_cheapest_then_even(ends[:, None], (squares[m] + tail**2)[:, None])[0])
    chosen = [j]
    for level in range(m, 0, -1):
        j = int(back[level, j])
        chosen.append(j)
    return sorted(chosen)


def _cheapest_then_even(costs: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Per column, the first row of the lowest cost (within rounding: sums of the same costs in another order),
    and among those the smallest sum of squared gaps."""
    low = costs.min(axis=0)
    tied = costs <= low + 1e-9 * np.maximum(np.abs(low), 1.0)
    return np.where(tied, squares, np.inf).argmin(axis=0)


def _steps(
    ordinal: np.ndarray, shortest: int, longest: float = np.inf, width: int = 256
) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Column blocks of the days from earlier dates (rows) to each date (columns), the rows cut to those a step
    of ``shortest..longest`` days can come from (the dates are sorted): memory and time stay near ``n x width``
    where the longest step spans a fraction of the period."""
    n = len(ordinal)
    for first in range(0, n, width):
        cols = slice(first, min(first + width, n))
        low = 0 if np.isinf(longest) else int(np.searchsorted(ordinal, ordinal[first] - longest, side="left"))
        high = max(int(np.searchsorted(ordinal, ordinal[cols.stop - 1] - shortest, side="right")), low + 1)
        rows = slice(low, high)
        yield cols, rows, (ordinal[None, cols] - ordinal[rows, None]).astype(np.float64)


def _equal_area(
    geoms: Iterable[shapely.Geometry], aoi: shapely.Geometry
) -> tuple[list[shapely.Geometry], shapely.Geometry]:
    """The footprints and the AOI in a Lambert azimuthal equal-area projection centred on the AOI: areas are
    exact at any AOI size (a UTM zone's are not, far from it; an AOI wider or taller than 90 degrees is projected
    with Lambert's cylindrical equal-area projection instead).

    Edges are straight in longitude and latitude (GeoJSON), so they are densified to 0.1 degree first: projected
    as chords, the edges that products and AOIs share at different vertices parted by slivers (0.14 % of an AOI).
    """
    minx, miny, maxx, maxy = aoi.bounds
    if maxx - minx > 90 or maxy - miny > 90:  # beyond a hemisphere the azimuthal one tears: a global one
        crs = "+proj=cea +lon_0=0 +lat_ts=0 +datum=WGS84 +units=m +no_defs"
    else:
        centre = aoi.centroid
        crs = f"+proj=laea +lat_0={centre.y:.6f} +lon_0={centre.x:.6f} +datum=WGS84 +units=m +no_defs"
    series = gpd.GeoSeries(shapely.segmentize([aoi, *geoms], 0.1), crs=4326)
    projected = series.to_crs(crs)
    return list(projected.iloc[1:]), projected.iloc[0]


def select(
    items: Iterable[pystac.Item],
    area: shapely.Geometry,
    start: date | datetime,
    end: date | datetime,
    *,
    max_cloud: float | None = None,
    dates: int | None = None,
    min_gap_days: int = 0,
    cloud_weight: float = 1.0,
    min_aoi_coverage: float = 0.0,
    exclude: Iterable[str] = (),
) -> Selection:
    """Choose products covering ``area`` (EPSG:4326) over the period; see the module docstring.

    Products whose id is in ``exclude`` (a broken or withdrawn product) are left out first: an older processing of
    the same datatake may then take its place. Per date (acquisition) the products covering the AOI with the least
    cloud are kept (``_clearest_cover``); a date whose products cover less than ``min_aoi_coverage`` (0..1) of the
    AOI is left out. The table gives every product's ``aoi_uncovered``: the share of the AOI its date's chosen
    products leave uncovered.
    """
    first, last = _period(start, end)
    _check_limits(max_cloud, dates, min_aoi_coverage)
    bounds = area.bounds
    if area.is_empty or not (bounds[0] >= -180 and bounds[2] <= 180 and bounds[1] >= -90 and bounds[3] <= 90):
        raise InvalidQueryError(
            f"the AOI's bounds {tuple(round(v, 5) for v in bounds)} are not longitude and latitude in degrees: "
            "expected the AOI in EPSG:4326 (a file in metres needs its CRS declared)"
        )
    records = _unique(sorted((record_of(i) for i in items), key=lambda r: (r.datetime, r.id)))
    reasons: dict[str, str] = {}
    footprints, aoi = _equal_area([r.footprint for r in records], area)
    if aoi.area <= 0:
        raise InvalidQueryError(
            f"the AOI {tuple(round(v, 5) for v in area.bounds)} has no area: expected a polygon in degrees "
            "(minx,miny,maxx,maxy with minx < maxx and miny < maxy)"
        )
    geom_of = {r.id: fp for r, fp in zip(records, footprints, strict=True)}
    shared = dict(zip(geom_of, shapely.area(shapely.intersection(list(geom_of.values()), aoi)), strict=True))
    overlap = {r.id: shared[r.id] / aoi.area for r in records}
    inside = {r.id: shared[r.id] / max(geom_of[r.id].area, _EPS) for r in records}
    in_period = []
    excluded = set(exclude)
    for r in records:
        if r.id in excluded:
            reasons[r.id] = "excluded by id"
        elif not first <= r.datetime.date() <= last:
            reasons[r.id] = f"acquired {r.datetime:%Y-%m-%d}, outside {first}..{last}"
        elif r.radar or max_cloud is None:
            in_period.append(r)
        elif r.cloud_cover is not None and r.cloud_cover > max_cloud:
            reasons[r.id] = f"cloud cover {r.cloud_cover}% above {max_cloud:g}%"
        elif max_cloud < 100 and r.cloud_cover is None:  # 100 %: no limit at all
            reasons[r.id] = f"cloud cover unknown (no eo:cloud_cover), max_cloud {max_cloud:g}%"
        else:
            in_period.append(r)
    kept = _keep_newest(in_period, reasons)
    acquisitions: dict[str, list[ProductRecord]] = {}
    for r in kept:
        if overlap[r.id] <= _EPS:
            reasons[r.id] = "does not overlap the AOI"
        else:
            acquisitions.setdefault(r.acquisition, []).append(r)
    cover: dict[str, float] = {}
    chosen_of: dict[str, list[ProductRecord]] = {}
    for key, group in acquisitions.items():
        chosen, remaining = _clearest_cover(group, geom_of, aoi)
        chosen_ids = {r.id for r in chosen}
        for r in group:
            if r.id in chosen_ids:
                continue
            if chosen:
                reasons[r.id] = "the AOI is covered by tiles of this acquisition that add more cloud-free area"
            else:
                reasons[r.id] = f"covers {overlap[r.id]:.3%} of the AOI, a sliver (under {MIN_GAIN:.1%} of it)"
        cover[key] = 1.0 - remaining.area / aoi.area
        if cover[key] < min_aoi_coverage:
            for r in chosen:
                reasons[r.id] = (
                    f"its date covers {cover[key]:.1%} of the AOI, below min_aoi_coverage {min_aoi_coverage:.1%}"
                )
            chosen = []
        chosen_of[key] = chosen
    acquisitions = {k: g for k, g in acquisitions.items() if chosen_of[k]}
    keys = sorted(acquisitions, key=lambda k: (min(r.datetime for r in acquisitions[k]), k))
    if dates is not None and keys:
        days = [min(r.datetime for r in acquisitions[k]).date() for k in keys]
        clouds = [sum(r.cloud_cover or 0.0 for r in chosen_of[k]) / max(len(chosen_of[k]), 1) for k in keys]
        # coverage first: an acquisition that misses part of the AOI costs as much as a fully cloudy one
        costs = [cloud_weight * c + 100.0 * (1.0 - cover[k]) for c, k in zip(clouds, keys, strict=True)]
        picked = set(spread_dates(days, dates, first, last, min_gap_days, costs))
        for n, key in enumerate(keys):
            if n not in picked:
                for r in chosen_of[key]:
                    reasons[r.id] = f"not among the {dates} dates spread over the period"
        keys = [k for n, k in enumerate(keys) if n in picked]
    selected = [r for k in keys for r in chosen_of[k]]
    if not selected:
        raise EmptySelectionError(
            f"none of {len(records)} products qualifies for the AOI {tuple(round(v, 5) for v in area.bounds)} "
            f"between {first} and {last}: {_summary(reasons)}; widen the period, raise max_cloud or check the AOI"
        )
    rows = [
        {"id": r.id, "datetime": r.datetime, "acquisition": r.acquisition, "tile": r.tile,
         "cloud_cover": r.cloud_cover, "aoi_overlap": overlap[r.id], "product_in_aoi": inside[r.id],
         "valid_fraction": overlap[r.id] * _valid_share(r, geom_of[r.id].area),
         "aoi_uncovered": 1.0 - cover[r.acquisition] if r.acquisition in cover else None,
         "selected": r.id not in reasons, "reason": reasons.get(r.id, "")}
        for r in records
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    uncovered_4326 = _uncovered(area, [r.footprint for r in selected])
    return Selection(pystac.ItemCollection([r.item for r in selected], clone_items=False), table, uncovered_4326)


def _period(start: date | datetime | str, end: date | datetime | str) -> tuple[date, date]:
    """The first and last day (dates, datetimes or ISO strings, as ``search`` takes them), in order."""
    days = []
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value[:10])
            except ValueError as err:
                raise InvalidQueryError(f"{name} {value!r} is not a date: expected YYYY-MM-DD") from err
        days.append(value.date() if isinstance(value, datetime) else value)
    if days[1] < days[0]:
        raise InvalidQueryError(f"the period ends ({days[1]}) before it starts ({days[0]}): swap start and end")
    return days[0], days[1]


def _check_limits(max_cloud: float | None, dates: int | None, min_aoi_coverage: float) -> None:
    if max_cloud is not None and not 0 <= max_cloud <= 100:
        raise InvalidQueryError(f"max_cloud is a percentage, 0..100, not {max_cloud:g}")
    if dates is not None and dates < 1:
        raise InvalidQueryError(f"dates is how many dates to choose, at least 1, not {dates}")
    if not 0 <= min_aoi_coverage <= 1:
        raise InvalidQueryError(f"min_aoi_coverage is a share of the AOI, 0..1, not {min_aoi_coverage:g}")


def _unique(records: list[ProductRecord]) -> list[ProductRecord]:
    """One record per id: a source that lists an item twice (two pages, two catalogs merged) gives it once."""
    first: dict[str, ProductRecord] = {}
    for r in records:
        first.setdefault(r.id, r)
    return list(first.values())


def _valid_share(record: ProductRecord, footprint_area: float) -> float:
    """The share of the footprint that holds data: ``1 - s2:nodata_pixel_percentage`` of the product's whole
    grid, over the footprint's part of it. Earth Search's and Planetary Computer's footprints trace the data
    already (a share near 1); a footprint drawn as the whole tile keeps the nodata percentage. 1 where either
    area is unknown (the footprint is taken as the data's)."""
    if record.nodata_percentage is None or record.extent_area is None or footprint_area <= 0:
        return 1.0
    return float(np.clip((1.0 - record.nodata_percentage / 100.0) * record.extent_area / footprint_area, 0.0, 1.0))


def _clearest_cover(
    group: list[ProductRecord], geom_of: dict[str, shapely.Geometry], aoi: shapely.Geometry
) -> tuple[list[ProductRecord], shapely.Geometry]:
    """The products of one date that cover the AOI with the least cloud, and the part none covers.

    Greedy: each step takes the product adding the most *clear* AOI area, ``new area x (1 - cloud %)``
    (unknown cloud counts as fully cloudy), ties to the larger new area, then the first in time/id order, among
    the products that add more than a sliver; it stops when none does. So a 98.6 %-cloud tile covering the whole
    AOI loses to two clearer tiles that cover it together, and is kept only for the part they leave uncovered.
    A sliver adds less than ``MIN_GAIN`` of the AOI and less than ``MIN_GAIN_OF_PRODUCT`` of the product's own
    footprint (a strip between footprints is not worth a product; a whole tile in a continent-sized AOI is).
    """
    remaining, chosen = aoi, []
    candidates = list(group)
    while candidates:
        scored = []
        for i, r in enumerate(candidates):
            gain = remaining.intersection(geom_of[r.id]).area
            if gain < MIN_GAIN * aoi.area and gain < MIN_GAIN_OF_PRODUCT * geom_of[r.id].area:
                continue
            clear = 1.0 - (100.0 if r.cloud_cover is None else r.cloud_cover) / 100.0
            scored.append((gain * clear, gain, -i, r))
        if not scored:
            break
        best = max(scored, key=lambda g: (g[0], g[1], g[2]))[3]
        chosen.append(best)
        candidates.remove(best)
        remaining = remaining.difference(geom_of[best.id])
    return chosen, remaining


def _uncovered(area: shapely.Geometry, footprints: list[shapely.Geometry]) -> shapely.Geometry:
    return area.difference(shapely.union_all(footprints)) if footprints else area


def _summary(reasons: dict[str, str]) -> str:
    kinds = {"excluded": "excluded by id", "cloud cover": "too cloudy", "acquired": "outside the period",
             "reprocessed": "reprocessed copies", "does not overlap": "off the AOI",
             "its date covers": "on dates covering too little of the AOI", "covers": "slivers of the AOI"}  # fmt: skip
    counts = {label: sum(r.startswith(prefix) for r in reasons.values()) for prefix, label in kinds.items()}
    return ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no products"
