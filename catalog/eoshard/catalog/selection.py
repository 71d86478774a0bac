"""Select the best products for an area and period: duplicates, clouds, AOI cover, dates spread in time.

Deterministic: the same items give the same selection, and every product left out carries its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import shapely

from eoshard.catalog.errors import EmptySelectionError
from eoshard.catalog.records import ProductRecord, record_of

_EPS = 1e-9
MIN_GAIN = 1e-3  # a product adding less than 0.1 % of the AOI to its date's cover is not taken


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

    Ties in the largest gap go to the lowest total cost (e.g. cloud cover). Exact dynamic programme, O(n² k), vectorised over the previous date.
    """
    n = len(days)
    k = min(k, n)
    if k <= 0:
        return []
    cost = np.asarray(costs if costs is not None else [0.0] * n, dtype=np.float64)
    ordinal = np.array([d.toordinal() for d in days], dtype=np.int64)
    # gap[m, j], total[m, j]: the best (largest gap so far, cost) choosing m+1 dates ending at day j
    gap = np.full((k, n), np.inf)
    total = np.full((k, n), np.inf)
    back = np.full((k, n), -1, dtype=np.int64)
    gap[0] = (ordinal - start.toordinal()).astype(np.float64)
    total[0] = cost
    for m in range(1, k):
        for j in range(1, n):
            step = (ordinal[j] - ordinal[:j]).astype(np.float64)
            ok = (step >= max(min_gap, 1)) & np.isfinite(gap[m - 1, :j])
            if not ok.any():
                continue
            cand_gap = np.where(ok, np.maximum(gap[m - 1, :j], step), np.inf)
            cand_total = np.where(ok, total[m - 1, :j] + cost[j], np.inf)
            # lexicographic minimum of (gap, cost); the first such i on ties
            tied = np.flatnonzero(cand_gap == cand_gap.min())
            i = int(tied[np.argmin(cand_total[tied])])
            gap[m, j], total[m, j], back[m, j] = cand_gap[i], cand_total[i], i
    for m in range(k - 1, -1, -1):  # the most dates the gap rule allows
        reachable = np.isfinite(gap[m])
        if not reachable.any():
            continue
        final = np.where(reachable, np.maximum(gap[m], (end.toordinal() - ordinal).astype(np.float64)), np.inf)
        tied = np.flatnonzero(final == final.min())
        tied = tied[total[m, tied] == total[m, tied].min()]
        j = int(tied[0])
        chosen = [j]
        for level in range(m, 0, -1):
            j = int(back[level, j])
            chosen.append(j)
        return sorted(chosen)
    return []


def _equal_area(
    geoms: Iterable[shapely.Geometry], aoi: shapely.Geometry
) -> tuple[list[shapely.Geometry], shapely.Geometry]:
    series = gpd.GeoSeries([aoi, *geoms], crs=4326)
    projected = series.to_crs(series.estimate_utm_crs())
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
) -> Selection:
    """Choose products covering ``area`` (EPSG:4326) over the period; see the module docstring.

    Per date (acquisition) the products covering the AOI with the least cloud are kept (``_clearest_cover``);
    a date whose products cover less than ``min_aoi_coverage`` (0..1) of the AOI is left out. The table gives
    every product's ``aoi_uncovered``: the share of the AOI its date's chosen products leave uncovered.
    """
    records = sorted((record_of(i) for i in items), key=lambda r: (r.datetime, r.id))
    reasons: dict[str, str] = {}
    first, last = (d.date() if isinstance(d, datetime) else d for d in (start, end))
    in_period = []
    for r in records:
        if not first <= r.datetime.date() <= last:
            reasons[r.id] = f"acquired {r.datetime:%Y-%m-%d}, outside {first}..{last}"
        elif max_cloud is not None and r.cloud_cover is not None and r.cloud_cover > max_cloud:
            reasons[r.id] = f"cloud cover {r.cloud_cover}% above {max_cloud:g}%"
        elif max_cloud is not None and max_cloud < 100 and r.cloud_cover is None:  # 100 %: no limit at all
            reasons[r.id] = f"cloud cover unknown (no eo:cloud_cover), max_cloud {max_cloud:g}%"
        else:
            in_period.append(r)
    kept = _keep_newest(in_period, reasons)
    footprints, aoi = _equal_area([r.footprint for r in kept], area)
    overlap = {r.id: fp.intersection(aoi).area / aoi.area for r, fp in zip(kept, footprints, strict=True)}
    inside = {r.id: fp.intersection(aoi).area / max(fp.area, _EPS) for r, fp in zip(kept, footprints, strict=True)}
    geom_of = {r.id: fp for r, fp in zip(kept, footprints, strict=True)}
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
            if r.id not in chosen_ids:
                reasons[r.id] = "the AOI is covered by tiles of this acquisition that add more cloud-free area"
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
         "cloud_cover": r.cloud_cover, "aoi_overlap": overlap.get(r.id, 0.0), "product_in_aoi": inside.get(r.id, 0.0),
         "valid_fraction": overlap.get(r.id, 0.0) * (1.0 - (r.nodata_percentage or 0.0) / 100.0)
         if r.nodata_percentage is not None and inside.get(r.id, 0.0) >= 0.999 else overlap.get(r.id, 0.0),
         "aoi_uncovered": 1.0 - cover[r.acquisition] if r.acquisition in cover else 1.0,
         "selected": r.id not in reasons, "reason": reasons.get(r.id, "")}
        for r in records
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    uncovered_4326 = _uncovered(area, [r.footprint for r in selected])
    return Selection(pystac.ItemCollection([r.item for r in selected], clone_items=False), table, uncovered_4326)


def _clearest_cover(
    group: list[ProductRecord], geom_of: dict[str, shapely.Geometry], aoi: shapely.Geometry
) -> tuple[list[ProductRecord], shapely.Geometry]:
    """The products of one date that cover the AOI with the least cloud, and the part none covers.

    Greedy: each step takes the product adding the most *clear* AOI area, ``new area x (1 - cloud %)``
    (unknown cloud counts as fully cloudy), ties to the larger new area, then the first in time/id order; it
    stops when no product adds at least ``MIN_GAIN`` of the AOI. So a 98.6 %-cloud tile covering the whole AOI
    loses to two clearer tiles that cover it together, and is kept only for the part they leave uncovered.
    A product adding less than ``MIN_GAIN`` of the AOI (slivers between footprints) is not taken.
    """
    remaining, chosen = aoi, []
    candidates = list(group)
    while candidates:
        scored = []
        for i, r in enumerate(candidates):
            gain = remaining.intersection(geom_of[r.id]).area
            clear = 1.0 - (100.0 if r.cloud_cover is None else r.cloud_cover) / 100.0
            scored.append((gain * clear, gain, -i, r))
        _, gain, _, best = max(scored, key=lambda g: (g[0], g[1], g[2]))
        if gain / aoi.area < MIN_GAIN:
            break
        chosen.append(best)
        candidates.remove(best)
        remaining = remaining.difference(geom_of[best.id])
    return chosen, remaining


def _uncovered(area: shapely.Geometry, footprints: list[shapely.Geometry]) -> shapely.Geometry:
    return area.difference(shapely.union_all(footprints)) if footprints else area


def _summary(reasons: dict[str, str]) -> str:
    kinds = {"cloud cover": "too cloudy", "acquired": "outside the period", "reprocessed": "reprocessed copies",
             "does not overlap": "off the AOI", "its date covers": "on dates covering too little of the AOI"}  # fmt: skip
    counts = {label: sum(r.startswith(prefix) for r in reasons.values()) for prefix, label in kinds.items()}
    return ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no products"
