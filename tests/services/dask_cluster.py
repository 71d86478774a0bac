"""A real Dask cluster on 127.0.0.1: one ``dask scheduler`` and two ``dask worker`` processes (with nannies)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

N_WORKERS = 2
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaskCluster:
    """Addresses of the running cluster and its processes (scheduler first)."""

    address: str
    dashboard: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = Path()  # the folder of the scheduler's and workers' logs

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the worker process itself (the nanny's child)."""
        from distributed import Client

        with Client(self.address, timeout="10s", set_as_default=False) as client:
            return {addr: int(pid) for addr, pid in client.run(os.getpid).items()}

    def worker_addresses(self) -> list[str]:
        """The workers' addresses, as the scheduler knows them (asks no worker)."""
        from distributed import Client

        with Client(self.address, timeout="30s", set_as_default=False) as client:
            return sorted(client.scheduler_info(n_workers=-1)["workers"])

    def wait_for_workers(self, n: int = N_WORKERS, timeout: float = START_TIMEOUT) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", set_as_default=False) as client:
            if n:  # with none, the scheduler answering is all there is to wait for
                client.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, address: str) -> int:
        """SIGKILL the worker process at ``address`` (its nanny starts a fresh one); returns the pid killed."""
        pid = self.worker_pids()[address]
        os.kill(pid, signal.SIGKILL)
        return pid


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(processes):
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(
    cluster: DaskCluster,
    args: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> None:
    # `python -m dask` rather than the `dask` script: a copied venv may keep another venv's shebang
    with log.open("wb") as err:  # the child keeps its own copy of the descriptor
        cluster.processes.append(
            subprocess.Popen(
                [*prefix, sys.executable, "-m", "dask", *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=None if env is None else {**os.environ, **env},
            )
        )


def add_worker(
    cluster: DaskCluster, name: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> None:
    """Start one more single-threaded ``dask worker`` (with a nanny) for ``cluster`` (``env``: variables its
    environment has besides this one's; ``prefix``: a command it runs under); it is stopped with the cluster."""
    args = ["worker", cluster.address, "--host", "127.0.0.1", "--nthreads", "1", "--name", name, "--no-dashboard",
            "--memory-limit", "3GiB"]  # fmt: skip
    _start(cluster, args, cluster.logs / f"{name}.log", env, prefix)


def on_a_disk_of_its_own(folder: Path) -> tuple[str, ...]:
    """A prefix for ``add_worker``: the worker runs in a mount namespace of its own where an empty tmpfs lies over
    ``folder``, as on another machine that shares no file system with this one (the tests run as root)."""
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
            str(folder))  # fmt: skip


@contextmanager
def running_cluster(
    logs: Path, n_workers: int = N_WORKERS, worker_env: dict[str, str] | None = None
) -> Iterator[DaskCluster]:
    """``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes on free ports (logs in
    ``logs``; ``worker_env``: variables the workers' environment has besides this one's), stopped when the block
    ends."""
    port, dash = free_port(), free_port()
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", f"http://127.0.0.1:{dash}/status", logs=logs)
    try:
        _start(cluster, ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                         f"127.0.0.1:{dash}", "--no-show"], logs / "scheduler.log")  # fmt: skip
        for n in range(n_workers):
            add_worker(cluster, f"worker-{n}", worker_env)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                cluster.wait_for_workers(n_workers)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield cluster
    finally:
        _stop(cluster.processes)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """``dask scheduler`` and two single-threaded ``dask worker`` processes on free ports, stopped at the end."""
    with running_cluster(tmp_path_factory.mktemp("dask-logs")) as cluster:
        yield cluster


@contextmanager
def in_process_client() -> Iterator[Any]:
    """A Dask cluster inside the test process (1 worker, 2 threads, dashboard on a free port), started before its
    client, so a cluster that fails to start leaves dask's global scheduler setting alone."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client
