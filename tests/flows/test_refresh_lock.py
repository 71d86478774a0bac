"""The dataset lock with real processes: one holder at a time, a dead holder's lock reported as stale."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eoshard.flows.refresh import DatasetLockedError, LockError, StaleLockError, dataset_lock, read_lock

HOLD = """
import sys, time
from pathlib import Path
from eoshard.flows.refresh import dataset_lock
with dataset_lock(Path(sys.argv[1]), "test-holder"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""

RACE = """
import sys, time
from pathlib import Path
from eoshard.flows.refresh import LockError, dataset_lock
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    with dataset_lock(Path(sys.argv[1]), "racer"):
        print("got", flush=True)
        time.sleep(6.0)  # long enough that every racer tries while the winner holds it, even on a loaded machine
except LockError as err:
    print(type(err).__name__, flush=True)
"""


def start_holder(dataset: Path, seconds: float = 60) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(dataset), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def finish(proc: subprocess.Popen[str]) -> int:
    code = proc.wait(timeout=20)
    assert proc.stdout is not None
    proc.stdout.close()
    return code


def test_a_live_holder_keeps_others_out_until_it_releases(tmp_path: Path) -> None:
    holder = start_holder(tmp_path, seconds=60)
    try:
        info = read_lock(tmp_path)
        assert info is not None
        assert (info.pid, info.host, info.command) == (holder.pid, socket.gethostname(), "test-holder")
        with (
            pytest.raises(DatasetLockedError, match=f"locked by pid {holder.pid} on .*another refresh is running"),
            dataset_lock(tmp_path),
        ):
            pass
    finally:
        holder.terminate()  # SIGTERM: the with-block does not run its exit, like a crash
        finish(holder)


def test_a_lock_released_normally_is_gone_and_can_be_taken_again(tmp_path: Path) -> None:
    holder = start_holder(tmp_path, seconds=0.1)
    assert finish(holder) == 0
    assert read_lock(tmp_path) is None
    with dataset_lock(tmp_path, "second") as info:
        assert info.pid == os.getpid()
        assert json.loads((tmp_path / ".eoshard.lock").read_text())["command"] == "second"
    assert not (tmp_path / ".eoshard.lock").exists()


def test_the_lock_of_a_killed_process_is_reported_stale_and_left_in_place(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    finish(holder)
    with (
        pytest.raises(
            StaleLockError, match=f"stale lock: pid {holder.pid} .*no longer runs.*delete .*eoshard.lock"
        ),
        dataset_lock(tmp_path),
    ):
        pass
    lock = read_lock(tmp_path)
    assert lock is not None
    assert lock.pid == holder.pid  # reported, not broken


def test_of_four_simultaneous_refreshes_exactly_one_gets_the_lock(tmp_path: Path) -> None:
    start = time.time() + 5.0
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert outcomes == ["DatasetLockedError"] * 3 + ["got"]
    assert read_lock(tmp_path) is None


def test_a_foreign_file_in_place_of_the_lock_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".eoshard.lock").write_text("not json")
    with pytest.raises(LockError, match="is not an eoshard lock"), dataset_lock(tmp_path):
        pass
