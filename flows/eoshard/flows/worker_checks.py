"""A build's workers: whether they run its shard tasks and see its output (asked at the start, and by the first
shard task of a worker that joins later), a note while none runs, and why a shard's task ended every worker that
ran it.

distributed closes a worker that cannot unpickle a task (eoshard missing from its environment, or a module that
fails to import), and its nanny with it (2026.8); it runs no task on a worker paused for its memory; and a task
that passes its worker's memory limit each time ends in ``KilledWorker``. Each left a build waiting without a word,
or failing shard after shard in distributed's words."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from distributed import Client, KilledWorker

from eoshard.flows.errors import FlowsError

log = logging.getLogger(__name__)

STALL_NOTE_S = 30.0  # how long a build's scheduler may have no running worker before the build says so
MEMORY_RESTART = "worker-restart-memory"  # the event of a nanny that restarted its worker for its memory
POLL_S = 2.0
UNREADABLE = "a file it cannot read"


def imported_version() -> str:
    """Import the modules of the shard tasks and converters here (on a worker), then return eoshard's version."""
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
    answers = client.run(imported_version, on_error="return")
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
    except FileNotFoundError:
        return None
    except OSError as err:  # there, but not for this worker's user (or its file system fails)
        return f"{UNREADABLE}: {err}"


def _seen(answer: object) -> str:
    """What a worker saw of the file (``_text_of``'s answer, or the error it met), in words."""
    if answer is None:
        return "no such file"
    if isinstance(answer, str):
        return answer if answer.startswith(UNREADABLE) else "another file"
    return str(answer)


SHARED_FOLDER = (
    "Set output.path to a folder on a file system that this machine and every worker share (NFS, a cluster file "
    "system; with output.url, it is the staging folder)"
)
MARKER_GLOB = ".seen-by-workers-*.tmp"


def check_output_shared(client: Client, folder: Path, then: str) -> Expected:
    """Every worker of ``client`` sees ``folder`` as this process does: the shard tasks write their Zarr shards and
    spooled values there, where this process reads them and writes the rest. A file written there now, with a token
    of its own, must read the same on each worker; a clear error otherwise (``then``: what to do next).

    The file stays until the caller removes it (``Expected.remove``), once the shards are written: a worker that
    joins meanwhile checks it before its first shard (``run_checked``)."""
    for stale in folder.glob(MARKER_GLOB):  # a killed build's (one build of an output runs at a time)
        stale.unlink(missing_ok=True)
    token = uuid.uuid4().hex
    expected = Expected(installed_version(), str(folder / f".seen-by-workers-{token}.tmp"), token, then)
    Path(expected.marker).write_text(token)
    try:
        answers = client.run(_text_of, expected.marker, on_error="return")
        blind = {worker: answer for worker, answer in answers.items() if answer != token}
        if blind:
            worker, answer = next(iter(blind.items()))
            raise FlowsError(
                f"{len(blind)} of {len(answers)} Dask workers do not see the output folder {folder} as this "
                f"machine does ({worker}: {_seen(answer)} where this command has just written one): the shards "
                f"they write would not reach the dataset. {SHARED_FOLDER}, then {then}"
            )
    except BaseException:
        expected.remove()
        raise
    return expected


class JoinedUnfitError(FlowsError):
    """A worker that joined after the build checked its workers runs another eoshard, or does not see the output
    folder: its first shard task says so before it writes anything."""


@dataclass(frozen=True)
class Expected:
    """What every worker that runs a build's shard shares with the build's driver: eoshard's ``version``, and the
    output folder, where the driver keeps the file ``marker`` (holding ``token``) while the shards run."""

    version: str
    marker: str
    token: str
    then: str  # what the build's errors say to do next

    @property
    def folder(self) -> str:
        return str(Path(self.marker).parent)

    def remove(self) -> None:
        Path(self.marker).unlink(missing_ok=True)


_MET: set[str] = set()  # the tokens of the builds whose ``Expected`` this process has met


def run_checked(expected: Expected, task: Callable[..., Any], *args: Any) -> Any:
    """``task(*args)``, on a worker that meets ``expected``; checked in each worker process once per build.

    ``check_workers`` and ``check_output_shared`` ask the workers a build has when it starts; an adaptive cluster
    (``cluster.adapt()`` of dask-jobqueue or the Dask operator) starts most of its workers later, as tasks wait,
    on machines that may lack eoshard's version or the output's file system."""
    if expected.token not in _MET:
        unfit = _unfit(expected)
        if unfit is not None:
            raise JoinedUnfitError(unfit)
        _MET.add(expected.token)
    return task(*args)


