"""Builds that read their products over the network: HTTP with Range requests and S3 (moto) give the bytes of a
build from local files."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from affine import Affine
from typer.testing import CliRunner, Result

from eoshard.flows.build import plan_build, run_build
from eoshard.flows.cli import app
from eoshard.flows.cluster import dask_client
from eoshard.flows.config import load_config
from eoshard.flows.demo.serve import Outage, Tokens, remote_item_collection, serve_folder
from eoshard.flows.demo.tile import TileWorld, write_tile_world
from eoshard.flows.shard_runner import MAX_FRUITLESS_SIGNINGS
from eoshard.pipeline import open_dataset
from eoshard.pipeline.assets import GeorefMismatchError
from eoshard.pipeline.errors import AssetReadError
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.services.moto_s3 import BUCKET

EXPIRE_AT = (110, 200)  # files served when the tokens expire: after the planning's 33 headers, within the shards'
ASSETS = 33  # 3 products x 11 assets
REVOKE_AFTER = 80  # files served before the credentials are revoked: the planning's and a few of the shards'
OUTAGE_AFTER = 140  # requests answered before the server hangs: the planning's and about half the shards'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TileWorld:
    """The small tile world (1098 px: several 1024 px COG blocks per 10 m band), three acquisitions."""
    return write_tile_world(tmp_path_factory.mktemp("tile-world"), "small", dates=3)


def _config(world: TileWorld, source: Path, out: Path, **catalog: Any) -> Path:
    config = {
        "name": out.name,
        "catalog": {"source": str(source), "collection": "sentinel-2-l2a", "max_cloud": 100, **catalog},
        "aoi": str(world.aoi),
        "period": {"start": "2024-04-01", "end": "2024-10-31"},
        "bands": ["B02", "B04", "B08", "B11", "B12"],
        "labels": {"path": str(world.parcels), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 256},
        "timeseries": {"mask": "scl", "min_valid_fraction": 0.0},
        "output": {"path": str(out), "shard_size": 4},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(world: TileWorld, source: Path, out: Path, **catalog: Any) -> Result:
    return CliRunner().invoke(app, ["build", str(_config(world, source, out, **catalog)), "--workers", "2"])


def _build(world: TileWorld, source: Path, out: Path, **catalog: Any) -> None:
    result = _run(world, source, out, **catalog)
    assert result.exit_code == 0, result.output


def _same(a: Path, b: Path) -> None:
    files_a = {k: v for k, v in dataset_files(a).items() if not k.startswith("_build")}
    files_b = {k: v for k, v in dataset_files(b).items() if not k.startswith("_build")}
    assert sorted(files_a) == sorted(files_b)
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert lmdb_contents(a) == lmdb_contents(b)


@pytest.fixture(scope="module")
def local(world: TileWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "tile"
    _build(world, world.catalog, out)
    return out


@pytest.mark.slow
def test_a_build_over_http_equals_the_build_from_files(world: TileWorld, local: Path, tmp_path: Path) -> None:
    with serve_folder(world.root, latency=0.005) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        assert '"href": "http://127.0.0.1:' in items.read_text()
        _build(world, items, tmp_path / "tile")
        requests, fetched = served.traffic.requests, served.traffic.bytes
    _same(local, tmp_path / "tile")
    tif = sum(p.stat().st_size for p in world.root.rglob("*.tif"))
    assert requests > 0 and 0 < fetched < 2 * tif  # ranges of the files, not whole files per patch


@pytest.mark.slow
def test_a_build_over_http_that_keeps_few_files_open_warns_and_equals_the_build_from_files(
    world: TileWorld, local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker keeps 4 of the 18 files of a block row open: the build says so and what to set, its workers close
    and open files again while their 8 read threads read, and the bytes are those of the build from files."""
    from eoshard.pipeline.direct import blocks

    monkeypatch.setenv("EOSHARD_MAX_OPEN_FILES", "4")  # the workers', read when they start
    monkeypatch.setattr(blocks, "MAX_OPEN_FILES", 4)  # the driver's, for the note
    monkeypatch.setattr(blocks, "MAX_OPEN_FILES_SET", True)  # the user's setting: the build does not raise it
    with serve_folder(world.root, latency=0.005) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        result = _run(world, items, tmp_path / "tile")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    # 3 dates x (B02, B04, B08, B11, B12 and the SCL)
    assert "reads 18 source files, more than each worker keeps open (4, EOSHARD_MAX_OPEN_FILES)" in said
    assert "Set EOSHARD_MAX_OPEN_FILES=64 where the workers start" in said
    _same(local, tmp_path / "tile")


