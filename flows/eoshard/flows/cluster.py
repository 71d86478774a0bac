"""Dask clusters: a LocalCluster sized to the machine by default, or any scheduler by address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import dask
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster, WorkerPlugin
from distributed.comm.addressing import parse_address, parse_host_port
from distributed.comm.registry import get_backend
from distributed.gc import disable_gc_diagnosis, enable_gc_diagnosis
from distributed.proctitle import enable_proctitle_on_children

from eoshard.flows.errors import FlowsError
from eoshard.flows.worker_checks import imported_version
from eoshard.pipeline.gdal_defaults import apply_gdal_defaults


def settle_environment() -> None:
    """Set now, in this thread, every environment variable that a LocalCluster's start would add from its own:
    distributed's nannies ``os.environ.update`` their ``pre-spawn-environ`` (and ``PYTHONHASHSEED`` and
    ``__DASK_PARENT_PID``) before each worker starts, and the shard tasks' modules set GDAL's defaults
    (``eoshard.pipeline.gdal_defaults``). glibc makes room for a new variable by moving its array of them, and a
    thread reading the environment meanwhile (GDAL, PROJ and time zone lookups call ``getenv`` all the time) reads
    freed memory: a quarter-tile build died of a segfault in ``getenv`` (2026-12-04), its driver planning beside its
    starting cluster. Variables already present are replaced in place, which is safe."""
    for key, value in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items():
        if value is not None:
            os.environ.setdefault(key, str(value))
    os.environ.setdefault("PYTHONHASHSEED", "6640")  # what each nanny sets unless configured (distributed#8400)
    enable_proctitle_on_children()  # what each nanny calls: the driver's pid in __DASK_PARENT_PID
    settle_gdal_environment()


def settle_gdal_environment() -> None:
    """Set what planning's first reads would add to the environment: rasterio's import sets GDAL_CURL_CA_BUNDLE and
    PROJ_CURL_CA_BUNDLE, the shard tasks' modules GDAL's defaults (see ``settle_environment``)."""
    import rasterio  # noqa: F401

    apply_gdal_defaults()


CONNECT_TIMEOUT = "10s"

# eoshard's LocalCluster: see ``dask_client``
LOCAL_CLUSTER_SETTINGS = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.tick.interval": "500ms",
}


def connect(address: str, *, set_as_default: bool = True) -> Client:
    """A client of the scheduler at ``address``; a clear error if it is no scheduler address or none answers.

    The address is checked first: a client made with one that cannot work waits 20 s as it is collected, then
    prints a traceback."""
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
    except ValueError as err:
        raise FlowsError(
            f"{address!r} is not a Dask scheduler address ({err}): give the address the scheduler printed, "
            "tcp://HOST:PORT (not its dashboard's http:// address)"
        ) from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=set_as_default)
    except (OSError, TimeoutError, ValueError) as err:
        raise FlowsError(
            f"no Dask scheduler answered at {address!r} within {CONNECT_TIMEOUT}: {err}. "
            "Give the address the scheduler printed (tcp://HOST:PORT) and check that it runs"
        ) from err


@contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster sized to the machine.

    The LocalCluster has one single-threaded worker per usable core (``CPU_COUNT`` honours cgroup quotas and CPU
    affinity) and shares the machine's memory among them. Its workers do not run distributed's statistical
    profiler (a stack sample of every thread each 10 ms): with a shard task's read threads it cost 14 % of the
    tile build's CPU time. Its scheduler does not steal work: a build gives each worker a run of neighbouring
    shards whose source blocks it decodes once, and a shard moved to a worker that holds none of them reads them
    all again (over HTTP, 3-5 % more bytes for the last shards of a quarter tile). Its servers check their event
    loops every 500 ms instead of every 20 ms: the scheduler and nannies in this process woke 250 times a second
    for it (4 % of a core, idle). A scheduler of your own keeps its settings (see docs/running-scheduler.md).
    """
    if scheduler:
        client_log = logging.getLogger("distributed.client")
        client_log.addFilter(CLOSING_NOISE)
        try:
            with connect(scheduler) as client, _quiet_if_interrupted():
                yield client
        finally:
            client_log.removeFilter(CLOSING_NOISE)
        return
    settle_environment()
    workers = n_workers or max(1, CPU_COUNT)
    # the nannies pass these settings to the workers; the scheduler and nannies read theirs when made, here
    with dask.config.set(LOCAL_CLUSTER_SETTINGS):
        local = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, memory_limit="auto", dashboard_address=":0",
            preload=[*dask.config.get("distributed.worker.preload", []), "eoshard.flows.worker_interrupt"],
        )  # fmt: skip
    with (
        local as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(QuietTaskFailures())
        with _quiet_if_interrupted():
            yield client
        # the work is done: a worker's heartbeat racing the scheduler's shutdown would print a harmless traceback
        client.run(_quiet_shutdown)
        client.run_on_scheduler(_quiet_shutdown)


@contextmanager
def client_started_meanwhile(
    scheduler: str | None = None, n_workers: int | None = None
) -> Iterator[Callable[[], Client]]:
    """``dask_client`` started in the background while the caller goes on (a build plans meanwhile): yields a
    function that waits for the client and returns it. The workers import the shard tasks' modules as soon as they
    are up. On the way out the client (and its LocalCluster) close, once started.

    One thread enters and leaves ``dask_client`` (a client is entered and left in the same thread); an error in
    starting is raised by the function (a scheduler given by address that does not answer: at once), one in
    closing on the way out."""
    ready: Future[Client] = Future()
    connected: Future[None] = Future()
    done = threading.Event()
    closing: list[BaseException] = []

    def run() -> None:
        try:
            with dask_client(scheduler, n_workers) as client:
                connected.set_result(None)
                # the workers import the shard tasks' modules now; one that cannot is named by the build's own
                # check of its workers (``worker_checks.check_workers``), before the first shard
                with contextlib.suppress(Exception):
                    client.run(imported_version)
                ready.set_result(client)
                done.wait()
        except BaseException as err:
            if not connected.done():
                connected.set_exception(err)
            if ready.done():
                closing.append(err)
            else:
                ready.set_exception(err)

    # A LocalCluster's scheduler (in this process) adds distributed's GC callback from its own thread: one added
    # while this thread collects is called to stop a timing it never started ("Exception ignored in ...
    # _gc_callback"). Added here first, the scheduler only counts one more user.
    local = not scheduler
    if local:
        enable_gc_diagnosis()
        settle_environment()
    else:
        settle_gdal_environment()  # set by planning otherwise, while the client's thread connects
    thread = threading.Thread(target=run, name="eoshard-cluster", daemon=True)
    thread.start()
    try:
        if scheduler:  # a scheduler that does not answer is told now, not after planning
            connected.result()
        with _quiet_if_interrupted():
            yield ready.result
    finally:
        done.set()
        thread.join()
        if local:
            disable_gc_diagnosis()
    if closing:
        raise closing[0]


class _DriverReports(logging.Filter):
    """Drops a worker's "Compute Failed" record (a traceback in the terminal): the build reports every failed shard
    itself, in one line that names the asset and says what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Compute Failed")


DRIVER_REPORTS = _DriverReports()


class _ClosingNoise(logging.Filter):
    """Drops the tracebacks of distributed's client closing itself after its scheduler was lost (a ``CancelledError``
    of its own close, logged twice): the build says in one line that the scheduler was lost and what to do."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


