"""Kill ``eoshard refresh`` at every write stage (EOSHARD_FAULT), the swap included; after the stale lock is looked at
and removed, the rerun gives the dataset an uninterrupted refresh gives, byte for byte (LMDB: key for key)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eoshard.flows.refresh import swap
from eoshard.flows.refresh.lock import lock_path
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.integration.test_refresh import CUT, EAST, SECOND_HALF, acquired, build_half

pytestmark = pytest.mark.slow

# a filesystem without RENAME_EXCHANGE: the switch falls back to two renames (fault point "swap" 2 between them)
_TWO_RENAMES = "from eoshard.flows.refresh import swap; swap._exchange = lambda a, b: False; "


def _refresh(
    config: Path, fault: str | None = None, two_renames: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EOSHARD_FAULT"}
    if fault is not None:
        env["EOSHARD_FAULT"] = fault
    code = (_TWO_RENAMES if two_renames else "") + "from eoshard.flows.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "refresh", str(config), "--workers", "1"],
        env=env, capture_output=True, text=True, timeout=300, start_new_session=True, check=False,
    )  # fmt: skip


def _leftovers(out: Path) -> list[str]:
    beside = [swap.staging_path(out), swap.journal_path(out), out.with_name(f".{out.name}.refresh-old")]
    return [p.name for p in beside if p.exists()] + [p.name for p in [lock_path(out)] if p.exists()]


def _restore(pristine: Path, out: Path) -> None:
    """The dataset as the build left it, nothing of an earlier refresh beside it."""
    for folder in (out, swap.staging_path(out), out.with_name(f".{out.name}.refresh-old")):
        shutil.rmtree(folder, ignore_errors=True)
    swap.journal_path(out).unlink(missing_ok=True)
    shutil.copytree(pristine, out)


@pytest.fixture(scope="module")
def refreshed(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first half of the season built (and kept aside), then refreshed without a fault: the reference."""
    case = build_half(tmp_path_factory.mktemp("faults"), demo_data, lambda i: acquired(i) < CUT, aoi=EAST)
    out = case["out"]
    pristine = case["root"] / "pristine"
    shutil.copytree(out, pristine)
    done = _refresh(case["config"])
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "dataset.json").read_text())["dates"] == case["half"]["dates"] + SECOND_HALF
    shards = len(list((out / "_build" / "commits").glob("shard-*.json")))
    assert shards > 10
    return {
        **case,
        "pristine": pristine,
        "shards": shards,
        "files": dataset_files(out),
        "lmdb": lmdb_contents(out),
    }


# (stage, count, two renames): the atomic writes of a refresh are the staging plan.json, one commit record per
# shard, the STAC Collection, dataset.json (shards + 3) and the swap's journal (shards + 4)
FAULTS = [
    ("zarr-shard", "31", False),
    ("lmdb-put", "5", False),
    ("commit-record", "7", False),
    ("atomic-write", "10", False),
    ("finalize", "1", False),
    ("finalize", "2", False),
    ("atomic-write", "manifest", False),
    ("atomic-write", "journal", False),
    ("swap", "1", False),
    ("swap", "1", True),
    ("swap", "2", True),
]


@pytest.mark.parametrize(
    ("stage", "count", "two_renames"), FAULTS, ids=[f"{s}-{c}{'-renames' * r}" for s, c, r in FAULTS]
)
def test_a_refresh_killed_at_any_write_stage_reruns_to_the_uninterrupted_refresh(
    refreshed: dict[str, Any], stage: str, count: str, two_renames: bool
) -> None:
    out, config = refreshed["out"], refreshed["config"]
    _restore(refreshed["pristine"], out)
    n = {"manifest": refreshed["shards"] + 3, "journal": refreshed["shards"] + 4}.get(count, count)
    killed = _refresh(config, f"{stage}:{n}", two_renames)
    assert killed.returncode == -signal.SIGKILL, f"{stage}:{n} was not reached: {killed.stderr[-2000:]}"
    if (stage, count) == ("swap", "2"):
        assert not out.exists()  # between the two renames: the new version waits at the staging path
    else:  # before the switch: the old version, whole
        assert json.loads((out / "dataset.json").read_text())["dates"] == refreshed["half"]["dates"]
    stale = _refresh(config)
    assert stale.returncode == 1 and "Traceback" not in stale.stdout + stale.stderr
    assert "has a stale lock" in " ".join(stale.stderr.split())
    for folder in (out, swap.staging_path(out)):  # what the message asks for, once the dataset was looked at
        lock_path(folder).unlink(missing_ok=True)
    rerun = _refresh(config)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _leftovers(out) == []
    files = dataset_files(out)
    assert files.keys() == refreshed["files"].keys()
    for name, data in refreshed["files"].items():
        assert files[name] == data, f"{name} differs after a kill at {stage}:{n}"
    assert lmdb_contents(out) == refreshed["lmdb"]
