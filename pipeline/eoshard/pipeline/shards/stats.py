"""Per-band statistics computed in the same pass as the shards.

Integer bands: exact, from value histograms. Float bands: float64 moments, exact min/max, binned percentiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

PERCENTILES = (1, 2, 5, 50, 95, 98, 99)
Histogram = dict[int, int]


def histogram(values: np.ndarray, nodata: int = 0) -> Histogram:
    """Value -> count of the non-nodata integer ``values``."""
    flat = values.ravel()
    flat = flat[flat != nodata]
    uniques, counts = np.unique(flat, return_counts=True)
    return {int(v): int(c) for v, c in zip(uniques, counts, strict=True)}


def merge(histograms: Iterable[Mapping[int, int]]) -> Histogram:
    total: Histogram = {}
    for h in histograms:
        for value, count in h.items():
            total[value] = total.get(value, 0) + count
    return total


class HistogramTotal:
    """The sum of many integer histograms given as ``to_json``'s lists, merged with numpy a batch at a time: a
    build's finalize adds every shard's histogram of every band (a dict per shard cost O(values) Python steps)."""

    def __init__(self, batch: int = 1 << 20) -> None:
        self.batch = batch  # entries held before they are merged (memory stays bounded whatever the shards)
        self._values = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._held = 0

    def add(self, data: Sequence[Sequence[int]]) -> None:
        if not data[0]:
            return
        self._pending.append((np.asarray(data[0], dtype=np.int64), np.asarray(data[1], dtype=np.int64)))
        self._held += len(data[0])
        if self._held >= self.batch:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        values = np.concatenate([self._values, *(v for v, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        self._values, self._counts = values[starts], np.add.reduceat(counts, starts)
        self._pending, self._held = [], 0

    def result(self) -> Histogram:
        self._merge()
        return dict(zip(self._values.tolist(), self._counts.tolist(), strict=True))


def summarise(h: Mapping[int, int]) -> dict[str, Any]:
    """Count, mean, std, min, max and percentiles (the smallest value whose cumulative share reaches p %)."""
    if not h:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None, "percentiles": {}}
    values = np.array(sorted(h), dtype=np.float64)
    counts = np.array([h[int(v)] for v in values], dtype=np.float64)
    n = counts.sum()
    mean = float((values * counts).sum() / n)
    std = float(np.sqrt((counts * (values - mean) ** 2).sum() / n))
    cumulative = np.cumsum(counts)
    percentiles = {
        str(p): float(values[int(np.searchsorted(cumulative, p / 100 * n, side="left"))]) for p in PERCENTILES
    }
    return {
        "count": int(n),
        "mean": mean,
        "std": std,
        "min": float(values[0]),
        "max": float(values[-1]),
        "percentiles": percentiles,
    }


def to_json(h: Mapping[int, int]) -> list[list[int]]:
    """A histogram as ``[[values...], [counts...]]`` (JSON keys would be strings)."""
    keys = sorted(h)
    return [keys, [h[k] for k in keys]]


def from_json(data: list[list[int]]) -> Histogram:
    return dict(zip(data[0], data[1], strict=True))


# Float bands (reflectance, indices): moments in float64, exact min/max, percentiles from a histogram of the
# float32 bit patterns with the low mantissa bits cleared (bounded: at most 2**20 bins whatever the range).
FLOAT_DROPPED_BITS = 12
_BIN_MASK = np.uint32((0xFFFFFFFF << FLOAT_DROPPED_BITS) & 0xFFFFFFFF)
_BIN_MIDDLE = np.uint32(1 << (FLOAT_DROPPED_BITS - 1))
FLOAT_HISTOGRAM = (
    f"float32 bins of {23 - FLOAT_DROPPED_BITS} mantissa bits (relative error <= 2**-{24 - FLOAT_DROPPED_BITS})"
)


@dataclass(frozen=True)
class FloatStats:
    """Mergeable statistics of float values: count, sum, sum of squared deviations (``m2``), min, max, bins."""

    count: int
    sum: float
    m2: float
    min: float
    max: float
    bins: Mapping[int, int]  # float32 bit pattern, low FLOAT_DROPPED_BITS cleared -> count


def float_stats(values: np.ndarray) -> FloatStats:
    """The statistics of the finite ``values`` (NaN is the nodata of float bands; infinities are left out too)."""
    flat = _finite(values)
    return replace(_moments(flat), bins=_bins(_bin_counts(flat)))


def _finite(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float32).ravel()
    return flat[np.isfinite(flat)] + np.float32(0.0)  # -0.0 + 0.0 = 0.0: one bin for zero


def _moments(flat: np.ndarray) -> FloatStats:
    """``flat``'s statistics without bins."""
    if flat.size == 0:
        return FloatStats(0, 0.0, 0.0, float("inf"), float("-inf"), {})
    wide = flat.astype(np.float64)
    total = float(wide.sum())
    m2 = float(((wide - total / flat.size) ** 2).sum())
    return FloatStats(int(flat.size), total, m2, float(flat.min()), float(flat.max()), {})


def _bin_counts(flat: np.ndarray) -> np.ndarray:
    """Count per bin, indexed by the bit pattern shifted right by ``FLOAT_DROPPED_BITS`` (no sort, unlike
    ``np.unique``: at most 2**20 counts)."""
    return np.bincount(flat.view(np.uint32) >> FLOAT_DROPPED_BITS)


def _bins(counts: np.ndarray) -> dict[int, int]:
    keys = np.flatnonzero(counts)
    return dict(zip((keys << FLOAT_DROPPED_BITS).tolist(), counts[keys].tolist(), strict=True))