@pytest.mark.slow
def test_a_build_from_s3_equals_the_build_from_files(
    world: TileWorld, local: Path, s3_env: Any, tmp_path: Path
) -> None:
    s3_env.put(str(world.root / "catalog"), f"{BUCKET}/tile-world/catalog", recursive=True)
    items = remote_item_collection(world.catalog, world.root, f"s3://{BUCKET}/tile-world", tmp_path / "items.json")
    _build(world, items, tmp_path / "tile")
    _same(local, tmp_path / "tile")


@pytest.mark.slow
def test_a_build_that_outlives_its_signatures_signs_again_and_equals_the_build_from_files(
    world: TileWorld, local: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's token expires at 110 files served, before the build is done (it reads 145-159 without expiry),
    and the next one at 200: the driver signs the products again (``catalog.modifier``), submits the refused shards
    again, and the bytes are those of the build from files."""
    tokens = Tokens(expire_at=EXPIRE_AT)
    with serve_folder(world.root, latency=0.005, tokens=tokens) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        _build(world, items, tmp_path / "tile", modifier="tests.services.signing:sign_inplace")
    _same(local, tmp_path / "tile")
    signings = [r.getMessage() for r in caplog.records if "signing the products again" in r.getMessage()]
    assert tokens.expired >= 1 and len(signings) >= 1
    assert tokens.issued == ASSETS * (
        1 + len(signings)
    )  # every asset of the 3 products, at planning and each time
    assert all("HTTP response code: 403" in m and "with tests.services.signing:sign_inplace" in m
               for m in signings)  # fmt: skip
    assert "token=t" not in caplog.text  # the signatures are never logged


def test_signatures_the_store_never_accepts_fail_the_build_with_what_to_do(
    world: TileWorld, tmp_path: Path
) -> None:
    """A modifier whose signatures the store refuses (wrong credentials, not expiry): the driver signs again
    MAX_FRUITLESS_SIGNINGS times, then the build fails, says so and names the asset, without the signature."""
    tokens = Tokens(revoke_after=REVOKE_AFTER)
    with serve_folder(world.root, latency=0.005, tokens=tokens) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        result = _run(world, items, tmp_path / "tile", modifier="tests.services.signing:sign_inplace")
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # unwrapped
    assert tokens.issued == ASSETS * (1 + MAX_FRUITLESS_SIGNINGS)
    assert "error: could not read asset " in output and "Traceback" not in output
    assert (
        f"the store refused the files again after the build signed the products again {MAX_FRUITLESS_SIGNINGS} "
        "times (tests.services.signing:sign_inplace): its credentials or signatures are wrong, not expired; check "
        "them, then rerun the same build to finish" in output
    )
    assert "token=t" not in output


@pytest.mark.slow
def test_a_server_that_stops_answering_stops_the_build_at_once_and_a_rerun_finishes_it(
    world: TileWorld, local: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server hangs midway (its requests wait unanswered): the first shard that cannot read stops the build,
    with the server's advice, instead of each shard failing in turn after its own wait; the shards committed stay,
    and a rerun once the server answers gives the bytes of the build from files."""
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "2")  # the workers inherit it: a hung read fails after 2 s
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    outage = Outage(after=OUTAGE_AFTER)
    out = tmp_path / "tile"
    with serve_folder(world.root, latency=0.005, outage=outage) as served:
        items = remote_item_collection(world.catalog, world.root, served.url, tmp_path / "items.json")
        try:
            stopped = _run(world, items, out)
        finally:
            outage.end()
        assert stopped.exit_code == 1
        output = " ".join(stopped.output.split())  # unwrapped
        assert "error: could not read asset " in output and "Traceback" not in output
        # a block read, which GDAL fails without a reason, asked again; or an open, whose timeout GDAL names itself
        assert "(asked again: no answer: timed out)" in output or "CURL error: Operation too slow" in output
        assert "the server could not be reached or did not answer, which says nothing about the file" in output
        committed = len(list((out / "_build" / "commits").glob("*.json")))
        assert (
            "then rerun the same build to finish (the build stopped at this shard: the others read from the same "
            f"server; {committed} of 4 shards are committed)" in output
        )
        assert "shards failed" not in output  # not every shard waiting for the server in turn
        _build(world, items, out)
    _same(local, out)


def _rewrite(path: Path) -> tuple[int, int]:
    """The COG at ``path`` written again with other pixels and another compression; its sizes before and after."""
    before = path.stat().st_size
    with rasterio.open(path) as src:
        profile, values = src.profile, src.read()
    with rasterio.open(path, "w", **{**profile, "compress": "lzw", "predictor": 1}) as dst:
        dst.write(values + 1)
    return before, path.stat().st_size


