"""The output's disk watched during a build: one warning once the shards written so far say it will fill."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eoshard.flows.disk_watch import DiskWatch, free_bytes
from eoshard.pipeline.errors import readable_bytes


class _Disk:
    """Free bytes that fall by ``per_shard`` for every shard written since ``first`` (a build's writes)."""

    def __init__(self, free: int, per_shard: int, first: int = 0) -> None:
        self.free, self.per_shard, self.done, self.first = free, per_shard, first, first

    def __call__(self, path: Path) -> int:
        return self.free - (self.done - self.first) * self.per_shard


def _run(disk: _Disk, total: int) -> list[tuple[int, str]]:
    """The progress calls of a build from ``disk.first`` to ``total`` shards, and the warnings with the shard
    count at which each came."""
    warnings: list[tuple[int, str]] = []
    watch = DiskWatch(Path("/data/out"), lambda note: warnings.append((disk.done, note)), free=disk)
    for done in range(disk.first, total + 1):
        disk.done = done
        watch(done, total)
    return warnings


def test_a_disk_that_fills_is_told_once_after_a_sample_of_shards() -> None:
    # 100 shards of 20 MB each, 1 GB free: half of them fit
    warnings = _run(_Disk(free=1_000_000_000, per_shard=20_000_000), total=100)
    assert warnings == [
        (
            5,  # 5 % of 100 shards, not before
            "the output's disk will fill before the build ends: its first 5 shards took 100 MB, so the other 95 "
            "need about 1.9 GB, and /data/out has 900 MB free. The build stops when the disk is full and keeps "
            "the shards committed: free space and run the same command again to finish, or stop now (Ctrl-C) and "
            "give output.path a disk with room",
        )
    ]


def test_a_disk_with_room_gets_no_warning() -> None:
    assert _run(_Disk(free=2_100_000_000, per_shard=20_000_000), total=100) == []


def test_a_disk_that_holds_all_but_the_last_shards_is_told_when_the_pace_shows_it() -> None:
    # 2 GB free for 100 shards of 21 MB: 95 fit; at shard k the other 100 - k need more than what is left
    warnings = _run(_Disk(free=2_000_000_000, per_shard=21_000_000), total=100)
    assert [done for done, _ in warnings] == [5]


def test_a_resumed_build_projects_from_its_own_shards() -> None:
    # 40 of 100 shards committed by an earlier run: the watch starts at 40 and needs 3 shards of its own
    warnings = _run(_Disk(free=500_000_000, per_shard=20_000_000, first=40), total=100)
    assert [done for done, _ in warnings] == [43]
    assert "its first 3 shards took 60 MB, so the other 57 need about 1.1 GB" in warnings[0][1]


def test_a_last_shard_that_will_not_fit_is_named_so() -> None:
    # 4 shards of 300 MB, 1 GB free: the fourth does not fit (the watch projects after 3)
    warnings = _run(_Disk(free=1_000_000_000, per_shard=300_000_000), total=4)
    assert [done for done, _ in warnings] == [3]
    assert (
        "its first 3 shards took 900 MB, so the last one needs about 300 MB, and /data/out has 100 MB"
        in (warnings[0][1])
    )


def test_a_build_that_frees_space_as_it_goes_is_not_warned() -> None:
    """Free space that grows (another process deleting files) gives no projection."""
    assert _run(_Disk(free=1_000_000, per_shard=-5_000), total=50) == []


def test_free_bytes_of_a_folder_not_made_yet_are_its_disk_s(tmp_path: Path) -> None:
    assert abs(free_bytes(tmp_path / "not" / "yet") - shutil.disk_usage(tmp_path).free) < 64 * 2**20


@pytest.mark.parametrize(
    ("n", "shown"),
    [(999, "999 bytes"), (12_300, "12 kB"), (310_000_000, "310 MB"), (1_440_000_000, "1.4 GB"),
     (24_600_000_000, "25 GB")],
)  # fmt: skip
def test_sizes_read_as_df_shows_them(n: int, shown: str) -> None:
    assert readable_bytes(n) == shown
