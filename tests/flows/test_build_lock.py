"""A build's output lock: a live holder is refused by name, a dead build's lock is taken over, a refresh's is not."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eoshard.flows.refresh.lock import (
    BUILD_COMMAND,
    DatasetLockedError,
    LockInfo,
    StaleLockError,
    build_lock,
    lock_path,
    read_lock,
)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _plant(dataset: Path, pid: int, command: str) -> LockInfo:
    dataset.mkdir(parents=True, exist_ok=True)
    info = LockInfo(pid, socket.gethostname(), "2026-01-01T00:00:00+00:00", command)
    lock_path(dataset).write_text(json.dumps(info.__dict__))
    return info


def test_a_live_build_is_refused_by_name(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _plant(tmp_path, holder.pid, BUILD_COMMAND)
        with (
            pytest.raises(DatasetLockedError, match=f"locked by pid {holder.pid} on .*another build is running"),
            build_lock(tmp_path),
        ):
            pass
        assert read_lock(tmp_path) is not None and read_lock(tmp_path).pid == holder.pid  # left alone
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_builds_lock_is_taken_over_and_reported(tmp_path: Path) -> None:
    stale = _plant(tmp_path, _dead_pid(), BUILD_COMMAND)
    told: list[LockInfo] = []
    with build_lock(tmp_path, on_stale=told.append) as mine:
        assert read_lock(tmp_path) == mine and mine.pid == os.getpid() and mine.command == BUILD_COMMAND
    assert told == [stale]
    assert not lock_path(tmp_path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing set aside is left


def test_a_dead_refreshs_lock_is_not_taken_over(tmp_path: Path) -> None:
    _plant(tmp_path, _dead_pid(), "eoshard refresh")
    with pytest.raises(StaleLockError, match=r"stale lock.*half-done refresh"), build_lock(tmp_path):
        pass
    assert lock_path(tmp_path).exists()


def test_the_blocks_error_is_told_when_the_lock_cannot_be_removed_too(tmp_path: Path, monkeypatch) -> None:
    """An output folder turned read-only midway: the shard's write failed, and the lock's removal failed after it
    and was told in its place (`.eoshard.lock: Operation not permitted`)."""
    from pathlib import Path as PathType

    unlink = PathType.unlink

    def refused(self: PathType, missing_ok: bool = False) -> None:
        if self.name == lock_path(tmp_path).name:
            raise PermissionError(1, "Operation not permitted", str(self))
        unlink(self, missing_ok=missing_ok)

    with pytest.raises(OSError, match="could not write shard 8"), build_lock(tmp_path):
        monkeypatch.setattr(PathType, "unlink", refused)
        raise OSError("could not write shard 8")
    monkeypatch.undo()
    with pytest.raises(PermissionError, match="Operation not permitted"), build_lock(tmp_path / "other"):
        monkeypatch.setattr(PathType, "unlink", refused)  # no error of the block's: the lock's own is told
