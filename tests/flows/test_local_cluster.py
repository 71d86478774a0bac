"""The LocalCluster a build starts: worker processes without distributed's statistical profiler."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import pytest

from eoshard.flows.cluster import client_started_meanwhile, dask_client


def _profiler(dask_worker: object) -> tuple[bool, bool]:  # client.run passes the worker by this name
    return bool(dask.config.get("distributed.worker.profile.enabled")), hasattr(dask_worker, "profile_keys")


def _tick(dask_worker: Any) -> float:
    return float(dask_worker._tick_interval)


def test_local_workers_run_without_the_profiler_and_leave_the_config_as_it_was() -> None:
    assert dask.config.get("distributed.worker.profile.enabled") is True
    assert dask.config.get("distributed.admin.tick.interval") == "20ms"
    with dask_client(n_workers=1) as client:
        assert len(client.scheduler_info()["workers"]) == 1
        assert list(client.run(_profiler).values()) == [(False, True)]
        # the servers' event loops are checked every 500 ms (distributed's default: 20 ms)
        assert list(client.run(_tick).values()) == [0.5]
        assert client.run_on_scheduler(_tick) == 0.5
        assert client.cluster is not None and client.cluster.scheduler is not None
        assert [n._tick_interval for n in client.cluster.workers.values()] == [0.5]  # the nanny
    assert dask.config.get("distributed.worker.profile.enabled") is True
    assert dask.config.get("distributed.admin.tick.interval") == "20ms"


def _imported() -> tuple[bool, list[str]]:
    import sys

    heavy = ("pandas", "geopandas", "xarray", "dask.array", "scipy", "stackstac", "pystac_client")
    return "eoshard.pipeline.shards.reads" in sys.modules, [m for m in heavy if m in sys.modules]


def test_a_cluster_started_meanwhile_is_up_with_the_shard_tasks_imported_and_closed_after() -> None:
    with client_started_meanwhile(n_workers=1) as started:
        client = started()
        assert started() is client
        # imported before any task ran, without the cube engines, dataframes or dask arrays (design record 0020)
        assert list(client.run(_imported).values()) == [(True, [])]
        cluster = client.cluster
    assert client.status == "closed" and cluster is not None and cluster.status.name == "closed"


def test_an_error_meanwhile_closes_the_cluster_that_was_starting() -> None:
    seen: list[Any] = []
    with pytest.raises(ValueError, match="no products"), client_started_meanwhile(n_workers=1) as started:
        seen.append(started)
        raise ValueError("no products")  # what planning raises before it asks for the client
    assert not any(t.name == "eoshard-cluster" for t in threading.enumerate())
    assert seen[0]().status == "closed"  # it had started, and was closed on the way out


@pytest.fixture
def log_levels() -> Iterator[None]:
    """The loggers an interrupt quiets, at their default level for the test (a command interrupted earlier in this
    process quieted them) and as they were after it."""
    loggers = [logging.getLogger(name) for name in ("distributed", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_an_interrupt_quiets_the_logs_of_the_cluster_in_this_process_before_it_closes(log_levels) -> None:
    """Ctrl-C or SIGTERM while the build runs: the scheduler, nannies and client in the driver would log the
    workers' ends and asyncio a gather left waiting, with tracebacks; after an error asyncio still logs."""
    with pytest.raises(ValueError), client_started_meanwhile(n_workers=1) as started:
        started()
        raise ValueError("no products")
    assert logging.getLogger("asyncio").getEffectiveLevel() < logging.CRITICAL
    with pytest.raises(KeyboardInterrupt), client_started_meanwhile(n_workers=1) as started:
        client = started()
        raise KeyboardInterrupt
    assert client.status == "closed"
    assert logging.getLogger("distributed").getEffectiveLevel() == logging.CRITICAL
    assert logging.getLogger("asyncio").getEffectiveLevel() == logging.CRITICAL


def test_a_scheduler_that_cannot_be_reached_is_said_before_the_caller_plans(monkeypatch) -> None:
    from eoshard.flows import cluster
    from eoshard.flows.errors import FlowsError

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    entered = False
    with (
        pytest.raises(FlowsError, match=r"no Dask scheduler answered at 'tcp://127\.0\.0\.1:9' within 1s"),
        client_started_meanwhile("tcp://127.0.0.1:9"),
    ):
        entered = True
    assert not entered


