"""``eoshard refresh``: the dataset lock, the search for what is newer than a dataset, and the refresh (``run.py``)."""

from __future__ import annotations

from eoshard.flows.refresh.lock import (
    DatasetLockedError,
    LockError,
    LockInfo,
    StaleLockError,
    dataset_lock,
    read_lock,
)
from eoshard.flows.refresh.watermark import newer_items, reprocessed_items, search_newer, watermark

__all__ = [
    "DatasetLockedError",
    "LockError",
    "LockInfo",
    "StaleLockError",
    "dataset_lock",
    "newer_items",
    "read_lock",
    "reprocessed_items",
    "search_newer",
    "watermark",
]
