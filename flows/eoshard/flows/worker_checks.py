"""The workers of a build: whether they can run its shard tasks, and a note while there are none.

A Dask worker that cannot unpickle a task (eoshard missing from its environment, or a module that fails to import)
closes, and its nanny with it (distributed 2026.8): the shards would wait for workers that never come, without a
word. So do the shards of a build whose scheduler has no workers yet (started before them) or lost them all."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib.metadata import version

from distributed import Client

from eoshard.flows.errors import FlowsError

log = logging.getLogger(__name__)

NO_WORKERS_NOTE_S = 30.0  # how long a build's scheduler may have no worker before the build says so
POLL_S = 2.0


def _eoshard_version() -> str:
    """eoshard's version, on a worker once the modules of the shard tasks and converters import there."""
    import eoshard.pipeline.converters.reading
    import eoshard.pipeline.shards.reads  # noqa: F401

    return version("eoshard")


def check_workers(client: Client, then: str) -> None:
    """Every worker of ``client`` imports the tasks' modules and runs this process's eoshard: a clear error
    otherwise, before a task is submitted (``then``: what to do next)."""
    here = version("eoshard")
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
                    address, NO_WORKERS_NOTE_S, self.left(), address, version("eoshard"),
                )  # fmt: skip
                noted = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)  # a call to a scheduler that hangs must not hold the build's end
