"""The atomic switch of a refreshed dataset, and finishing a switch that a crash interrupted at each step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eoshard.flows.refresh import swap
from eoshard.flows.refresh.lock import dataset_lock, lock_path, read_lock


def _version(folder: Path, name: str) -> None:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "values").write_text(name)
    (folder / "dataset.json").write_text(json.dumps({"version": name}))


def _which(folder: Path) -> str:
    return str(json.loads((folder / "dataset.json").read_text())["version"])


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    dataset = tmp_path / "ds"
    _version(dataset, "old")
    _version(swap.staging_path(dataset), "new")
    return dataset


def _leftovers(dataset: Path) -> list[str]:
    return sorted(p.name for p in dataset.parent.iterdir() if p != dataset)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_switch_puts_the_new_version_in_place_and_cleans_up(
    versions: Path, exchange: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not exchange:  # a filesystem without RENAME_EXCHANGE
        monkeypatch.setattr(swap, "_exchange", lambda a, b: False)
    with dataset_lock(versions, "test") as mine:
        swap.switch(versions)
        assert read_lock(versions) == mine  # the new version is locked by us until the block ends
    assert _which(versions) == "new"
    assert (versions / "data" / "values").read_text() == "new"
    assert not lock_path(versions).exists()
    assert _leftovers(versions) == []


def test_a_crash_before_the_exchange_leaves_the_old_version_and_the_staging_to_resume(versions: Path) -> None:
    (swap.journal_path(versions)).write_text(json.dumps({"new_manifest_sha256": swap.manifest_digest(
        swap.staging_path(versions))}))  # fmt: skip
    assert _which(versions) == "old"
    assert swap.finish(versions) is False
    assert _which(versions) == "old"
    assert _which(swap.staging_path(versions)) == "new"  # kept: the rerun resumes it
    assert not swap.journal_path(versions).exists()


def test_a_crash_after_the_exchange_leaves_the_new_version_and_the_rerun_deletes_the_old(versions: Path) -> None:
    staging = swap.staging_path(versions)
    swap.journal_path(versions).write_text(json.dumps({"new_manifest_sha256": swap.manifest_digest(staging)}))
    assert swap._exchange(staging, versions)
    assert _which(versions) == "new" and _which(staging) == "old"
    assert swap.finish(versions) is True
    assert _which(versions) == "new"
    assert _leftovers(versions) == []


def test_a_crash_between_the_two_renames_is_rolled_forward(versions: Path) -> None:
    staging = swap.staging_path(versions)
    swap.journal_path(versions).write_text(json.dumps({"new_manifest_sha256": swap.manifest_digest(staging)}))
    versions.rename(versions.with_name(f".{versions.name}.refresh-old"))  # the first rename happened, then a crash
    swap.recover_missing(versions)
    assert _which(versions) == "new"
    assert swap.finish(versions) is True
    assert _leftovers(versions) == []


def test_a_missing_dataset_with_a_foreign_staging_folder_is_not_guessed(versions: Path) -> None:
    swap.journal_path(versions).write_text(json.dumps({"new_manifest_sha256": "0" * 64}))
    versions.rename(versions.with_name(f".{versions.name}.refresh-old"))
    with pytest.raises(swap.SwapError, match=r"is missing and .* is not the version .* look for the dataset in"):
        swap.recover_missing(versions)


_SWITCH = """
import sys
from pathlib import Path
from eoshard.flows.refresh import swap
from eoshard.flows.refresh.lock import dataset_lock
if sys.argv[2] == "two-renames":
    swap._exchange = lambda a, b: False  # a filesystem without RENAME_EXCHANGE
with dataset_lock(Path(sys.argv[1]), "eoshard refresh"):
    swap.switch(Path(sys.argv[1]))
"""


@pytest.mark.parametrize(
    ("mode", "fault", "after"),
    [("exchange", "swap:1", "old"), ("two-renames", "swap:1", "old"), ("two-renames", "swap:2", "missing")],
)
def test_a_refresh_killed_inside_the_switch_recovers_to_one_whole_version(
    versions: Path, mode: str, fault: str, after: str
) -> None:
    """EOSHARD_FAULT kills the switching process (SIGKILL) after the journal, or between the two renames."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "EOSHARD_FAULT": fault}
    killed = subprocess.run(
        [sys.executable, "-c", _SWITCH, str(versions), mode], env=env, start_new_session=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    assert swap.journal_path(versions).is_file()
    if after == "missing":
        assert not versions.exists()  # the first rename happened: no folder at the dataset's path
    else:
        assert _which(versions) == "old"
    # what the next `eoshard refresh` does first (after its stale lock was looked at and removed)
    swap.recover_missing(versions)
    lock_path(versions).unlink(missing_ok=True)
    lock_path(swap.staging_path(versions)).unlink(missing_ok=True)
    switched = swap.finish(versions)
    if not switched:  # the staging version is resumed and switched in again
        with dataset_lock(versions, "test"):
            swap.switch(versions)
    assert _which(versions) == "new" and (versions / "data" / "values").read_text() == "new"
    assert _leftovers(versions) == []
