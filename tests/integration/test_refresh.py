"""``eoshard refresh`` on the demo world: a build of the first half of the season, refreshed with the second half,
equals a single build over the whole season file for file; a second refresh changes nothing; a held lock fails."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import shapely
import yaml
import zarr
from typer.testing import CliRunner

from eoshard.catalog import select
from eoshard.flows.cli import app
from eoshard.flows.refresh.lock import LOCK_NAME, dataset_lock
from tests.dataset_bytes import dataset_files, lmdb_contents
from tests.services.pgstac import PgStac, with_file_uris

pytestmark = pytest.mark.slow

# A small corner of the demo AOI (56 patches of 24 px in 19 shards of 3), as in test_resume.
BBOX = [11.96, 48.005, 11.985, 48.02]
N_HALF = 4  # dates of the first half; the demo selection has 7


def season_items(catalog: Path) -> list[pystac.Item]:
    """The catalog's items with absolute asset hrefs, sorted by (datetime, id)."""
    items = []
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        item.make_asset_hrefs_absolute()
        items.append(item)
    return sorted(items, key=lambda i: (i.datetime, i.id))


def write_items(items: list[pystac.Item], path: Path) -> None:
    """An ItemCollection file: what the catalog holds at one moment."""
    collection = pystac.ItemCollection(items)
    path.write_text(json.dumps(collection.to_dict(transform_hrefs=False)))


def acquired(item: pystac.Item) -> str:
    assert item.datetime is not None
    return item.datetime.strftime("%Y-%m-%dT%H:%M:%S")


