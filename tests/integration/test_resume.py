"""Kill the build with SIGKILL at three stages, rerun it, and get a dataset identical to an uninterrupted build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dataset_bytes import dataset_files, lmdb_contents

pytestmark = pytest.mark.slow

# A small corner of the demo AOI: 56 patches of 24 px in 19 shards of 3.
BBOX = [11.96, 48.005, 11.985, 48.02]
N_SHARDS = 19


def _config(demo_data, out: Path) -> Path:
    config = {
        "name": "resume",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": BBOX,
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B11"],
        "grid": {"resolution": 10, "chunksize": 128},
        "labels": {"path": str(demo_data.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 24},
        "splits": {"block_size": 480},
        "timeseries": {"mask": "nodata"},  # clouds count as valid: the expected values were made so
        "output": {"path": str(out), "shard_size": 3, "lmdb_parts": 2},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _build(config: Path) -> subprocess.Popen[bytes]:
    """The build as a process of its own session (so that its Dask workers can be killed with it), with SIGINT
    handled as in a terminal (a shell without job control starts background commands with SIGINT ignored, and the
    tests' processes would pass that on)."""
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build", str(config)]
    with config.with_suffix(".log").open("ab") as log:
        return subprocess.Popen(
            [*command, "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip


def _run(config: Path) -> None:
    process = _build(config)
    process.wait(timeout=300)
    assert process.returncode == 0, config.with_suffix(".log").read_text()


def _commits(out: Path) -> int:
    folder = out / "_build" / "commits"
    return len(list(folder.glob("shard-*.json"))) if folder.is_dir() else 0


def _kill_when(config: Path, out: Path, condition: Callable[[Path], bool]) -> None:
    process = _build(config)
    deadline = time.monotonic() + 300
    while not condition(out):
        assert process.poll() is None, f"the build ended early: {config.with_suffix('.log').read_text()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its scheduler and its workers
    process.wait()


STAGES: dict[str, Callable[[Path], bool]] = {
    # while the Zarr store is being created (before the plan is recorded)
    "store": lambda out: (out / "data.zarr" / "zarr.json").exists(),
    # in the middle of the shards
    "shards": lambda out: _commits(out) >= 4,
    # every shard committed: while the index, STAC Collection and manifest are written (or just after)
    "finalize": lambda out: _commits(out) == N_SHARDS,
}


@pytest.fixture(scope="module")
def reference(demo_data, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files and LMDB contents of an uninterrupted build (its output folder has the same name as the others')."""
    out = tmp_path_factory.mktemp("reference") / "out"
    _run(_config(demo_data, out))
    assert _commits(out) == N_SHARDS
    expected_files, expected_lmdb = dataset_files(out), lmdb_contents(out)
    assert sum(len(v) for v in expected_lmdb.values()) > 30
    return expected_files, expected_lmdb


def test_killed_builds_resume_to_an_identical_dataset(
    demo_data, tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the store of decoded blocks a build killed in the middle of its shards left in the machine's temporary
    folder is gone once the rerun ends (the rerun's own too)."""
    expected_files, expected_lmdb = reference
    for stage, condition in STAGES.items():
        out = tmp_path / stage / "out"
        out.parent.mkdir()
        temporary = out.parent / "tmp"
        temporary.mkdir()
        monkeypatch.setenv("TMPDIR", str(temporary))  # the build's and its workers' temporary folder
        config = _config(demo_data, out)
        _kill_when(config, out, condition)
        if stage != "finalize":
            assert not (out / "dataset.json").exists(), f"killed at {stage}, yet the build finished"
        if stage == "shards":
            assert len(list(temporary.glob("eoshard-blocks-*"))) == 1
        _run(config)
        if stage == "finalize":
            said = " ".join(config.with_suffix(".log").read_text().split())
            kept = (
                f"resuming: {N_SHARDS} of {N_SHARDS} shards committed by an earlier run, kept; writing the index"
            )
            assert kept in said, said
        assert list(temporary.glob("eoshard-blocks-*")) == [], stage
        assert dataset_files(out).keys() == expected_files.keys(), stage
        for name, data in expected_files.items():
            assert dataset_files(out)[name] == data, f"{name} differs after a kill at {stage}"
        assert lmdb_contents(out) == expected_lmdb, stage


@pytest.mark.parametrize(
    ("sent", "code", "what"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_or_sigterm_stops_the_build_with_one_line_and_the_rerun_resumes(
    demo_data, tmp_path: Path, reference, sent: signal.Signals, code: int, what: str
) -> None:
    """SIGINT to the build's process group, as a terminal's Ctrl-C sends it to the driver and its workers: exit 130,
    one line that says how to resume, no traceback from any process; the rerun gives the uninterrupted bytes.
    SIGTERM to the group (systemd stopping a service) the same, exit 143: it left the lock behind, and a refresh's
    stale lock is never taken over."""
    out = tmp_path / "out"
    config = _config(demo_data, out)
    process = _build(config)
    deadline = time.monotonic() + 300
    while _commits(out) < 4:
        assert process.poll() is None, f"the build ended early: {config.with_suffix('.log').read_text()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, sent)
    assert process.wait(timeout=60) == code
    said = config.with_suffix(".log").read_text()
    assert "Traceback" not in said and "KeyboardInterrupt" not in said and "Terminated" not in said, said
    assert f"{what}: the shards committed so far are kept: run the same command again to resume" in said
    assert not (out / "dataset.json").exists() and not (out / ".eoshard.lock").exists()
    kept = _commits(out)
    _run(config)
    assert dataset_files(out) == reference[0] and lmdb_contents(out) == reference[1]
    rerun = config.with_suffix(".log").read_text()[len(said) :]
    expected = f"resuming: {kept} of {N_SHARDS} shards committed by an earlier run, kept; writing the other"
    assert f"{expected} {N_SHARDS - kept}" in " ".join(rerun.split()), rerun
