"""What ``eoshard verify`` says it checked: the formats the dataset holds, and the source samples it re-read."""

from __future__ import annotations

import pytest

from eoshard.flows.verify import source_samples, verified_parts

BOTH = {"n_samples": 9, "formats": {"zarr": {"path": "data.zarr"}, "lmdb": {"path": "data.lmdb"}}}
ZARR = {"n_samples": 9, "formats": {"zarr": {"path": "data.zarr"}, "lmdb": None}}
LMDB = {"n_samples": 9, "formats": {"zarr": None, "lmdb": {"path": "data.lmdb"}}}


@pytest.mark.parametrize(
    ("manifest", "asked", "said"),
    [
        (BOTH, 4, "checksums, LMDB, Zarr and 4 source samples"),
        (BOTH, 1, "checksums, LMDB, Zarr and 1 source sample"),
        (BOTH, 99999, "checksums, LMDB, Zarr and 9 source samples"),  # said 99999, of a dataset of 9
        (ZARR, 4, "checksums, Zarr and 4 source samples"),
        (LMDB, 4, "checksums, LMDB and 0 source samples"),  # the comparison reads Zarr: none without it
    ],
)
def test_verify_says_what_it_read(manifest: dict[str, object], asked: int, said: str) -> None:
    assert verified_parts(manifest, asked) == said
    assert source_samples(manifest, asked) == int(said.split(" and ")[1].split()[0])
