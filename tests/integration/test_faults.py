"""Kill the build at every write stage with the fault hook (EOSHARD_FAULT), rerun it, get the identical dataset;
and a second build of one output is refused while the first holds its lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eoshard.flows.refresh.lock import BUILD_COMMAND, lock_path
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.integration.test_resume import N_SHARDS, _commits, _config

pytestmark = pytest.mark.slow

# (stage, count): mid-build for the counted stages, both steps of finalize, and dataset.json's own rename
# (atomic writes of the driver: plan.json, then one commit record per shard, the STAC Collection, dataset.json)
FAULTS = [
    ("zarr-shard", 31),
    ("lmdb-put", 5),
    ("commit-record", 7),
    ("atomic-write", 10),
    ("finalize", 1),
    ("finalize", 2),
    ("atomic-write", N_SHARDS + 3),
]


def _build(config: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EOSHARD_FAULT"}
    if fault is not None:
        env["EOSHARD_FAULT"] = fault
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build", str(config)]
    return subprocess.run(
        [*command, "--workers", "1"], env=env, capture_output=True, text=True, timeout=300, start_new_session=True
    )


def test_a_build_killed_at_any_write_stage_resumes_to_an_identical_dataset(demo_data, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    done = _build(_config(demo_data, reference))
    assert done.returncode == 0, done.stderr
    expected_files, expected_lmdb = dataset_files(reference), lmdb_contents(reference)
    for stage, count in FAULTS:
        out = tmp_path / f"{stage}-{count}"
        config = _config(demo_data, out)
        killed = _build(config, f"{stage}:{count}")
        assert killed.returncode == -signal.SIGKILL, f"{stage}:{count} was not reached: {killed.stderr[-2000:]}"
        last_rename = (stage, count) == ("atomic-write", N_SHARDS + 3)
        assert not (out / "dataset.json").exists(), f"killed at {stage}:{count}, yet the build finished"
        if stage in ("finalize",) or last_rename:
            assert _commits(out) == N_SHARDS
        assert lock_path(out).exists()  # the killed build's lock, stale now
        rerun = _build(config)
        assert rerun.returncode == 0, rerun.stderr
        assert "lock is taken over" in rerun.stderr
        assert not lock_path(out).exists()
        files = dataset_files(out)
        assert files.keys() == expected_files.keys(), stage
        for name, data in expected_files.items():
            assert files[name] == data, f"{name} differs after a kill at {stage}:{count}"
        assert lmdb_contents(out) == expected_lmdb, f"{stage}:{count}"


def test_a_build_that_committed_no_shard_starts_over_when_its_config_changed(demo_data, tmp_path: Path) -> None:
    """Killed with shard 0's LMDB values committed and no commit record: a resume of the same plan would keep them,
    so a changed config removes the unfinished build and starts over, to the bytes of a build done afresh."""
    out = tmp_path / "out"
    killed = _build(_config(demo_data, out), "commit-record:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _commits(out) == 0 and (out / "data.lmdb").is_dir()

    def fewer_dates(config: Path) -> Path:  # the same sample keys, other values under them
        raw = yaml.safe_load(config.read_text())
        raw["period"]["end"] = "2024-07-31"
        config.write_text(yaml.safe_dump(raw))
        return config

    rerun = _build(fewer_dates(_config(demo_data, out)))
    assert rerun.returncode == 0, rerun.stderr
    said = [line for line in rerun.stderr.splitlines() if "starting over" in line]
    assert said == [
        f"warning: {out} held an unfinished build of another plan (it differed in config.period.end, dates, "
        "file_sizes, layouts.s2_10m, layouts.s2_20m and 4 more) that had committed no shard: starting over with this "
        "one"
    ], rerun.stderr
    reference = tmp_path / "reference"
    done = _build(fewer_dates(_config(demo_data, reference)))
    assert done.returncode == 0, done.stderr
    assert dataset_files(out) == dataset_files(reference)
    assert lmdb_contents(out) == lmdb_contents(reference)


def test_a_second_build_of_one_output_is_refused_and_touches_nothing(demo_data, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = _config(demo_data, out)
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        info = {"pid": holder.pid, "host": socket.gethostname(), "created": "now", "command": BUILD_COMMAND}
        lock_path(out).write_text(json.dumps(info))
        (out / "data.zarr").mkdir()
        being_written = out / "data.zarr" / ".zarr.json.tmp"  # what the first build may be writing right now
        being_written.write_text("{}")
        second = _build(config)
        assert second.returncode == 1
        assert f"locked by pid {holder.pid} on {socket.gethostname()}" in second.stderr
        assert "another build is running" in second.stderr and "Traceback" not in second.stderr
        assert being_written.exists() and json.loads(lock_path(out).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
