"""The one-pass shard writer gives the bytes zarr writes, on real Sentinel-2 pixels, full and partial shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.windows import Window
from zarr.codecs import ZstdCodec

from eoshard.pipeline.shards.shard_bytes import one_pass_level
from eoshard.pipeline.shards.zarr_store import create_store, shard_files, write_shard
from tests.conftest import shared_path

SHARD = 4
N_SAMPLES = 7  # shard 1 holds samples 4-6 and ends past the array: its fourth chunk is absent


def _samples() -> list[dict[str, np.ndarray]]:
    """Seven samples of every dtype a build writes, cut from the 10 m bands of a real L1C product."""
    folder = shared_path("s2-l1c-T33UUU", "IMG_DATA")
    bands = []
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(next(folder.glob(f"*_{band}.jp2"))) as src:
            bands.append(src.read(1, window=Window(600, 300, 7 * 32, 2 * 32)))
    pixels = np.stack(bands)  # (4, 64, 224) uint16
    out = []
    for n in range(N_SAMPLES):
        s2 = np.stack([pixels[:, :32, n * 32 : (n + 1) * 32], pixels[:, 32:, n * 32 : (n + 1) * 32]])
        reflectance = s2[:, 0].astype(np.float32) / 10000
        reflectance[s2[:, 0] < np.median(s2[:, 0])] = np.nan
        out.append(
            {
                "s2_10m": s2,  # (time, band, y, x)
                "valid_mask": s2[:, 1] > 1000,
                "parcel_id": s2[0, 2].astype(np.int64) * 10**9 + n,
                "class": s2[1, 3].astype(np.int32) - 1500,
                "coverage": reflectance,
                "valid_fraction": np.array([0.25 * n, 1.0], np.float32),
                "sample_mask": np.array(n % 3 != 0),
            }
        )
    return out


def _array(group: zarr.Group, name: str) -> zarr.Array:
    array = group[name]
    assert isinstance(array, zarr.Array)
    return array


def _layouts(samples: list[dict[str, np.ndarray]]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {name: (v.shape, str(v.dtype)) for name, v in samples[0].items()}


def _two_per_chunk(path: Path, samples: list[dict[str, np.ndarray]]) -> zarr.Group:
    """A store of the samples' arrays that the build did not lay out: two samples per chunk, zstd level 3."""
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, (shape, dtype) in _layouts(samples).items():
        group.create_array(
            name, shape=(N_SAMPLES, *shape), chunks=(2, *shape), shards=(SHARD, *shape), dtype=dtype,
            compressors=ZstdCodec(level=3),
        )  # fmt: skip
    return group


def test_one_pass_shards_are_zarrs_bytes_and_read_back_exactly(tmp_path: Path) -> None:
    samples = _samples()
    layouts = _layouts(samples)
    ours, theirs = tmp_path / "ours.zarr", tmp_path / "theirs.zarr"
    for path in (ours, theirs):
        create_store(path, N_SAMPLES, layouts, shard_size=SHARD, attrs={}, nan_fill=("coverage",))
    group = zarr.open_group(str(ours), mode="r")
    assert {name: one_pass_level(_array(group, name)) for name in layouts} == dict.fromkeys(layouts, 1)

    sums = {k: write_shard(ours, k, SHARD, samples[k * SHARD : (k + 1) * SHARD]) for k in (0, 1)}
    reference = zarr.open_group(str(theirs), mode="r+")
    for name in layouts:
        array = _array(reference, name).with_config({"write_empty_chunks": True})
        for k in (0, 1):
            array[k * SHARD : (k + 1) * SHARD] = np.stack([s[name] for s in samples[k * SHARD : (k + 1) * SHARD]])

    for k in (0, 1):
        mine, zarrs = shard_files(ours, k), shard_files(theirs, k)
        assert [f.relative_to(ours) for f in mine] == [f.relative_to(theirs) for f in zarrs]
        assert len(mine) == len(layouts)
        for a, b in zip(mine, zarrs, strict=True):
            assert a.read_bytes() == b.read_bytes(), a
        assert list(sums[k]) == [f"ours.zarr/{f.relative_to(ours)}" for f in mine]  # in shard_files' order
    assert not list(ours.rglob("*.partial"))
    for name in layouts:
        back = np.asarray(_array(group, name)[:])
        expected = np.stack([s[name] for s in samples])
        np.testing.assert_array_equal(back, expected)  # NaN where NaN, every other value exact
        assert back.dtype == expected.dtype


def test_other_layouts_are_written_by_zarr(tmp_path: Path) -> None:
    samples = _samples()
    path = tmp_path / "two-per-chunk.zarr"
    group = _two_per_chunk(path, samples)
    assert one_pass_level(_array(group, "s2_10m")) is None
    for k in (0, 1):
        write_shard(path, k, SHARD, samples[k * SHARD : (k + 1) * SHARD])
    np.testing.assert_array_equal(_array(group, "s2_10m")[:], np.stack([s["s2_10m"] for s in samples]))
    with pytest.raises(KeyError):
        write_shard(path, 0, SHARD, [{**s, "absent": s["class"]} for s in samples[:SHARD]])


def test_a_store_made_again_at_the_same_path_is_written_in_its_own_layout(tmp_path: Path) -> None:
    """How a store's arrays are written is remembered per process by their metadata, not by their path: a store
    made again where another was (a notebook's second build of the same output) is written as it is laid out."""
    samples = _samples()
    path = tmp_path / "again.zarr"
    create_store(path, N_SAMPLES, _layouts(samples), shard_size=SHARD, attrs={}, nan_fill=("coverage",))
    write_shard(path, 0, SHARD, samples[:SHARD])
    one_pass = shard_files(path, 0)
    assert [f.name for f in one_pass] == ["0"] * len(samples[0])  # one shard file per array

    group = _two_per_chunk(path, samples)
    write_shard(path, 0, SHARD, samples[SHARD:] + samples[:1])
    for name in samples[0]:
        np.testing.assert_array_equal(
            _array(group, name)[:SHARD], np.stack([s[name] for s in samples[SHARD:] + samples[:1]])
        )
