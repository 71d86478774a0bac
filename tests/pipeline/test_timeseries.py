"""Per-date valid masks and date selection."""

from __future__ import annotations

import numpy as np

from eoshard.pipeline.timeseries import day_of_year, days_since_epoch, nodata_mask, select_dates


def test_nodata_mask_combines_groups_at_the_base_resolution() -> None:
    fine = np.zeros((2, 2, 4, 4), np.uint16)
    coarse = np.zeros((2, 1, 2, 2), np.uint16)
    fine[0, 1, 0, 0] = 5  # one band of one fine pixel
    coarse[1, 0, 1, 1] = 9  # one coarse pixel = 2 x 2 base pixels
    mask = nodata_mask({"s2_10m": fine, "s2_20m": coarse}, {"s2_10m": 1, "s2_20m": 2})
    assert mask.shape == (2, 4, 4)
    assert np.argwhere(mask[0]).tolist() == [[0, 0]]
    assert np.argwhere(mask[1]).tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_dates_below_the_threshold_or_empty_are_dropped() -> None:
    mask = np.zeros((3, 4, 4), bool)
    mask[0] = True
    mask[1, :2] = True  # half valid
    selection = select_dates(mask, 0.6)
    assert selection.fraction.tolist() == [1.0, 0.5, 0.0]
    assert selection.kept.tolist() == [True, False, False]
    assert select_dates(mask, 0.5).kept.tolist() == [True, True, False]
    assert select_dates(mask, 0.0).kept.tolist() == [True, True, False]  # an empty date is never kept


def test_dates_as_days_and_day_of_year() -> None:
    dates = ["1970-01-02T00:00:00", "2024-03-01T10:20:21", "2023-12-31T23:59:59"]
    assert days_since_epoch(dates).tolist() == [1, 19783, 19722]
    assert day_of_year(dates).tolist() == [2, 61, 365]
