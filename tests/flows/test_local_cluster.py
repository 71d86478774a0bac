"""The LocalCluster a build starts: worker processes without distributed's statistical profiler."""

from __future__ import annotations

import dask

from eoshard.flows.cluster import dask_client


def _profiler(dask_worker: object) -> tuple[bool, bool]:  # client.run passes the worker by this name
    return bool(dask.config.get("distributed.worker.profile.enabled")), hasattr(dask_worker, "profile_keys")


def test_local_workers_run_without_the_profiler_and_leave_the_config_as_it_was() -> None:
    assert dask.config.get("distributed.worker.profile.enabled") is True
    with dask_client(n_workers=1) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        assert list(client.run(_profiler).values()) == [(False, True)]
    assert dask.config.get("distributed.worker.profile.enabled") is True
