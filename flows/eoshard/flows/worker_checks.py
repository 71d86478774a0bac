"""A build's workers: whether they run its shard tasks and see its output, and a note while there are none.

A Dask worker that cannot unpickle a task (eoshard missing from its environment, or a module that fails to import)
closes, and its nanny with it (distributed 2026.8): the shards would wait for workers that never come, without a
word. So do the shards of a build whose scheduler has no workers yet (started before them) or lost them all."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from distributed import Client

from eoshard.flows.errors import FlowsError

log = logging.getLogger(__name__)

NO_WORKERS_NOTE_S = 30.0  # how long a build's scheduler may have no worker before the build says so
POLL_S = 2.0


def _eoshard_version() -> str:
    """eoshard's version, on a worker once the modules of the shard tasks and converters import there."""
    import eoshard.pipeline.converters.reading
    import eoshard.pipeline.shards.reads  # noqa: F401

    return installed_version()


def installed_version() -> str:
    """eoshard's version, as its package metadata says (a source tree on ``PYTHONPATH`` has none)."""
    try:
        return version("eoshard")
    except PackageNotFoundError:
        return "unknown (not installed as a package)"


def check_workers(client: Client, then: str) -> None:
    """Every worker of ``client`` imports the tasks' modules and runs this process's eoshard: a clear error
    otherwise, before a task is submitted (``then``: what to do next)."""
    here = installed_version()
    answers = client.run(_eoshard_version, on_error="return")
    failed = {worker: answer for worker, answer in answers.items() if isinstance(answer, BaseException)}
    other = {worker: answer for worker, answer in answers.items() if answer != here}
    if failed:
        worker, err = next(iter(failed.items()))
        why = (
            f"{len(failed)} of {len(answers)} Dask workers cannot run eoshard's tasks ({worker}: {err}): install "
            f"eoshard {here} in the environment the workers start in (`eoshard --version` there says which runs)"
        )
    elif other:
        worker, there = next(iter(other.items()))
        why = (
            f"{len(other)} of {len(answers)} Dask workers run eoshard {there} ({worker}) where this command runs "
            f"{here}: samples written by two versions could differ. Install eoshard {here} where the workers start"
        )
    else:
        return
    raise FlowsError(f"{why}, restart them, then {then}")


def _text_of(path: str) -> str | None:
    """What the file at ``path`` holds, as a worker sees it (None: no file there)."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


def check_output_shared(client: Client, folder: Path, then: str) -> None:
    """Every worker of ``client`` sees ``folder`` as this process does: the shard tasks write their Zarr shards and
    spooled values there, where this process reads them and writes the rest. A file written there now, with a token
    of its own, must read the same on each worker; a clear error otherwise (``then``: what to do next)."""
    token = uuid.uuid4().hex
    marker = folder / f".seen-by-workers-{token}.tmp"  # left by a killed build: the next one removes it
    marker.write_text(token)
    try:
        answers = client.run(_text_of, str(marker), on_error="return")
    finally:
        marker.unlink(missing_ok=True)
    blind = {worker: answer for worker, answer in answers.items() if answer != token}
    if blind:
        worker, answer = next(iter(blind.items()))
        seen = "no such file" if answer is None else "another file" if isinstance(answer, str) else answer
        raise FlowsError(
            f"{len(blind)} of {len(answers)} Dask workers do not see the output folder {folder} as this machine "
            f"does ({worker}: {seen} where this command has just written one): the shards they write would not "
            "reach the dataset. Set output.path to a folder on a file system that this machine and every worker "
            f"share (NFS, a cluster file system; with output.url, it is the staging folder), then {then}"
        )


class WorkerlessWatch:
    """A warning, once each time, when ``client``'s scheduler has had no worker for ``NO_WORKERS_NOTE_S``
    (``left``: how many shards wait), until ``stop``. The build waits on: workers may join (an adaptive cluster
    starts them when tasks wait)."""

    def __init__(self, client: Client, left: Callable[[], int]) -> None:
        self.client, self.left = client, left
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="eoshard-worker-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        since: float | None = None
        noted = False
        while not self._stop.wait(POLL_S):
            try:
                workers = len(self.client.nthreads())
            except Exception:  # the scheduler is lost: the build says so itself
                return
            if workers:
                since, noted = None, False
                continue
            since = time.monotonic() if since is None else since
            if not noted and time.monotonic() - since >= NO_WORKERS_NOTE_S:
                address = getattr(self.client.scheduler, "address", "?")
                log.warning(
                    "the Dask scheduler %s has had no worker for %d s: the %d shards left wait for one. Start "
                    "workers (`dask worker %s`, where eoshard %s is installed), or read their logs for why they "
                    "stopped; Ctrl-C stops the build and keeps the shards committed",
                    address, NO_WORKERS_NOTE_S, self.left(), address, installed_version(),
                )  # fmt: skip
                noted = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)  # a call to a scheduler that hangs must not hold the build's end
