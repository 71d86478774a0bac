"""``open_dataset``'s kept samples: a dask chunk per shard, read by slices of the kept slots, none kept too."""

from __future__ import annotations

import numpy as np
import xarray as xr

from eoshard.pipeline.shards.xarray_view import _kept_samples


def test_kept_slots_by_shard_and_a_dataset_that_kept_none() -> None:
    raw = xr.Dataset({"a": (("sample", "t"), np.arange(12, dtype="u2").reshape(6, 2))})
    ds = _kept_samples(raw, np.array([0, 1, 3, 5]), 4, "some", "ds")  # shard 0 dropped slot 2; shard 1 holds 4, 5
    assert ds.a.chunks == ((3, 1), (2,))
    assert ds.a.values.tolist() == [[0, 1], [2, 3], [6, 7], [10, 11]]
    assert ds.a.isel(sample=2).values.tolist() == [6, 7] and ds.a[1:3].values.tolist() == [[2, 3], [6, 7]]
    none = _kept_samples(raw, np.array([], dtype=np.int64), 4, "none", "ds")
    assert none.a.shape == (0, 2) and none.a.values.shape == (0, 2)  # dask refused an empty chunks tuple
