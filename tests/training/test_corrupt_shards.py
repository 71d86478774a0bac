"""One flipped byte in a shard is an error naming the dataset, the sample and the file, never silent training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lmdb
import pytest

from eoshard.training.cli import main
from eoshard.training.data import make_dataset
from eoshard.training.errors import CorruptSampleError, DatasetFormatError
from eoshard.training.manifest import Manifest

pytestmark = pytest.mark.needs_build


def _copy(shards: Path, tmp_path: Path) -> Path:
    out = tmp_path / "dataset"
    shutil.copytree(shards, out)
    return out


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_lmdb_value(dataset: Path, manifest: Manifest, n: int) -> Path:
    """Flip one byte inside the pixels of sample ``n``'s value in its data.mdb (found by its own bytes)."""
    env_path = dataset / "data.lmdb" / str(manifest.parts[n])
    env = lmdb.open(str(env_path), readonly=True, lock=False)
    with env.begin() as txn:
        value = bytes(txn.get(manifest.keys[n].encode()))
    env.close()
    mdb = env_path / "data.mdb"
    whole = mdb.read_bytes()
    header_size = int.from_bytes(value[:8], "little")
    start, end = (8 + header_size + o for o in json.loads(value[8 : 8 + header_size])["B02"]["data_offsets"])
    for at in range(start, end - 64, 16):  # a window of B02's pixels found once in the file: that value's
        if whole.count(value[at : at + 64]) == 1:
            _flip(mdb, whole.find(value[at : at + 64]) + 32)
            return mdb
    raise AssertionError("no unique window of B02 pixels in data.mdb")


@pytest.mark.parametrize("check", ["crc32c", "sha256"])
def test_a_flipped_byte_in_an_lmdb_value_names_sample_and_file(shards: Path, tmp_path: Path, check: str) -> None:
    dataset = _copy(shards, tmp_path)
    if check == "sha256":  # a dataset written before the index had lmdb_crc32c: the SHA-256 is checked
        import pyarrow.parquet as pq

        index = pq.read_table(dataset / "index.parquet")
        pq.write_table(index.drop_columns(["lmdb_crc32c"]), dataset / "index.parquet")
    manifest = Manifest.read(dataset)
    assert (manifest.crcs[0] is not None) == (check == "crc32c") and manifest.digests[0] is not None
    n = 5
    mdb = _flip_lmdb_value(dataset, manifest, n)
    data = make_dataset(manifest, "lmdb", normalise=False)
    data[n + 1]  # the other samples still read
    with pytest.raises(CorruptSampleError) as caught:
        data[n]
    message = str(caught.value)
    assert ("CRC-32C" if check == "crc32c" else "SHA-256") in message
    assert manifest.keys[n] in message and str(dataset) in message and str(mdb.parent) in message
    unchecked = make_dataset(manifest, "lmdb", normalise=False, verify=False)[n]["image"]  # what used to be read
    clean = make_dataset(Manifest.read(shards), "lmdb", normalise=False)[n]["image"]
    assert not unchecked.equal(clean)  # the flip did change the values: silent without the check


def test_a_flipped_byte_in_a_zarr_shard_names_sample_and_file(shards: Path, tmp_path: Path) -> None:
    dataset = _copy(shards, tmp_path)
    manifest = Manifest.read(dataset)
    shard_size = manifest.raw["formats"]["zarr"]["shard_size"]
    n = next(i for i, slot in enumerate(manifest.slots) if slot // shard_size == 1)
    files = sorted(p for p in manifest.raw["checksums"] if p.split("/")[1] == "B02" or "/c/1" in p)
    target = dataset / next(p for p in files if p.split("/")[3] == "1")
    _flip(target, target.stat().st_size // 2)
    data = make_dataset(manifest, "zarr", normalise=False)
    data[0]  # shard 0 is intact
    with pytest.raises(CorruptSampleError, match="is corrupt") as caught:
        data[n]
    assert manifest.keys[n] in str(caught.value) and str(target) in str(caught.value)


def test_fit_on_a_corrupt_dataset_is_a_message_and_a_failure(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _copy(shards, tmp_path)
    manifest = Manifest.read(dataset)
    _flip_lmdb_value(dataset, manifest, 3)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"dataset": str(dataset), "output": str(tmp_path / "run"), "architecture": "fcn",
                                  "model": {"width": 4, "layers": 1}, "epochs": 1, "batch_size": 8,
                                  "workers": 1}))  # fmt: skip
    assert main(["fit", str(config)]) == 1
    err = capsys.readouterr().err
    assert "is corrupt" in err and manifest.keys[3] in err
    assert "Traceback" not in err


def test_an_error_from_a_loader_worker_is_printed_without_the_workers_traceback(
    shards: Path, tmp_path: Path
) -> None:
    from torch.utils.data import DataLoader

    from eoshard.training.cli import message

    dataset = _copy(shards, tmp_path)
    manifest = Manifest.read(dataset)
    _flip_lmdb_value(dataset, manifest, 2)
    loader = DataLoader(make_dataset(manifest, "lmdb", normalise=False, indices=[2]), num_workers=1)
    with pytest.raises(CorruptSampleError) as caught:
        next(iter(loader))
    assert "Traceback" in str(caught.value)  # torch's text: the worker's traceback
    shown = message(caught.value)
    assert (
        shown.startswith(f"sample {manifest.keys[2]!r} of dataset {dataset} is corrupt")
        and "Traceback" not in shown
    )