def test_the_mask_files_are_checked_as_the_bands_are(world: TileWorld, tmp_path: Path) -> None:
    """The SCL files decide which dates a sample keeps: planning checks their georeferencing against the items and
    records their sizes, and a worker stops at an SCL file replaced since, as at a band's."""
    root = tmp_path / "world"
    shutil.copytree(world.root, root)
    catalog = root / world.catalog.relative_to(world.root)
    item = next(iter(pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)))
    target = Path(str(item.assets["SCL"].get_absolute_href()))
    plan = plan_build(load_config(_config(world, catalog, tmp_path / "tile")))
    assert plan.file_sizes[item.id]["SCL"] == target.stat().st_size
    assert sorted(plan.file_sizes[item.id]) == ["B02", "B04", "B08", "B11", "B12", "SCL"]
    before, after = _rewrite(target)
    with dask_client(n_workers=1) as client, pytest.raises(AssetReadError) as stopped:
        run_build(plan, client)
    said = str(stopped.value)
    assert said.startswith(f"could not read asset SCL of product {item.id} ({target}) while making shard "), said
    assert f"the file changed since the build was planned ({before} bytes then, {after} bytes now)" in said
    with rasterio.open(target, "r+") as ds:  # one pixel's shift: the masks would land beside the bands
        ds.transform = ds.transform * Affine.translation(1, 0)
    with pytest.raises(
        GeorefMismatchError, match=rf"product {item.id} asset SCL \(.*\): the item says .*transform"
    ):
        plan_build(load_config(_config(world, catalog, tmp_path / "tile2")))


@pytest.mark.slow
@pytest.mark.parametrize("served", [False, True], ids=["files", "http"])
def test_a_file_replaced_after_planning_stops_the_build_and_its_rerun_is_refused(
    world: TileWorld, local: Path, tmp_path: Path, served: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A product's file written again between the planning and the reads (a sync of the archive, a new processing
    under the same name): the shards would mix its two versions. The first read of it stops the build and names it;
    a rerun into the same folder is refused, naming the file (or, when no shard was committed, starts over); a build
    into a new folder reads the new file."""
    root = tmp_path / "world"
    shutil.copytree(world.root, root)
    catalog = root / world.catalog.relative_to(world.root)
    item = next(iter(pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)))
    target = Path(str(item.assets["B04"].get_absolute_href()))
    with contextlib.ExitStack() as stack:
        source = catalog
        if served:
            url = stack.enter_context(serve_folder(root, latency=0.002)).url
            source = remote_item_collection(catalog, root, url, tmp_path / "items.json")
        config = _config(world, source, tmp_path / "tile")
        plan = plan_build(load_config(config))
        before, after = _rewrite(target)
        assert before != after
        with dask_client(n_workers=2) as client, pytest.raises(AssetReadError) as stopped:
            run_build(plan, client)
        said = str(stopped.value)
        href = f"{url}/{target.relative_to(root).as_posix()}" if served else str(target)
        assert re.fullmatch(
            rf"could not read asset B04 of product {item.id} \({re.escape(href)}\) while making shard \d+: could not "
            rf"read {re.escape(href)}: the file changed since the build was planned \({before} bytes then, {after} "
            r"bytes now\)\. The shards committed so far read it as it was: build into a new output path, or delete "
            r"this one, to read every sample from the files as they are now \(the build stopped at this shard: "
            r"samples read from two versions of a file would not agree; (\d+) of 4 shards are committed\)",
            said,
        ), said
        committed = int(said.rsplit("; ", 1)[1].split(" of ")[0])
        rerun = _run(world, source, tmp_path / "tile")
        if committed:  # samples of the old file are in the folder: refused
            assert rerun.exit_code == 1 and "writing shards" not in rerun.output  # refused before a bar starts
            assert (
                f"differs in file_sizes.{item.id}.B04; the file of product {item.id} asset B04 is not the size it was "
                "when this build started: it was replaced, and the samples written read the old one): use a new "
                "output path, or delete the folder to start over" in " ".join(rerun.output.split())
            )
        else:  # none are: the rerun starts over, reading the new file
            assert rerun.exit_code == 0, rerun.output
            assert (
                f"{tmp_path / 'tile'} held an unfinished build of another plan (it differed in "
                f"file_sizes.{item.id}.B04) that had committed no shard: starting over with this one"
            ) in caplog.messages
        new = tmp_path / "new" / "tile"  # the same name: the same STAC Collection
        new.parent.mkdir()
        _build(world, source, new)
        if not committed:
            _same(tmp_path / "tile", new)
    got, was = open_dataset(new), open_dataset(local)
    date = [str(t)[:10] for t in got.time.values].index(str(item.datetime)[:10])  # one product a date
    np.testing.assert_array_equal(got.s2_10m[:, date, 1].values, was.s2_10m[:, date, 1].values + 1)  # B04: new
    np.testing.assert_array_equal(got.s2_10m[:, :, [0, 2]].values, was.s2_10m[:, :, [0, 2]].values)  # B02, B08
    assert list(got.band_s2_10m.values) == ["B02", "B04", "B08"]
