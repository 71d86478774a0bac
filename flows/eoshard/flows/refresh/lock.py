"""One refresh or build of a dataset at a time: a lock file holding the owner's pid, host and start time.

The file is created with ``O_CREAT | O_EXCL``, which is atomic on local filesystems and NFSv3+, so of two processes
only one gets it. A lock whose process is gone (same host, pid no longer running) is reported as stale with what to do;
it is never removed silently, because a dataset left by a dead refresh may need a look first. A build is different:
its commit log makes whatever a dead build left resumable, so ``build_lock`` takes over the stale lock of a dead
*build* (and says so); a live one, or a stale refresh lock, is refused as by ``dataset_lock``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from eoshard.flows.errors import FlowsError

LOCK_NAME = ".eoshard.lock"
BUILD_COMMAND = "eoshard build"


class LockError(FlowsError, RuntimeError):
    """The dataset's lock cannot be taken."""


class DatasetLockedError(LockError):
    """Another live process holds the lock."""


class StaleLockError(LockError):
    """The lock's owner no longer runs; the lock file was left behind."""


@dataclass(frozen=True)
class LockInfo:
    pid: int
    host: str
    created: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.created} ({self.command})"


def lock_path(dataset: Path) -> Path:
    return dataset / LOCK_NAME


def read_lock(dataset: Path) -> LockInfo | None:
    """The current lock of ``dataset``, or None when it is not locked."""
    return read_lock_file(lock_path(dataset), dataset)


def read_lock_file(path: Path, dataset: Path | None = None) -> LockInfo | None:
    """The lock held in the file ``path``, or None when there is none."""
    dataset = dataset or path.parent
    try:
        text = path.read_text()
        if not text:  # created, not yet written: its owner is taking it right now
            raise DatasetLockedError(f"dataset {dataset} is being locked by another process right now")
        data = json.loads(text)
        return LockInfo(int(data["pid"]), str(data["host"]), str(data["created"]), str(data["command"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise LockError(
            f"lock file {path} is not an eoshard lock (expected JSON with pid, host, created, command): {err}. "
            "Delete it if no refresh of this dataset is running"
        ) from err


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _stale(holder: LockInfo) -> bool:
    return holder.host == socket.gethostname() and not _running(holder.pid)


def _refuse(dataset: Path, holder: LockInfo) -> LockError:
    path = lock_path(dataset)
    if _stale(holder):
        return StaleLockError(
            f"dataset {dataset} has a stale lock: {holder.describe()}, and that process no longer runs. "
            f"The dataset may hold a half-done refresh: check it, then delete {path} and run again"
        )
    what = "build" if holder.command == BUILD_COMMAND else "refresh"
    return DatasetLockedError(
        f"dataset {dataset} is locked by {holder.describe()}: another {what} is running. Wait for it to finish "
        f"(if {holder.host} says that process is gone, delete {path})"
    )


def _acquire(dataset: Path, mine: LockInfo) -> None:
    path = lock_path(dataset)
    for _ in range(2):  # a second try when the holder released the lock between our two calls
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(dataset)
            if holder is None:
                continue
            raise _refuse(dataset, holder) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(mine), handle)
        return
    raise DatasetLockedError(f"dataset {dataset}'s lock keeps changing hands: other refreshes are running")


@contextmanager
def dataset_lock(dataset: Path, command: str | None = None) -> Iterator[LockInfo]:
    """Hold the lock of ``dataset`` for the duration of the block; raise when someone else holds it."""
    dataset.mkdir(parents=True, exist_ok=True)
    mine = LockInfo(
        os.getpid(),
        socket.gethostname(),
        datetime.now(UTC).isoformat(timespec="seconds"),
        command or " ".join(sys.argv[:2]),
    )
    _acquire(dataset, mine)
    try:
        yield mine
    except BaseException:
        # the block's error is the one to tell: a lock that cannot be removed (the folder turned read-only, the
        # cause of that error too) would hide it
        with suppress(OSError):
            _release(dataset, mine)
        raise
    _release(dataset, mine)


def _release(dataset: Path, mine: LockInfo) -> None:
    if read_lock(dataset) == mine:
        lock_path(dataset).unlink()


@contextmanager
def build_lock(dataset: Path, on_stale: Callable[[LockInfo], None] | None = None) -> Iterator[LockInfo]:
    """Hold the lock of a build's output ``dataset``; a stale lock of a dead build is taken over (``on_stale`` is
    told whose), anything else held is refused with the holder's name."""
    dataset.mkdir(parents=True, exist_ok=True)
    holder = read_lock(dataset)
    if holder is not None and holder.command == BUILD_COMMAND and _stale(holder):
        _take_over(dataset, holder)
        if on_stale is not None:
            on_stale(holder)
    with dataset_lock(dataset, BUILD_COMMAND) as mine:
        yield mine


def _take_over(dataset: Path, stale: LockInfo) -> None:
    """Remove the stale lock ``stale``, and nothing else: moved aside first, put back if it was another's."""
    path = lock_path(dataset)
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return  # another build took it over first; dataset_lock now meets that one
    try:
        taken = read_lock_file(aside)
        if taken != stale:  # a live lock written between our read and our rename: give it back
            with suppress(FileExistsError):
                os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)
