"""New files written past the page cache hold exactly their pieces, with O_DIRECT and wherever it is refused."""

from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from eoshard.pipeline.shards import direct_io
from eoshard.pipeline.shards.direct_io import ALIGN, write_new_file

# lengths around the alignment, and a Zarr shard's size (tens of MB)
SIZES = [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 17, 23 * 2**20 + 5]


def _pieces(size: int, seed: int) -> list[bytes | memoryview]:
    """``size`` random bytes in pieces of uneven length, bytes and memoryviews."""
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    cuts = sorted({0, size, *np.random.default_rng(seed + 1).integers(0, size + 1, 5).tolist()})
    return [data[a:b] if i % 2 else memoryview(data)[a:b] for i, (a, b) in enumerate(itertools.pairwise(cuts))]


@pytest.fixture
def direct_opens(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each file ``write_new_file`` opened asked for O_DIRECT."""
    opened: list[bool] = []
    real_open = os.open

    def spy(path: object, flags: int, *args: object) -> int:
        opened.append(bool(flags & os.O_DIRECT))
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(direct_io.os, "open", spy)
    return opened


@pytest.mark.parametrize("size", SIZES)
def test_a_new_file_holds_its_pieces_written_past_the_page_cache(
    tmp_path: Path, size: int, direct_opens: list[bool]
) -> None:
    pieces = _pieces(size, size)
    write_new_file(tmp_path / "shard", pieces)
    assert (tmp_path / "shard").read_bytes() == b"".join(bytes(p) for p in pieces)
    assert direct_opens == [True]  # the development machine's ext4 and tmpfs take O_DIRECT


def test_the_same_bytes_the_ordinary_way_when_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_opens: list[bool]
) -> None:
    monkeypatch.setattr(direct_io, "ENABLED", False)
    pieces = _pieces(3 * ALIGN + 17, 7)
    write_new_file(tmp_path / "shard", pieces)
    assert (tmp_path / "shard").read_bytes() == b"".join(bytes(p) for p in pieces)
    assert direct_opens == []  # pathlib's own open, no O_DIRECT


def test_a_filesystem_that_refuses_o_direct_gets_the_file_written_the_ordinary_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refusing(path: object, flags: int, *args: object) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(direct_io.os, "open", refusing)
    pieces = _pieces(ALIGN + 1, 3)
    write_new_file(tmp_path / "shard", pieces)
    assert (tmp_path / "shard").read_bytes() == b"".join(bytes(p) for p in pieces)


@pytest.mark.parametrize("refusal", ["einval", "short"])
def test_a_write_refused_part_of_the_way_is_finished_without_o_direct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """The first aligned write goes through, the next is refused (EINVAL) or cut short at an unaligned length."""
    real_write = os.write
    calls = []

    def flaky(fd: int, data: memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: 2 * ALIGN])
        if len(calls) == 2:
            if refusal == "einval":
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_write(fd, data[:100])  # unaligned: the offset O_DIRECT would need is lost
        return real_write(fd, data)

    monkeypatch.setattr(direct_io.os, "write", flaky)
    pieces = _pieces(5 * ALIGN + 9, 11)
    write_new_file(tmp_path / "shard", pieces)
    assert (tmp_path / "shard").read_bytes() == b"".join(bytes(p) for p in pieces)
    assert len(calls) == 3


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "shard").write_bytes(b"committed")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "shard", [b"new"])
    assert (tmp_path / "shard").read_bytes() == b"committed"


def test_a_full_disk_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(direct_io.os, "write", full)
    with pytest.raises(OSError, match="No space left on device"):
        write_new_file(tmp_path / "shard", [b"x" * 10])