CLOSING_NOISE = _ClosingNoise()


class QuietTaskFailures(WorkerPlugin):
    """On the workers of eoshard's own LocalCluster (a restarted one too): no "Compute Failed" tracebacks in the
    terminal of ``eoshard build``. A scheduler of your own keeps its workers' logs as they are."""

    name = "eoshard-quiet-task-failures"

    def setup(self, worker: Any) -> None:
        logging.getLogger("distributed.worker").addFilter(DRIVER_REPORTS)


def _quiet_shutdown() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


@contextmanager
def _quiet_if_interrupted() -> Iterator[None]:
    """On Ctrl-C or SIGTERM (``KeyboardInterrupt``), before the client closes: this process's scheduler, nannies
    and client would log the workers' ends, which the same signal brings, and asyncio a gather the interrupt left
    waiting ("Task exception was never retrieved"), each with its traceback; the command says in one line what it
    kept."""
    try:
        yield
    except KeyboardInterrupt:
        _quiet_shutdown()
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        raise


def dashboard_note(client: Client) -> str:
    """Where the scheduler's dashboard is, or that it serves none (``dashboard_link`` is a template: it names a URL
    even for a scheduler started with ``--no-dashboard``, whose HTTP server then serves no /status)."""

    def _serves(dask_scheduler: Any) -> bool:  # local, so pickled by value: no eoshard on the scheduler
        apps = getattr(getattr(dask_scheduler, "http_application", None), "applications", [])
        return any("Bokeh" in type(app).__name__ for app in apps)  # the dashboard is a Bokeh app

    try:
        serves = bool(client.run_on_scheduler(_serves))
    except (OSError, TimeoutError):
        serves = False
    if not serves:
        return "dask dashboard: none (the scheduler serves no dashboard: start it with bokeh installed to get one)"
    return f"dask dashboard: {client.dashboard_link}"
