"""Statistics of float bands: float64 moments, exact min/max, percentiles within one bin, mergeable, NaN left out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eoshard.pipeline.shards import stats


def _values(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # reflectance-like values, a few negatives (DN below the offset), NaN nodata, a signed zero
    values = rng.gamma(2.0, 0.08, size=(6, 40, 40)).astype(np.float32) - np.float32(0.01)
    values[0, :5] = np.nan
    values[1, 0, 0] = np.float32(-0.0)
    return values


def test_moments_and_extremes_equal_numpy_in_float64() -> None:
    values = _values()
    finite = values[~np.isnan(values)].astype(np.float64)
    summary = stats.summary(stats.collect(values))
    assert summary["count"] == finite.size == values.size - 5 * 40
    assert summary["min"] == finite.min() and summary["max"] == finite.max()
    assert summary["mean"] == pytest.approx(finite.mean(), rel=1e-13)
    assert summary["std"] == pytest.approx(finite.std(), rel=1e-12)


def test_percentiles_lie_within_half_a_bin_of_numpy() -> None:
    values = _values()
    finite = values[~np.isnan(values)].astype(np.float64)
    summary = stats.summary(stats.collect(values))
    assert list(summary["percentiles"]) == [str(p) for p in stats.PERCENTILES]
    for p, got in summary["percentiles"].items():
        want = np.percentile(finite, float(p), method="inverted_cdf")
        assert abs(got - want) <= abs(want) * 2.0**-12, (p, got, want)
    assert summary["histogram"] == stats.FLOAT_HISTOGRAM


def test_merging_shard_partials_through_json_equals_one_pass() -> None:
    values = _values(1)
    whole = stats.summary(stats.collect(values))
    parts = [stats.collect(values[i]) for i in range(values.shape[0])]
    dumped = [stats.load(json.loads(json.dumps(stats.dump(p)))) for p in parts]
    empty_shard = stats.load(stats.dump({}))  # a shard whose samples were all dropped
    merged = stats.summary(stats.combine([empty_shard, *dumped]))
    assert merged["count"] == whole["count"] and merged["percentiles"] == whole["percentiles"]
    assert (merged["min"], merged["max"]) == (whole["min"], whole["max"])
    assert merged["mean"] == pytest.approx(whole["mean"], rel=1e-13)
    assert merged["std"] == pytest.approx(whole["std"], rel=1e-12)


def test_bins_stay_bounded_over_any_range() -> None:
    values = np.geomspace(1e-30, 1e30, 200_000).astype(np.float32)
    both = np.concatenate([values, -values])
    part = stats.collect(both)
    assert isinstance(part, stats.FloatStats)
    # 2 signs x 200 binades x 2**11 bins at most, whatever the number of values
    assert len(part.bins) <= 2 * 200 * 2**11
    summary = stats.summary(part)
    assert summary["min"] == float(-values[-1]) and summary["max"] == float(values[-1])
    for p, got in summary["percentiles"].items():
        want = np.percentile(both.astype(np.float64), float(p), method="inverted_cdf")
        assert abs(got - want) <= abs(want) * 2.0**-12, (p, got, want)


def test_all_nodata_and_integer_bands() -> None:
    empty = stats.summary(stats.collect(np.full((2, 3), np.nan, dtype=np.float32)))
    assert empty == {"count": 0, "mean": None, "std": None, "min": None, "max": None, "percentiles": {}}
    dn = np.array([[0, 5, 5, 7]], dtype=np.uint16)
    assert stats.collect(dn) == {5: 2, 7: 1}  # integer bands: the exact histogram, 0 is nodata
    assert stats.dump(stats.collect(dn)) == [[5, 7], [2, 1]]


def test_band_stats_bincount_equals_the_merged_histograms() -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 4000, (3, 17, 13)).astype(np.uint16) for _ in range(4)]
    arrays.append(np.zeros((2, 5, 5), np.uint16))  # all nodata
    arrays.append(np.array([[65535, 65535, 1]], np.uint16))  # the largest value after smaller ones
    arrays.append(np.zeros((0, 4), np.uint16))  # no pixels
    running = stats.BandStats()
    for a in arrays:
        running.add(a)
    assert running.result() == stats.merge(stats.histogram(a) for a in arrays)
    assert stats.dump(running.result()) == stats.to_json(stats.merge(stats.histogram(a) for a in arrays))
    assert running.dumped() == stats.dump(running.result())  # the shard task's numpy path: the same lists
    assert stats.BandStats().dumped() == [[], []]
    assert stats.BandStats().result() == {}
    assert running.result()[65535] == 2
    small = stats.BandStats()
    for a in (np.array([3, 3], np.uint8), np.array([255, 0, 3], np.uint8)):
        small.add(a)
    assert small.result() == {3: 3, 255: 1}
    assert small.dumped() == [[3, 255], [3, 1]]
    floats = stats.BandStats()
    floats.add(np.array([1.5, np.nan, 2.5], np.float32))
    assert floats.result() == stats.float_stats(np.array([1.5, 2.5], np.float32))
    assert floats.dumped() == stats.dump(floats.result())


@pytest.mark.parametrize("batch", [1, 7, 1 << 20])
def test_histogram_total_equals_the_merged_histograms_whatever_the_batch(batch: int) -> None:
    rng = np.random.default_rng(11)
    histograms = [stats.histogram(rng.integers(0, 60, (5, 9)).astype(np.uint16)) for _ in range(12)]
    histograms += [{}, {65535: 3, 2**31 - 1: 1}]  # an empty one, and the largest values
    total = stats.HistogramTotal(batch=batch)
    for h in histograms:
        total.add(stats.to_json(h))
    merged = stats.merge(histograms)
    assert total.result() == merged and list(total.result()) == sorted(merged)
    assert stats.HistogramTotal().result() == {}


def test_band_stats_of_float_arrays_equal_the_merged_per_array_statistics() -> None:
    """A shard task's running bins and merged moments give exactly what merging each array's own statistics gives."""
    rng = np.random.default_rng(7)
    arrays = [_values(seed) for seed in range(3)]
    arrays.append(rng.uniform(-1, 1, (4, 9, 9)).astype(np.float32))  # an index: negative bit patterns, larger bins
    arrays.append(np.full((2, 3), np.nan, np.float32))  # all nodata
    arrays.append(np.array([np.inf, -np.inf, 1e30, -1e-30, 0.0], np.float32))  # infinities left out
    running = stats.BandStats()
    for a in arrays:
        running.add(a)
    expected = stats.merge_float(stats.float_stats(a) for a in arrays)
    assert running.result() == expected and len(expected.bins) > 1000
    assert running.dumped() == stats.dump(expected)
    assert min(expected.bins) == 0 and max(expected.bins) >= 0x80000000  # 0.0 and negatives have their bins
    # independently: the finite values' float32 bit patterns, the low 12 bits cleared, counted by numpy's unique
    finite = np.concatenate([a.ravel() for a in arrays])
    finite = finite[np.isfinite(finite)] + np.float32(0.0)
    keys, counts = np.unique(finite.view(np.uint32) & np.uint32(0xFFFFF000), return_counts=True)
    assert expected.bins == dict(zip(keys.tolist(), counts.tolist(), strict=True))
    assert expected.count == finite.size