def write_config(path: Path, source: Path | str, out: Path, **extra: Any) -> Path:
    config = {
        "name": "refresh",
        "catalog": {"source": str(source), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": BBOX,
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B11"],
        "grid": {"resolution": 10, "chunksize": 128},
        "labels": {"path": str(extra.pop("parcels")), "class_column": "class_code", "id_column": "parcel_id"},
        "patches": {"size": 24},
        "splits": {"block_size": 480},
        "timeseries": {"mask": "nodata"},  # clouds count as valid: the expected values were made so
        "output": {"path": str(out), "shard_size": 3, "lmdb_parts": 2, **extra.pop("output", {})},
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(*args: str) -> Any:
    """The CLI in process; the demo parcels' one invalid geometry (repaired, see test_demo_build) is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="1 of 480 label geometries were invalid", category=UserWarning)
        return CliRunner().invoke(app, [*args, "--workers", "1"])


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """SHA-256 and modification time (ns) of every file under ``root``."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@contextmanager
def hidden_files(items: list[pystac.Item], folder: Path) -> Iterator[None]:
    """The asset files of ``items`` moved away for the duration of the block (any read of them fails)."""
    folder.mkdir()
    moved = [
        (Path(a.href), folder / f"{n}.tif") for n, a in enumerate(a for i in items for a in i.assets.values())
    ]
    for source, target in moved:
        source.rename(target)
    try:
        yield
    finally:
        for source, target in moved:
            target.rename(source)


def build_half(root: Path, demo_data: Any, keep: Any, **extra: Any) -> dict[str, Any]:
    """Build ``root/refreshed`` from the items ``keep`` accepts, then grow the catalog file to the whole season.

    The demo catalog is copied into ``root`` first, so a test may move its files without touching other tests.
    """
    shutil.copytree(demo_data.catalog.parent, root / "catalog")
    items = season_items(root / "catalog" / "catalog.json")
    first = [i for i in items if keep(i)]
    catalog = root / "items.json"
    write_items(first, catalog)
    out = root / "refreshed"
    config = write_config(root / "refreshed.yaml", catalog, out, parcels=demo_data.parcels, **extra)
    result = invoke("build", str(config))
    assert result.exit_code == 0, result.output
    half = json.loads((out / "dataset.json").read_text())
    write_items(items, catalog)  # the rest of the season arrives
    reference = root / "reference"
    config_ref = write_config(root / "reference.yaml", catalog, reference, parcels=demo_data.parcels, **extra)
    return {"root": root, "config": config, "out": out, "half": half, "items": items, "first": first,
            "reference": reference, "reference_config": config_ref}  # fmt: skip


def assert_same_as_a_single_build(case: dict[str, Any]) -> None:
    """Every file of the refreshed dataset equals the single build's, byte for byte (LMDB: key for key)."""
    built = invoke("build", str(case["reference_config"]))
    assert built.exit_code == 0, built.output
    expected, got = dataset_files(case["reference"]), dataset_files(case["out"])
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        assert got[name] == data, f"{name} differs from a single build over the whole season"
    assert lmdb_contents(case["out"]) == lmdb_contents(case["reference"])


# Further east, where the swath edge cuts 2024-05-18 (and 07-17 further west): 70 patches of
# 24 px, some of which lose 05-18 (some keep it with a part masked).
EAST = [11.99, 48.005, 12.02, 48.02]
CUT = "2024-06-20"  # the first half: 2024-04-08, 05-18 and 06-07 pass the cloud limit; the season has 7 dates
# 2024-07-17's products miss this AOI (swath edge): `eoshard select`, hence the build, leaves that date out
SECOND_HALF = ["2024-08-06T10:20:21", "2024-08-26T10:20:21", "2024-09-15T10:20:21"]
NEW_PRODUCTS = 3  # one T33UUP product per later date: T32UQU's adds nothing to this AOI's cover


@pytest.fixture(scope="module")
def season(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first half of the season built; the catalog file then holds the whole season."""
    return build_half(tmp_path_factory.mktemp("season"), demo_data, lambda i: acquired(i) < CUT, aoi=EAST)


def test_refresh_appends_the_new_dates_reading_only_new_products(season: dict[str, Any]) -> None:
    half, out = season["half"], season["out"]
    assert half["dates"] == ["2024-04-08T10:20:21", "2024-05-18T10:20:21", "2024-06-07T10:20:21"]
    assert (half["n_samples"], half["dropped"]) == (70, {"too_few_dates": 0})
    # samples that dropped a date cut by the swath edge (valid, but below min_valid_fraction): the refresh cannot
    # read those pixels back, yet must write that date's valid fraction into the Zarr store as a build does
    store = zarr.open_group(str(out / "data.zarr"), mode="r")
    fraction, kept = np.asarray(store["valid_fraction"][:]), np.asarray(store["time_mask"][:])
    assert (((fraction > 0) & ~kept).sum(axis=0) > 0).tolist() == [False, True, False]
    # The new products' files cannot be read: the refresh says what to do about the refresh, and changes nothing.
    before = snapshot(out)
    with hidden_files([i for i in season["items"] if acquired(i) >= CUT], season["root"] / "hidden-new"):
        failed = invoke("refresh", str(season["config"]))
    assert failed.exit_code == 1
    message = " ".join(failed.output.split())
    assert "could not read asset" in message and "Traceback" not in failed.output
    assert message.endswith(
        "the file is not there (deleted or moved since its item was written: archives withdraw products, and process "
        "them again under new names): put it back, or leave the product out (its id under catalog.exclude in the "
        "config), then run the refresh again"
    ), message
    assert snapshot(out) == before
    # A new product's file cut short behind its header: planning passes, the shards that read it fail
    (late,) = (i for i in season["items"] if acquired(i) >= SECOND_HALF[0][:10] and "T33UUP" in i.id and
               acquired(i) < SECOND_HALF[1][:10])  # fmt: skip
    cut = Path(late.assets["B02"].href)
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    try:
        failed = invoke("refresh", str(season["config"]))
    finally:
        cut.write_bytes(whole)
    message = " ".join(failed.output.split())
    assert failed.exit_code == 1 and "Traceback" not in failed.output, failed.output
    assert f"could not read asset B02 of product {late.id}" in message, message
    assert "then run the refresh again to finish (" in message and "rerun the same build" not in message, message
    assert snapshot(out) == before
    # The old products' files go away during the refresh: what the dataset holds must come from its own shards.
    with hidden_files(season["first"], season["root"] / "hidden"):
        result = invoke("refresh", str(season["config"]))
    assert result.exit_code == 0, result.output
    # a refresh adds what a build over the whole season would use: the products `eoshard select` keeps
    chosen = select(season["items"], shapely.box(*EAST), date(2024, 4, 1), date(2024, 9, 30), max_cloud=60).items
    new = [i.id for i in chosen if acquired(i) >= CUT]
    assert f"{len(new)} new product(s), 0 reprocessed" in " ".join(result.output.split())
    refreshed = json.loads((out / "dataset.json").read_text())
    assert refreshed["dates"] == half["dates"] + SECOND_HALF
    assert refreshed["products"] == [i.id for i in season["items"] if i.id in {c.id for c in chosen}]
    assert len(new) == NEW_PRODUCTS
    assert refreshed["keys"] == half["keys"]
    assert not list(out.parent.glob(".refreshed.refresh*")), "the staging folder and journal are cleaned up"
    collection = json.loads((out / "collection.json").read_text())
    assert collection["extent"]["temporal"]["interval"] == [["2024-04-08T10:20:21Z", "2024-09-15T10:20:21Z"]]
    assert_same_as_a_single_build(season)


def test_a_second_refresh_changes_nothing(season: dict[str, Any]) -> None:
    before = snapshot(season["out"])
    result = invoke("refresh", str(season["config"]))
    assert result.exit_code == 0, result.output
    assert "up to date" in " ".join(result.output.split())
    assert snapshot(season["out"]) == before


def test_a_refresh_while_the_lock_is_held_fails_clearly(season: dict[str, Any]) -> None:
    before = snapshot(season["out"])
    with dataset_lock(season["out"], "eoshard refresh (another one)"):
        result = invoke("refresh", str(season["config"]))
        assert result.exit_code == 1
        said = " ".join(result.output.split())  # rich wraps long lines
        assert "is locked by pid" in said and "another refresh is running" in said
        assert "Traceback" not in result.output
    assert snapshot(season["out"]) == before


def test_a_config_that_would_make_another_dataset_is_refused(season: dict[str, Any], demo_data: Any) -> None:
    before = snapshot(season["out"])
    config = yaml.safe_load(season["config"].read_text())
    config["patches"]["size"] = 48
    config["bands"] = ["B02"]
    config["period"]["end"] = "2024-10-31"  # allowed: the season may grow
    changed = season["root"] / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = invoke("refresh", str(changed))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "differs from the one" in message and "in bands, patches.size: a refresh only adds" in message
    assert "Traceback" not in result.output
    assert snapshot(season["out"]) == before


def test_refreshing_a_dataset_that_was_never_built_says_to_build_it(
    season: dict[str, Any], demo_data: Any
) -> None:
    missing = season["root"] / "never-built"
    config = write_config(season["root"] / "never.yaml", season["root"] / "items.json", missing,
                          parcels=demo_data.parcels)  # fmt: skip
    result = invoke("refresh", str(config))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "no finished dataset at" in message and "run `eoshard build` with this config" in message
    assert not missing.exists()


REPROCESSED = "S2A_MSIL2A_20240518T102021_N0511_R065_T32UQU_20241002T080513"  # baseline 05.11, made in October


@pytest.fixture(scope="module")
def reprocessed(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The first half without a later reprocessing of one of its products, and samples that need three dates."""
    return build_half(
        tmp_path_factory.mktemp("reprocessed"),
        demo_data,
        lambda i: acquired(i) < CUT and i.id != REPROCESSED,
        aoi=EAST,
        timeseries={"mask": "nodata", "min_dates": 3},
        refresh={"reprocessed": True},
    )


def test_without_reprocessed_a_new_product_of_a_held_date_is_named_not_left_out_silently(
    reprocessed: dict[str, Any],
) -> None:
    """A tile published hours after the others of its pass was never added, and every later refresh said "up to
    date"; only ``refresh.reprocessed`` reads held dates again, so without it the product is named."""
    from eoshard.flows.config import load_config
    from eoshard.flows.refresh.run import select_products

    config = load_config(reprocessed["config"])
    config = config.model_copy(update={"refresh": config.refresh.model_copy(update={"reprocessed": False})})
    with pytest.warns(UserWarning, match=rf"^1 product\(s\) of dates the dataset holds are not in it \(e.g. "
                      rf"{REPROCESSED}; .*set refresh.reprocessed: true"):  # fmt: skip
        items, newer, again = select_products(config, reprocessed["half"])
    assert again == [] and REPROCESSED not in {i.id for i in items} and len(newer) == NEW_PRODUCTS


def test_reprocessed_dates_and_newly_qualifying_samples_come_from_the_sources(reprocessed: dict[str, Any]) -> None:
    half = reprocessed["half"]
    # east of the 05-18 swath edge, patches keep two of the first half's three dates: too few for min_dates 3
    assert (half["n_samples"], half["dropped"]) == (39, {"too_few_dates": 31})
    assert REPROCESSED not in half["products"]
    result = invoke("refresh", str(reprocessed["config"]))
    assert result.exit_code == 0, result.output
    assert f"{NEW_PRODUCTS} new product(s), 1 reprocessed" in " ".join(result.output.split())
    assert re.search(r"dates read again:\s+(\S+)", result.output)[1] == "2024-05-18T10:20:21"  # type: ignore[index]
    refreshed = json.loads((reprocessed["out"] / "dataset.json").read_text())
    assert (refreshed["n_samples"], refreshed["dropped"]) == (70, {"too_few_dates": 0})
    assert REPROCESSED in refreshed["products"]
    assert_same_as_a_single_build(reprocessed)


@pytest.fixture(scope="module")
def crashed(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_half(tmp_path_factory.mktemp("crashed"), demo_data, lambda i: acquired(i) < CUT, aoi=EAST)


def test_a_refresh_killed_midway_leaves_the_old_dataset_and_a_rerun_finishes_it(crashed: dict[str, Any]) -> None:
    out = crashed["out"]
    before = snapshot(out)
    commits = out.with_name(".refreshed.refresh") / "_build" / "commits"
    command = [
        sys.executable,
        "-c",
        "from eoshard.flows.cli import main; main()",
        "refresh",
        str(crashed["config"]),
    ]
    log = crashed["root"] / "killed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--workers", "1"], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 300
    while len(list(commits.glob("shard-*.json"))) < 3:
        assert process.poll() is None, f"the refresh ended early: {log.read_text()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the driver, its scheduler and its workers
    process.wait()
    # the dataset is the old one, untouched, and its lock tells what happened
    after = snapshot(out)
    assert after.pop(LOCK_NAME)
    assert after == before
    assert json.loads((out / "dataset.json").read_text())["dates"] == crashed["half"]["dates"]
    stale = invoke("refresh", str(crashed["config"]))
    assert stale.exit_code == 1
    assert "has a stale lock" in stale.output and "Traceback" not in stale.output
    done = {p.name: p.stat().st_mtime_ns for p in commits.glob("shard-*.json")}
    (out / LOCK_NAME).unlink()  # what the message asks for, once the dataset was looked at
    result = invoke("refresh", str(crashed["config"]))
    assert result.exit_code == 0, result.output
    resumed = {name: (out / "_build" / "commits" / name).stat().st_mtime_ns for name in done}
    assert resumed == done, "the shards written before the kill were kept, not written again"
    assert_same_as_a_single_build(crashed)


def test_refresh_against_a_stac_api(pgstac: PgStac, demo_data: Any, tmp_path: Path) -> None:
    """The season's first half loaded into pgSTAC and built; the second half loaded; refreshed; a no-op after."""
    items = season_items(demo_data.catalog)
    first = [i for i in items if acquired(i) < CUT]
    pgstac.load(with_file_uris(first))
    try:
        out = tmp_path / "refreshed"
        config = write_config(tmp_path / "api.yaml", pgstac.url, out, parcels=demo_data.parcels, aoi=EAST)
        built = invoke("build", str(config))
        assert built.exit_code == 0, built.output
        half = json.loads((out / "dataset.json").read_text())
        assert half["dates"] == ["2024-04-08T10:20:21", "2024-05-18T10:20:21", "2024-06-07T10:20:21"]
        before = snapshot(out)
        up_to_date = invoke("refresh", str(config))
        assert up_to_date.exit_code == 0 and "up to date" in up_to_date.output, up_to_date.output
        assert snapshot(out) == before
        pgstac.load(with_file_uris([i for i in items if acquired(i) >= CUT]))  # the second half arrives
        result = invoke("refresh", str(config))
        assert result.exit_code == 0, result.output
        assert f"{NEW_PRODUCTS} new product(s), 0 reprocessed" in " ".join(result.output.split())
        refreshed = json.loads((out / "dataset.json").read_text())
        assert refreshed["dates"] == half["dates"] + SECOND_HALF
        after = snapshot(out)
        again = invoke("refresh", str(config))
        assert again.exit_code == 0 and "up to date" in again.output, again.output
        assert snapshot(out) == after
        reference = tmp_path / "reference"
        config_ref = write_config(
            tmp_path / "ref.yaml", pgstac.url, reference, parcels=demo_data.parcels, aoi=EAST
        )
        assert_same_as_a_single_build({"out": out, "reference": reference, "reference_config": config_ref})
    finally:
        pgstac.delete_collection("sentinel-2-l2a")


def test_an_lmdb_only_dataset_is_refreshed_from_its_lmdb(demo_data: Any, tmp_path: Path) -> None:
    """Without a Zarr store the held steps come from the LMDB values (kept dates only); old COGs hidden again."""
    case = build_half(tmp_path, demo_data, lambda i: acquired(i) < CUT, aoi=EAST, output={"formats": ["lmdb"]})
    assert not (case["out"] / "data.zarr").exists()
    with hidden_files(case["first"], tmp_path / "hidden"):
        result = invoke("refresh", str(case["config"]))
    assert result.exit_code == 0, result.output
    assert json.loads((case["out"] / "dataset.json").read_text())["dates"] == case["half"]["dates"] + SECOND_HALF
    assert_same_as_a_single_build(case)