def test_a_truncated_data_mdb_is_refused_before_a_read_kills_the_process(shards: Path, tmp_path: Path) -> None:
    """A copy cut short: reading a value on the missing pages killed the process (and the loader's workers) with
    SIGBUS, no message."""
    dataset = _copy(shards, tmp_path)
    manifest = Manifest.read(dataset)
    mdb = dataset / "data.lmdb" / str(manifest.parts[-1]) / "data.mdb"
    size = mdb.stat().st_size
    with mdb.open("r+b") as f:
        f.truncate(size // 2)
    data = make_dataset(manifest, "lmdb", normalise=False)
    with pytest.raises(DatasetFormatError, match=f"{mdb} is truncated: {size // 2} bytes where its pages need"):
        data[len(manifest.keys) - 1]


def test_a_dataset_built_again_at_the_same_path_is_read_from_its_new_files(shards: Path, tmp_path: Path) -> None:
    """The environments stay open per process: a dataset deleted and made again at its path (a notebook's kernel
    outlives it) was read through the old, deleted files' environment, silently, whatever the new files hold."""
    from eoshard.training.data import close_environments

    dataset = _copy(shards, tmp_path)
    n = 5
    # the new files differ from the old ones in one byte of sample n, flipped while the old files are there: while
    # an environment is open, py-lmdb's "already open" guard keeps its lock.mdb's inode number, which no one holds
    # once the file is deleted, and the helper's own open of a new data.mdb given that number was refused
    new = shutil.copytree(shards, tmp_path / "new")
    _flip_lmdb_value(new, Manifest.read(new), n)
    make_dataset(Manifest.read(dataset), "lmdb", normalise=False)[n]  # opens its environments
    shutil.rmtree(dataset)
    new.rename(dataset)
    manifest = Manifest.read(dataset)
    data = make_dataset(manifest, "lmdb", normalise=False)
    with pytest.raises(CorruptSampleError, match=manifest.keys[n]):
        data[n]  # read from the new files (the old environment gave the old, intact value)
    close_environments(tmp_path)
    shutil.rmtree(dataset)
    # closed before its folder went: a new dataset whose files reuse the deleted inodes' numbers opens
    for attempt in range(3):
        again = _copy(shards, tmp_path / f"again-{attempt}")
        assert make_dataset(Manifest.read(again), "lmdb", normalise=False)[n]["image"].shape[0] >= 1


def test_a_sample_that_is_not_what_the_manifest_says_names_the_sample(shards: Path, tmp_path: Path) -> None:
    """dataset.json edited (a band renamed) or another dataset's: a KeyError from deep inside the reader before
    (found by the fuzz test of manifests)."""
    dataset = _copy(shards, tmp_path)
    raw = json.loads((dataset / "dataset.json").read_text())
    raw["groups"]["s2_10m"]["bands"][0] = "B01"
    raw["statistics"]["B01"] = raw["statistics"]["B02"]
    (dataset / "dataset.json").write_text(json.dumps(raw))
    manifest = Manifest.read(dataset)
    for fmt in ("lmdb", "zarr"):
        data = make_dataset(manifest, fmt)
        if fmt == "zarr":
            assert data[0]["image"].shape[1] == 4  # Zarr holds the group's bands by position: it reads them
            continue
        with pytest.raises(DatasetFormatError) as caught:
            data[0]
        assert str(caught.value).startswith(
            f"sample {manifest.keys[0]!r} of {dataset} does not match its dataset.json (KeyError: 'B01'): the "
            "manifest does not describe these shards"
        )


def test_a_file_on_the_inode_of_an_environment_still_open_is_a_message(shards: Path, tmp_path: Path) -> None:
    """py-lmdb refuses a second environment on a file of the same inode in one process: a dataset deleted and built
    again at its path while something still reads the old one (the new data.mdb may get the old inode; hard links
    make it certain here). It was lmdb's own error from the pipeline's reader, and "the dataset is incomplete"
    from training's."""
    import os

    from eoshard.pipeline.errors import DatasetError
    from eoshard.pipeline.shards.reader import open_shards
    from eoshard.training.data import close_environments

    old = _copy(shards, tmp_path)
    linked = Path(shutil.copytree(old, tmp_path / "linked", copy_function=os.link))
    manifest = Manifest.read(old)
    key, part = manifest.keys[0], str(manifest.parts[0])
    with open_shards(old) as reading:
        assert reading.read_sample(key, part)
        with open_shards(linked) as second, pytest.raises(DatasetError) as caught:
            second.read_sample(key, part)
        assert str(caught.value) == (
            f"{linked / 'data.lmdb' / part} cannot be opened: this process still has an LMDB environment open on a "
            "file of the same inode, one of a dataset deleted at this path (its data.mdb's inode was given to the new "
            "one) or a hard link to it: close the objects that read the old dataset (close()), or start a new Python "
            "process"
        )
    make_dataset(manifest, "lmdb")[0]  # training's cache holds the old environment now
    with pytest.raises(DatasetFormatError, match=r"this process still has one open on a file of the same inode"):
        make_dataset(Manifest.read(linked), "lmdb")[0]
    close_environments(old)
    assert make_dataset(Manifest.read(linked), "lmdb")[0]["image"].shape[0] >= 1
    close_environments(linked)
