"""Dask clusters: a LocalCluster sized to the machine by default, or any scheduler by address."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster (one single-threaded worker a core)."""
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
