"""Statistics, splits, LMDB growth, commit log and the shard task's sample dropping."""

from __future__ import annotations

import ctypes
import json
import math
import mmap
import subprocess
from pathlib import Path

import lmdb
import numpy as np
import pytest
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox
from safetensors.numpy import load

from eoshard.pipeline.errors import ShardWriteError, full_disk_note
from eoshard.pipeline.patches import patch_grid
from eoshard.pipeline.shards import lmdb_store, stats
from eoshard.pipeline.shards.commits import CommitLog, PlanMismatchError
from eoshard.pipeline.shards.lmdb_store import LmdbWriter
from eoshard.pipeline.shards.splits import block_split
from eoshard.pipeline.shards.spool import read_spooled, release_spooled, spool_dir, spool_values
from eoshard.pipeline.shards.task import ShardSpec, materialize_shard
from eoshard.pipeline.shards.zarr_store import create_store


def test_statistics_from_merged_histograms_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.integers(0, 3000, size=n).astype(np.uint16) for n in (1000, 77, 5000)]
    merged = stats.merge(stats.from_json(stats.to_json(stats.histogram(p))) for p in parts)
    values = np.concatenate(parts)
    values = values[values != 0].astype(np.float64)
    summary = stats.summarise(merged)
    assert summary["count"] == values.size
    assert summary["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert summary["std"] == pytest.approx(values.std(), rel=1e-9)
    assert summary["min"] == values.min() and summary["max"] == values.max()
    for p in stats.PERCENTILES:
        assert summary["percentiles"][str(p)] == np.percentile(values, p, method="inverted_cdf")


def test_splits_are_blocked_deterministic_and_follow_the_fractions() -> None:
    splits = [
        block_split(x * 100.0, y * 100.0, block_size=1000, fractions=(0.6, 0.2, 0.2), seed=3)
        for x in range(200)
        for y in range(200)
    ]
    by_block: dict[tuple[int, int], set[str]] = {}
    for i, split in enumerate(splits):
        x, y = divmod(i, 200)
        by_block.setdefault((math.floor(x / 10), math.floor(y / 10)), set()).add(split)
    assert all(len(s) == 1 for s in by_block.values())
    shares = {
        name: sum(s == {name} for s in by_block.values()) / len(by_block) for name in ("train", "val", "test")
    }
    assert shares["train"] == pytest.approx(0.6, abs=0.1) and shares["test"] == pytest.approx(0.2, abs=0.1)
    again = block_split(1234.0, 5678.0, block_size=1000, fractions=(0.6, 0.2, 0.2), seed=3)
    assert again == splits[12 * 200 + 56]


def test_lmdb_map_grows_when_full_and_keeps_existing_keys(tmp_path: Path) -> None:
    writer = LmdbWriter(tmp_path / "part-00", map_size=64 * 1024)
    values = [(f"k{i}", bytes([i]) * 50_000) for i in range(20)]
    assert writer.put_many(values) == 20
    assert writer.put_many([("k0", b"other")]) == 0  # never overwritten
    size = writer.env.info()["map_size"]
    writer.close()
    assert 1_000_000 <= size <= 4_000_000
    env = lmdb.open(str(tmp_path / "part-00"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"k0") == bytes([0]) * 50_000 and txn.stat()["entries"] == 20
    env.close()


def test_an_lmdb_commit_that_fills_the_disk_says_it_is_full(tmp_path: Path) -> None:
    """LMDB reports a write a full disk cut short as "Input/output error": the message adds the disk's free space.
    A real 1 MiB tmpfs (the tests run as root, as CI does)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        writer = LmdbWriter(disk / "part-00")
        with pytest.raises(ShardWriteError) as raised:
            writer.put_many([("k0", bytes(3_000_000))])
        writer.close()
        message = str(raised.value)
        assert message.startswith(f"could not write to LMDB {disk / 'part-00'}: mdb_txn_commit: ")
        assert f"({disk / 'part-00'}'s disk has " in message
        assert "free, less than this write needs, about 4.0 MB: it is full); what was committed before" in message
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_write_with_room_gets_no_full_disk_note(tmp_path: Path) -> None:
    assert full_disk_note(tmp_path, 4096) == ""


def _resident_bytes(path: Path) -> int:
    """How many bytes of ``path`` the page cache holds (``mincore`` on a private map of it)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            assert libc.mincore(ctypes.addressof(start), size, vector) == 0, ctypes.get_errno()
        finally:
            del start  # the map closes only without it
    return sum(v & 1 for v in vector) * mmap.PAGESIZE


@pytest.mark.parametrize("drop", [True, False])
def test_lmdb_commits_leave_the_page_cache_and_the_values_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drop: bool
) -> None:
    """Committed pages (synced by LMDB) leave the page cache, so the next commit's writes reuse freed pages."""
    monkeypatch.setattr(lmdb_store, "_DROP_COMMITTED", drop)
    rng = np.random.default_rng(5)
    values = [(f"k{i:03d}", rng.integers(0, 2**16, 2**20, dtype=np.uint16).tobytes()) for i in range(24)]
    with LmdbWriter(tmp_path / "part-00") as writer:
        for n in range(0, 24, 8):
            assert writer.put_many(values[n : n + 8]) == 8
        resident = _resident_bytes(tmp_path / "part-00" / "data.mdb")
    if drop:
        assert resident < 2**20  # of 48 MiB written: the pages LMDB's map holds at most
    else:
        assert resident > 40 * 2**20
    env = lmdb.open(str(tmp_path / "part-00"), readonly=True, lock=False)
    with env.begin() as txn:
        assert [(k.decode(), bytes(v)) for k, v in txn.cursor()] == values
    env.close()


def test_commit_log_resumes_only_the_same_plan(tmp_path: Path) -> None:
    log = CommitLog(tmp_path)
    assert not log.start({"a": 1})
    log.record_plan({"a": 1})
    log.commit(3, {"shard": 3})
    assert log.start({"a": 1}) and log.done() == {3}
    with pytest.raises(PlanMismatchError, match=r"differs in a\)"):
        log.start({"a": 2})
    # the labels' parcels, a key plans of earlier builds lack: compared where both have it
    log.record_plan({"a": 1, "config": {"period": {"start": "2024-04-01", "end": "2024-05-01"}, "bands": ["B02"]}})
    same = {"a": 1, "config": {"period": {"start": "2024-04-01", "end": "2024-05-01"}, "bands": ["B02"]}}
    assert log.start({**same, "labels_sha256": "f00"})
    log.record_plan({**same, "labels_sha256": "f00"})
    with pytest.raises(PlanMismatchError, match=r"differs in labels_sha256\)"):
        log.start({**same, "labels_sha256": "ba4"})
    later = {**same, "config": {**same["config"], "period": {"start": "2024-04-01", "end": "2024-06-01"}}}
    with pytest.raises(PlanMismatchError, match=r"differs in config.period.end, labels_sha256\)"):
        log.start(later)
    # the files' sizes, too: a file replaced since the build started is named
    sizes = {**same, "labels_sha256": "f00", "file_sizes": {"P1": {"B02": 10, "B03": 11}, "P2": {"B02": 12}}}
    assert log.start(sizes)
    log.record_plan(sizes)
    replaced = {**sizes, "file_sizes": {"P1": {"B02": 10, "B03": 13}, "P2": {"B02": 12}}}
    with pytest.raises(PlanMismatchError) as refused:
        log.start(replaced)
    assert str(refused.value) == (
        f"{tmp_path} holds an unfinished build of a different plan (differs in file_sizes.P1.B03; the file of product "
        "P1 asset B03 is not the size it was when this build started: it was replaced, and the samples written read "
        "the old one): use a new output path, or delete the folder to start over"
    )
    many = {**sizes, "a": 2, "b": 3, "c": 4, "d": 5, "e": 6, "f": 7}
    with pytest.raises(PlanMismatchError, match=r"differs in a, b, c, d, e and 1 more\)"):
        log.start(many)


def test_a_plan_of_before_the_mask_files_were_checked_resumes_and_a_changed_mask_file_does_not(
    tmp_path: Path,
) -> None:
    log = CommitLog(tmp_path)
    before = {"a": 1, "file_sizes": {"P1": {"B02": 10}, "P2": {"B02": 12}}}  # no SCL sizes recorded
    log.record_plan(before)
    log.commit(0, {"shard": 0})
    now = {"a": 1, "file_sizes": {"P1": {"B02": 10, "SCL": 5}, "P2": {"B02": 12, "SCL": 6}}}
    assert log.start(now) and log.recorded_plan() == before
    with pytest.raises(PlanMismatchError, match=r"differs in file_sizes.P1.B02; the file of product P1 asset B02"):
        log.start({"a": 1, "file_sizes": {"P1": {"B02": 11, "SCL": 5}, "P2": {"B02": 12, "SCL": 6}}})
    log.record_plan(now)
    with pytest.raises(PlanMismatchError, match=r"differs in file_sizes.P2.SCL; the file of product P2 asset SCL"):
        log.start({"a": 1, "file_sizes": {"P1": {"B02": 10, "SCL": 5}, "P2": {"B02": 12, "SCL": 7}}})


def test_a_rerun_accepts_a_file_it_could_not_read_at_another_size_and_no_other(tmp_path: Path) -> None:
    """A file a run could not read (cut short) is repaired: the rerun resumes, with its new size recorded; a file
    that read well and changed size since is still refused."""
    log = CommitLog(tmp_path)
    plan = {"a": 1, "file_sizes": {"P1": {"B02": 10, "B03": 11}, "P2": {"B02": 12}}}
    assert not log.start(plan)
    log.record_plan(plan)
    log.commit(0, {"shard": 0})  # a shard read the files as they were
    log.record_unreadable("P1", "B03")
    log.record_unreadable("P1", "B03")
    assert log.unreadable() == {"P1": ["B03"]}
    other = {**plan, "file_sizes": {"P1": {"B02": 10, "B03": 11}, "P2": {"B02": 99}}}
    with pytest.raises(PlanMismatchError, match=r"differs in file_sizes.P2.B02; the file of product P2 asset B02"):
        log.start(other)
    repaired = {**plan, "file_sizes": {"P1": {"B02": 10, "B03": 31}, "P2": {"B02": 12}}}
    assert log.start(repaired)
    assert json.loads(log.plan_path.read_text()) == repaired and log.unreadable() == {}
    with pytest.raises(PlanMismatchError, match=r"differs in file_sizes.P1.B03;"):
        log.start(plan)  # accepted once: the plan now records the repaired file


def test_commit_records_read_back_as_json_wrote_them(tmp_path: Path) -> None:
    """Records go through orjson (the driver's per-shard cost): what comes back is what the standard library's
    ``json`` round trip gives, integer keys and small floats included; a plan an older build wrote with ``json``
    still resumes."""
    record = {
        "shard": 7,
        "histograms": {"B02": [[1, 2, 65535], [3, 0, 2**40]]},
        "rows": [{"valid_fraction": 1e-05, "transform": [10.0, 0.0, 600060.0], "lmdb_part": None}],
        "class_counts": {1: 5, 12: 0},
        "checksums": {"data.zarr/B02/c/7/0/0/0/0": "ab" * 32},
    }
    log = CommitLog(tmp_path)
    log.commit(7, record)
    (back,) = log.records()
    assert back == json.loads(json.dumps(record)) and back["class_counts"] == {"1": 5, "12": 0}
    assert back["rows"][0]["valid_fraction"] == 1e-05
    plan = {"config": {"bands": ["B02"], "cloud": 0.5}, "dates": ["2024-05-01"]}
    log.plan_path.write_text(json.dumps(plan, sort_keys=True, separators=(",", ":")))
    assert log.start(plan)


LAYOUTS = {  # one 10 m band over three dates, 4 x 4 px samples
    "s2_10m": ((3, 1, 4, 4), "uint16"),
    "valid_mask": ((3, 4, 4), "bool"),
    "valid_fraction": ((3,), "float32"),
    "time_mask": ((3,), "bool"),
    "sample_mask": ((), "bool"),
}


def _metadata(value: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (its JSON header after an 8-byte length)."""
    n = int.from_bytes(value[:8], "little")
    return json.loads(value[8 : 8 + n])["__metadata__"]


def test_shard_task_drops_samples_with_too_few_dates_and_counts_them(tmp_path: Path) -> None:
    dates = ("2024-01-01T00:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00")
    images = np.ones((2, 3, 1, 4, 4), np.uint16) * 7
    images[0, 1:] = 0  # sample 0: only one date with data
    images[1, 1, 0, :3] = 0  # sample 1: date 1 is 25 % valid
    layouts = LAYOUTS
    create_store(tmp_path / "data.zarr", 2, layouts, shard_size=2, attrs={})
    grid = GeoBox((4, 8), Affine(10, 0, 0, 0, -10, 0), "EPSG:32633")
    spec = ShardSpec(
        out=str(tmp_path), index=0, shard_size=2, patches=tuple(patch_grid(grid, 4)),
        groups={"s2_10m": ["B02"]}, factors={"s2_10m": 1}, dates=dates, layouts=layouts,
        lmdb_part="part-00", write_zarr=True, min_valid_fraction=0.5, min_dates=2,
    )  # fmt: skip
    result = materialize_shard(spec, {"s2_10m": list(images)}, {})
    assert result["dropped"] == 1
    assert [key for key, _ in result["records"]] == ["32633_10_40_0"]  # the second patch, keyed by its corner
    sample = load(result["records"][0][1])
    metadata = _metadata(result["records"][0][1])
    assert (metadata["crs"], json.loads(metadata["transform"])) == ("EPSG:32633", [10, 0, 40, 0, -10, 0])
    assert sample["time_index"].tolist() == [0, 2]
    assert sample["B02"].shape == (2, 4, 4) and (sample["B02"] == 7).all()
    group = zarr.open_group(str(tmp_path / "data.zarr"), mode="r")
    assert group["sample_mask"][:].tolist() == [False, True]
    assert group["time_mask"][1].tolist() == [True, False, True]
    assert group["valid_fraction"][1].tolist() == [1.0, 0.25, 1.0]
    assert not group["s2_10m"][0].any() and not group["s2_10m"][1, 1].any()
    row = result["rows"][0]
    assert (row["zarr_index"], row["n_dates"], row["masked_pixels"]) == (1, 2, 0)
    assert (row["row"], row["col"], row["crs"], row["transform"]) == (0, 4, "EPSG:32633", [10, 0, 40, 0, -10, 0])
    assert json.loads(row["class_histogram"]) == {}
    assert stats.from_json(result["histograms"]["B02"]) == {7: 32}


def test_spooled_values_reach_lmdb_as_the_returned_ones_would(tmp_path: Path) -> None:
    """A shard task with ``spool_values`` writes its LMDB values to ``_build/values`` instead of returning them
    through Dask; the driver reads back the same keys and bytes, and a short file is refused, not committed."""
    images = (np.arange(3 * 2 * 1 * 4 * 4, dtype=np.uint16).reshape(2, 3, 1, 4, 4) % 50) + 1
    layouts = LAYOUTS
    dates = ("2024-01-01T00:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00")
    grid = GeoBox((4, 8), Affine(10, 0, 0, 0, -10, 0), "EPSG:32633")
    results = {}
    for spool in (False, True):
        out = tmp_path / str(spool)
        spec = ShardSpec(
            out=str(out), index=5, shard_size=2, patches=tuple(patch_grid(grid, 4)), groups={"s2_10m": ["B02"]},
            factors={"s2_10m": 1}, dates=dates, layouts=layouts, lmdb_part="part-00", write_zarr=False,
            spool_values=spool,
        )  # fmt: skip
        results[spool] = materialize_shard(spec, {"s2_10m": list(images)}, {})
    returned, spooled = results[False], results[True]
    assert spooled["records"] == [] and "spool" not in returned
    path = Path(spooled["spool"]["path"])
    assert path == tmp_path / "True" / "_build" / "values" / "shard-000005.bin"
    back = [(key, bytes(value)) for key, value in read_spooled(spooled["spool"])]
    assert back == returned["records"] and [k for k, _ in back] == ["32633_10_0_0", "32633_10_40_0"]
    assert path.stat().st_size == sum(len(v) for _, v in returned["records"])
    path.write_bytes(path.read_bytes()[:-1])  # a file cut short (a full disk while another process wrote it)
    with pytest.raises(ShardWriteError, match=r"shard-000005\.bin holds"):
        read_spooled(spooled["spool"])


def test_a_zarr_file_refused_while_the_values_spool_fails_the_task_and_leaves_neither_behind(
    tmp_path: Path,
) -> None:
    """The Zarr files go to the disk on their own thread while the task spools its LMDB values: a file the disk
    refuses (here one array's chunk folder is a file) fails the task as a write error naming the shard, after the
    other arrays' files are written, and leaves no spooled values and no temporary file."""
    images = (np.arange(2 * 3 * 1 * 4 * 4, dtype=np.uint16).reshape(2, 3, 1, 4, 4) % 50) + 1
    dates = ("2024-01-01T00:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00")
    store = tmp_path / "data.zarr"
    create_store(store, 2, LAYOUTS, shard_size=2, attrs={})
    (store / "s2_10m" / "c").write_bytes(b"")  # where the array's shard folders go
    grid = GeoBox((4, 8), Affine(10, 0, 0, 0, -10, 0), "EPSG:32633")
    spec = ShardSpec(
        out=str(tmp_path), index=0, shard_size=2, patches=tuple(patch_grid(grid, 4)), groups={"s2_10m": ["B02"]},
        factors={"s2_10m": 1}, dates=dates, layouts=LAYOUTS, lmdb_part="part-00", write_zarr=True,
        spool_values=True,
    )  # fmt: skip
    with pytest.raises(ShardWriteError, match=rf"^could not write shard 0 of {store}: .*rerun the same build"):
        materialize_shard(spec, {"s2_10m": list(images)}, {})
    assert not any(spool_dir(tmp_path).iterdir())
    written = sorted(str(f.relative_to(store)) for f in store.rglob("*") if f.is_file() and f.name != "zarr.json")
    assert written == [
        "s2_10m/c", "sample_mask/c/0", "time_mask/c/0/0", "valid_fraction/c/0/0", "valid_mask/c/0/0/0/0"
    ]  # fmt: skip


def test_spooled_values_are_mapped_for_shards_of_any_size_and_a_second_run_replaces_the_file(
    tmp_path: Path,
) -> None:
    """The driver gets views of each file mapped: each shard's views hold that shard's bytes, empty
    values and empty shards included, and stay so after the file is deleted (release) or written again by a second
    run of the same task (it writes a new file and renames it over the old one)."""
    shards = {
        1: [("a", b"x" * 1000), ("b", b"y" * 24)],
        2: [("c", b"z" * 10)],
        3: [("d", bytes(range(256)) * 20), ("e", b""), ("f", b"w" * 7)],
        4: [("g", b"")],
    }
    held = {}
    for shard, records in shards.items():
        spool = spool_values(tmp_path, shard, records)
        held[shard] = read_spooled(spool)
        assert [(k, bytes(v)) for k, v in held[shard]] == records
        release_spooled(spool)
        assert not Path(spool["path"]).exists()
    again = spool_values(tmp_path, 1, [("a", b"Q" * 1000), ("b", b"R" * 24)])  # the same task run again
    assert [(k, bytes(v)) for k, v in held[1]] == shards[1]
    assert [bytes(v) for _, v in read_spooled(again)] == [b"Q" * 1000, b"R" * 24]
    assert sorted(p.name for p in spool_dir(tmp_path).iterdir()) == ["shard-000001.bin"]  # no partial file left
    assert {k: [(key, bytes(v)) for key, v in views] for k, views in held.items()} == shards