def merge_float(parts: Iterable[FloatStats]) -> FloatStats:
    """Chan et al.'s pairwise update of the moments; bins add up."""
    out = FloatStats(0, 0.0, 0.0, float("inf"), float("-inf"), {})
    for p in parts:
        if p.count == 0:
            continue
        if out.count == 0:
            out = p
            continue
        n = out.count + p.count
        delta = p.sum / p.count - out.sum / out.count
        m2 = out.m2 + p.m2 + delta * delta * out.count * p.count / n
        bins = dict(out.bins)
        for k, c in p.bins.items():
            bins[k] = bins.get(k, 0) + c
        out = FloatStats(n, out.sum + p.sum, m2, min(out.min, p.min), max(out.max, p.max), bins)
    return out


def summarise_float(s: FloatStats) -> dict[str, Any]:
    """As ``summarise``; percentiles are the middle of their bin, clipped to [min, max]."""
    if s.count == 0:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None, "percentiles": {}}
    keys = np.array(sorted(s.bins), dtype=np.uint32)
    counts = np.array([s.bins[int(k)] for k in keys], dtype=np.float64)
    middles = (keys | _BIN_MIDDLE).view(np.float32).astype(np.float64)
    order = np.argsort(middles, kind="stable")  # bit patterns of negative floats sort backwards
    middles, cumulative = middles[order], np.cumsum(counts[order])
    percentiles = {
        str(p): float(
            np.clip(middles[int(np.searchsorted(cumulative, p / 100 * s.count, side="left"))], s.min, s.max)
        )
        for p in PERCENTILES
    }
    return {
        "count": s.count,
        "mean": s.sum / s.count,
        "std": float(np.sqrt(s.m2 / s.count)),
        "min": s.min,
        "max": s.max,
        "percentiles": percentiles,
        "histogram": FLOAT_HISTOGRAM,
    }


Partial = Histogram | FloatStats


class BandStats:
    """One band's partial statistics over many arrays: a running ``bincount`` for 8- and 16-bit integers (the
    same histogram as ``histogram``, without a dict per array); for float arrays their moments, merged as
    ``merge_float`` merges them, and a running count of their bins (the bins ``float_stats`` gives, without a sort
    and a dict per array); ``collect`` per array otherwise."""

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None
        self.bin_counts: np.ndarray | None = None
        self.parts: list[Partial] = []

    def add(self, values: np.ndarray) -> None:
        if values.dtype in (np.uint8, np.uint16):
            # as long as the largest value, not the dtype's range: a 16-bit band's 512 KiB zeroed and added per
            # array cost more than its counting
            counts = np.bincount(values.ravel())
            if self.counts is None:
                self.counts = np.zeros(1 << (8 * values.dtype.itemsize), dtype=counts.dtype)
            self.counts[: counts.size] += counts
        elif values.dtype.kind == "f":
            flat = _finite(values)
            self.parts.append(_moments(flat))
            counts = _bin_counts(flat)
            if self.bin_counts is None or self.bin_counts.size < counts.size:
                grown = np.zeros(counts.size, dtype=np.int64)
                if self.bin_counts is not None:
                    grown[: self.bin_counts.size] = self.bin_counts
                self.bin_counts = grown
            self.bin_counts[: counts.size] += counts
        else:
            self.parts.append(collect(values))

    def _counted(self) -> list[list[int]]:
        """The running count as ``to_json``'s lists: counted values (0, the nodata of integer bands, left out)."""
        assert self.counts is not None
        values = np.flatnonzero(self.counts[1:]) + 1
        return [values.tolist(), self.counts[values].tolist()]

    def result(self) -> Partial:
        parts = list(self.parts)
        if self.counts is not None:
            parts.append(from_json(self._counted()))
        merged = combine(parts)
        if self.bin_counts is not None and isinstance(merged, FloatStats):
            return replace(merged, bins=_bins(self.bin_counts))
        return merged

    def dumped(self) -> Any:
        """``dump(self.result())``; an integer band's running count goes to ``to_json``'s lists straight from numpy
        (no dict of its values per shard and band)."""
        if self.parts or self.counts is None:
            return dump(self.result())
        return self._counted()


def collect(values: np.ndarray) -> Partial:
    """The partial statistics of one band's values: an integer histogram, or ``FloatStats`` for float bands."""
    return float_stats(values) if values.dtype.kind == "f" else histogram(values)


def combine(parts: Iterable[Partial]) -> Partial:
    """Merge partials of one band: ``FloatStats`` if any (a shard without samples holds an empty histogram)."""
    items = list(parts)
    floats = [p for p in items if isinstance(p, FloatStats)]
    if floats:
        return merge_float(floats)
    return merge(p for p in items if not isinstance(p, FloatStats))


def summary(part: Partial) -> dict[str, Any]:
    return summarise_float(part) if isinstance(part, FloatStats) else summarise(part)


def dump(part: Partial) -> Any:
    """JSON: an integer histogram as ``to_json``; float statistics as an object (bins as two lists)."""
    if not isinstance(part, FloatStats):
        return to_json(part)
    return {
        "count": part.count,
        "sum": part.sum,
        "m2": part.m2,
        "min": part.min if part.count else None,
        "max": part.max if part.count else None,
        "bins": to_json(part.bins),
    }


def load(data: Any) -> Partial:
    if not isinstance(data, dict):
        return from_json(data)
    empty = data["count"] == 0
    return FloatStats(
        int(data["count"]),
        float(data["sum"]),
        float(data["m2"]),
        float("inf") if empty else float(data["min"]),
        float("-inf") if empty else float(data["max"]),
        from_json(data["bins"]),
    )