def _unfit(expected: Expected) -> str | None:
    """Why this worker cannot run the build's shards (None: it can)."""
    from distributed import get_worker

    worker = f"the Dask worker {get_worker().address}, which joined after the build checked its workers,"
    here = installed_version()
    if here != expected.version:
        return (
            f"{worker} runs eoshard {here} where the build's driver runs {expected.version}: samples written "
            f"by two versions could differ. Install eoshard {expected.version} where the workers start, restart "
            f"them, then {expected.then}"
        )
    answer = _text_of(expected.marker)
    if answer != expected.token:
        return (
            f"{worker} does not see the output folder {expected.folder} as this machine does ({_seen(answer)} "
            f"where this command keeps one while the shards are written): the shards it writes would not reach "
            f"the dataset. {SHARED_FOLDER}, then {expected.then}"
        )
    return None


def _smallest_limit(workers: dict[str, Any], shown: str) -> str:
    """``shown`` with the smallest memory limit of ``workers`` (``scheduler_info()["workers"]``), "" if none."""
    # here, not at the top: it loads the shard tasks' modules, which the driver's cluster start must not wait for
    from eoshard.flows.block_cache import smallest_memory_limit

    limit = smallest_memory_limit(workers)
    return shown.format(f"{limit / 2**20:.0f} MiB") if limit else ""


class StallWatch:
    """A warning, once each time, when ``client``'s scheduler has had no worker, or only paused ones, for
    ``STALL_NOTE_S`` (``left``: how many shards wait), until ``stop``. The build waits on: workers may join (an
    adaptive cluster starts them when tasks wait), and a paused worker whose memory falls runs again."""

    def __init__(self, client: Client, left: Callable[[], int]) -> None:
        self.client, self.left = client, left
        # every worker the build has had, as the scheduler described it (its memory limit): a nanny that restarts
        # its worker for its memory, four times, leaves none to ask when the build stops (``killed_worker_note``)
        self.seen: dict[str, Any] = dict(client.scheduler_info(n_workers=-1)["workers"])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="eoshard-worker-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        state, since, noted = "", 0.0, False
        while not self._stop.wait(POLL_S):
            try:
                workers = self.client.scheduler_info(n_workers=-1)["workers"]
            except Exception:  # the scheduler is lost: the build says so itself
                return
            self.seen = {**self.seen, **workers}  # a new dict: the build's thread may be reading the last one
            running = any(w.get("status") == "running" for w in workers.values())
            stall = "" if running else "paused" if workers else "none"
            if stall != state:
                state, since, noted = stall, time.monotonic(), False
            if stall and not noted and time.monotonic() - since >= STALL_NOTE_S:
                log.warning(self._note(stall, workers))
                noted = True

    def _note(self, stall: str, workers: dict[str, Any]) -> str:
        address = getattr(self.client.scheduler, "address", "?")
        after = f"the {self.left()} shards left wait"
        if stall == "none":
            return (
                f"the Dask scheduler {address} has had no worker for {STALL_NOTE_S:g} s: {after} for one. Start "
                f"workers (`dask worker {address}`, where eoshard {installed_version()} is installed), or read "
                "their logs for why they stopped; Ctrl-C stops the build and keeps the shards committed"
            )
        limit = _smallest_limit(workers, " (the smallest: {})")
        return (
            f"every Dask worker has been paused for {STALL_NOTE_S:g} s: each holds more of its memory than its "
            f"pause threshold allows{limit}, and distributed runs no task on a paused worker, so {after}. Give "
            "each worker more memory (fewer `--workers` on a machine; `dask worker --memory-limit` on a cluster "
            "of your own); Ctrl-C stops the build and keeps the shards committed"
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)  # a call to a scheduler that hangs must not hold the build's end


def killed_worker_note(
    client: Client, shard: int, err: KilledWorker, then: str, seen: Mapping[str, Any] | None = None
) -> str:
    """What ended every worker that ran shard ``shard``'s task: the scheduler's events say when a nanny restarted
    the last one for its memory. ``seen``: the workers the build has had (``StallWatch.seen``), whose memory limits
    are known when the scheduler has none left to describe."""
    last = str(getattr(err.last_worker, "address", err.last_worker))
    try:
        events = client.get_events(MEMORY_RESTART)
        workers = {**(seen or {}), **client.scheduler_info(n_workers=-1)["workers"]}
    except Exception:  # the scheduler is going: say what is known
        events, workers = (), dict(seen or {})
    rss = [int(event.get("rss", 0)) for _, event in events if event.get("worker") == last]
    tried = f"{err.allowed_failures + 1} workers, the last {last}"
    if rss:
        limit = _smallest_limit({last: workers[last]} if last in workers else workers, " ({} each)")
        return (
            f"shard {shard} needs more memory than a Dask worker has{limit}: each worker that ran it ({tried}, at "
            f"{rss[-1] / 2**20:.0f} MiB) passed its memory limit and its nanny restarted it. Give each worker "
            "more memory (fewer `--workers` on a machine; `dask worker --memory-limit` on a cluster of your own), "
            f"then {then}"
        )
    return (
        f"shard {shard}'s task ended each worker that ran it ({tried}): a crash in native code, or workers killed "
        f"from outside (the kernel's out-of-memory killer); the workers' logs say which. Then {then}"
    )
