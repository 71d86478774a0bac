"""Per-band statistics computed in the same pass as the shards: exact, from integer value histograms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