@pytest.mark.parametrize("address", ["http://127.0.0.1:8787/status", "not an address", "tcp://host-without-port"])
def test_what_is_no_scheduler_address_is_refused_at_once(address: str) -> None:
    """A dashboard's URL or a typo: refused before any client is made (one would wait 20 s as it is collected)."""
    from eoshard.flows.errors import FlowsError

    start = time.monotonic()
    with (
        pytest.raises(FlowsError, match=r"is not a Dask scheduler address .* tcp://HOST:PORT"),
        client_started_meanwhile(address),
    ):
        pass
    assert time.monotonic() - start < 5


class _Slow:
    """Garbage in a reference cycle whose finalizer lets other threads run while the collection goes on."""

    MOST_ALIVE = 200
    alive = 0  # made and not yet finalized

    def __init__(self) -> None:
        self.me = self
        _Slow.alive += 1

    def __del__(self) -> None:
        time.sleep(0.0005)
        _Slow.alive -= 1


def test_full_collections_while_the_scheduler_starts_meet_no_half_timed_callback() -> None:
    """distributed's GC callback, added by the scheduler from the cluster's thread while this thread collected (a
    finalizer let it run), was called to stop a timing it never started: an "Exception ignored" on the console,
    an error under pytest."""
    import gc

    with client_started_meanwhile(n_workers=1) as started:
        waiting = threading.Thread(target=started)
        waiting.start()
        while waiting.is_alive():
            # a collection the cluster's thread runs finalizes this garbage slowly, and meanwhile gc.collect()
            # here returns at once: made without this bound, the garbage outgrew the machine (22 GB in one CI run)
            if _Slow.alive > _Slow.MOST_ALIVE:
                time.sleep(0.001)
                continue
            garbage = [_Slow() for _ in range(20)]
            del garbage
            gc.collect()
        assert len(started().scheduler_info()["workers"]) == 1


_WHILE_STARTING = """
import json
import os
import sys

from eoshard.flows.cluster import client_started_meanwhile

scheduler = None
if sys.argv[1] == "scheduler":  # a scheduler of the user's own (in this process: it adds no variable)
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=0, processes=False, dashboard_address=":0")
    scheduler = cluster.scheduler_address
before = set(os.environ)
with client_started_meanwhile(scheduler, n_workers=1) as started:
    meanwhile = set(os.environ)  # the main thread plans now, reading the environment (GDAL, PROJ, time zones)
    import eoshard.flows.build  # the planner, imported while the cluster starts
    import eoshard.pipeline.direct.blocks  # what planning imports (GDAL's defaults)

    started()
    print(json.dumps([sorted(set(os.environ) - meanwhile), sorted(meanwhile - before)]))
"""


@pytest.mark.parametrize("where", ["local", "scheduler"])
def test_no_environment_variable_is_added_while_the_cluster_starts_beside_planning(
    tmp_path: Any, where: str
) -> None:
    """glibc moves its array of variables to add one, and a thread reading them then reads freed memory (a build
    died in ``getenv``): what the nannies and the shard modules set is set before the cluster's thread starts."""
    import json
    import os
    import subprocess
    import sys

    from eoshard.pipeline.gdal_defaults import GDAL_REMOTE_DEFAULTS

    nannies = {*dask.config.get("distributed.nanny.pre-spawn-environ"), "PYTHONHASHSEED", "__DASK_PARENT_PID"}
    assert "MALLOC_TRIM_THRESHOLD_" in nannies
    gdal = {*GDAL_REMOTE_DEFAULTS, "GDAL_CURL_CA_BUNDLE", "PROJ_CURL_CA_BUNDLE"}  # the last two: rasterio's import
    env = {k: v for k, v in os.environ.items() if k not in {*nannies, *gdal}}
    done = subprocess.run(
        [sys.executable, "-c", _WHILE_STARTING, where],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    added, set_first = json.loads(done.stdout.strip().splitlines()[-1])
    assert added == []
    assert set(set_first) == {*gdal, *(nannies if where == "local" else ())}
