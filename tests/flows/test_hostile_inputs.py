"""The bad inputs of the hostile trial (issue #15), each through the real entry point or the unit that meets it:
one message that says what was expected, what came and what to do; non-zero exit; no traceback."""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import pytest
from distributed import Client, LocalCluster
from odc.geo.geobox import GeoBox

from eoshard.flows.cluster import dashboard_note
from eoshard.pipeline.cube import BandError, asset_resolution
from eoshard.pipeline.indices import ExpressionError, compute_index
from eoshard.pipeline.shards.commits import CommitLog, PlanMismatchError
from tests.flows.test_cli_errors import _assert_clean_failure, _run
from tests.flows.test_cli_errors import config_for as config_for  # the fixture
from tests.services.dask_cluster import free_port
from tests.services.http_answers import answering


def test_a_zero_byte_labels_file(config_for, tmp_path: Path) -> None:
    labels = tmp_path / "labels.gpkg"
    labels.write_bytes(b"")
    path = config_for(labels={"path": str(labels), "class_column": "class_code"})
    _assert_clean_failure(_run("build", str(path)), 2, "labels:", "cannot be read as vector data", "GeoPackage")


def test_a_labels_file_without_features(config_for, demo_data, tmp_path: Path) -> None:
    empty = tmp_path / "empty.gpkg"
    parcels = gpd.read_file(demo_data.parcels)
    parcels.iloc[:0].to_file(empty, layer="parcels", driver="GPKG")
    path = config_for(labels={"path": str(empty), "class_column": "class_code"})
    _assert_clean_failure(_run("build", str(path)), 2, "holds no features", "'class_code'", "remove `labels:`")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_a_labels_file_with_unclosed_rings_names_those_features(config_for, demo_data, tmp_path: Path) -> None:
    """GDAL accepts a GeoJSON ring whose last point is not its first (with a warning), and GEOS then refused to
    build it: a traceback of shapely's ``from_wkb`` (found by the fuzz test of label files)."""
    parcels = json.loads(gpd.read_file(demo_data.parcels).iloc[:8].to_crs(4326).to_json(drop_id=True))
    for row in (2, 6):
        ring = parcels["features"][row]["geometry"]["coordinates"][0][0]
        del ring[-1]  # the closing point
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps(parcels))
    path = config_for(labels={"path": str(labels), "class_column": "class_code"})
    _assert_clean_failure(
        _run("build", str(path)), 2, f"labels: {labels} holds 2 features whose geometry cannot be made into a shape",
        "feature 2: Points of LinearRing do not form a closed linestring; feature 6: Points",
        "the last point repeats the first", "repair those features or remove them",
    )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_a_labels_file_whose_ids_hold_a_list_names_the_column(config_for, demo_data, tmp_path: Path) -> None:
    """A GeoJSON property may hold a list (GDAL then reads the whole column as lists): sorting the parcels by such
    a column was pandas' TypeError (found by the fuzz test of label files). The list of two goes first."""
    valid = gpd.read_file(demo_data.parcels).pipe(lambda frame: frame[frame.is_valid])  # no repair warning first
    parcels = json.loads(valid.to_crs(4326).to_json(drop_id=True))
    parcels["features"][3]["properties"]["parcel_id"] = [4, 5]
    labels = tmp_path / "labels.geojson"
    labels.write_text(json.dumps(parcels))
    path = config_for(labels={"path": str(labels), "class_column": "class_code", "id_column": "parcel_id"})
    _assert_clean_failure(
        _run("build", str(path)), 1, "the parcel id column 'parcel_id' holds lists or objects, not single numbers "
        "(e.g. ['[4, 5]', '[100001]', '[100002]'])", "name an integer column as labels.id_column",
    )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_an_unknown_band(config_for) -> None:
    path = config_for(bands=["B02", "B99"])
    _assert_clean_failure(
        _run("build", str(path)), 1, "has no asset 'B99'", "'B02'", "check the names in `bands:`"
    )


def test_an_unknown_band_of_an_item_names_product_and_assets() -> None:
    item = {"id": "P1", "assets": {"B02": {"gsd": 10}, "B03": {}}}
    with pytest.raises(BandError, match=r"product P1 has no asset 'SWIR'; it has \['B02', 'B03'\]"):
        asset_resolution(item, "SWIR")


@pytest.mark.parametrize("expression", ["1 + 2", "(3) / 4", "-1"])
def test_band_math_without_a_band(expression: str) -> None:
    grid = GeoBox.from_bbox((0, 0, 100, 100), "EPSG:32633", resolution=10)
    with pytest.raises(ExpressionError, match="reads no band: an index is computed from bands"):
        compute_index({}, grid, expression)


def test_a_half_written_manifest_in_verify(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text('{"format_version": "1.0", "checksums": {"data.za')
    _assert_clean_failure(
        _run("verify", str(tmp_path)), 1, "dataset.json is not valid JSON", "rebuild the dataset"
    )


def test_a_manifest_of_another_kind_in_verify(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("[1, 2]")
    _assert_clean_failure(
        _run("verify", str(tmp_path)), 1, "expected a JSON object, got list", "rebuild the dataset"
    )


def test_a_changed_config_over_a_finished_dataset_says_finished(tmp_path: Path) -> None:
    log = CommitLog(tmp_path)
    log.record_plan({"config": {"bands": ["B02"]}, "dates": ["2024-05-01"]})
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "done"}))
    with pytest.raises(
        PlanMismatchError, match=r"holds a finished dataset .* \(differs in config.bands\).* `eoshard refresh`"
    ):
        log.start({"config": {"bands": ["B03"]}, "dates": ["2024-05-01"]})
    (tmp_path / "dataset.json").unlink()
    log.commit(0, {"shard": 0})
    with pytest.raises(PlanMismatchError, match="holds an unfinished build of a different plan"):
        log.start({"config": {"bands": ["B03"]}, "dates": ["2024-05-01"]})


def test_a_dataset_whose_bookkeeping_is_gone_is_never_built_over(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "copied"}))  # e.g. copied without _build/
    with pytest.raises(PlanMismatchError) as refused:
        CommitLog(tmp_path).start({"config": {"bands": ["B03"]}})
    assert str(refused.value) == (
        f"{tmp_path} holds a dataset (dataset.json) that no build records there (_build/plan.json is missing, e.g. "
        "a copy of a dataset without its bookkeeping): build into a new output path, or delete the folder to build "
        "it again"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["dataset.json"]


def test_an_unfinished_build_that_committed_no_shard_is_removed_for_a_new_plan(tmp_path: Path, caplog) -> None:
    log = CommitLog(tmp_path)
    log.record_plan({"config": {"bands": ["B02"]}, "dates": ["2024-05-01"]})
    for folder in ("data.lmdb/part-00", "data.zarr/s2_10m", "_build/values"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "data.lmdb/part-00/data.mdb").write_bytes(b"values of the old plan, no record")
    (tmp_path / "notes.txt").write_text("the user's")
    with caplog.at_level("WARNING"):
        assert log.start({"config": {"bands": ["B03"]}, "dates": ["2024-05-01"]}) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert log.recorded_plan() == {}
    assert caplog.messages == [
        f"{tmp_path} held an unfinished build of another plan (it differed in config.bands) that had committed no "
        "shard: starting over with this one"
    ]


def test_the_dashboard_is_named_only_where_one_is_served(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "dask",
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-dashboard",
    ]
    with (tmp_path / "scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client(f"tcp://127.0.0.1:{port}", timeout="2s", set_as_default=False)
                break
            except OSError:
                assert time.monotonic() < deadline and scheduler.poll() is None
                time.sleep(0.3)
        with client:
            assert client.dashboard_link.startswith("http")  # dask's template names a URL all the same
            assert dashboard_note(client).startswith("dask dashboard: none")
    finally:
        scheduler.terminate()
        scheduler.wait(timeout=20)
    with (
        LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        note = dashboard_note(client)
        assert note.startswith("dask dashboard: http://") and note.endswith("/status")


def test_a_server_that_refuses_access_says_sign_the_items(config_for, demo_data, tmp_path: Path) -> None:
    """Every asset answered 403, as an expired or missing signature gets from Planetary Computer's storage."""
    from eoshard.flows.demo.serve import remote_item_collection

    with answering(b"", itertools.repeat(403)) as (url, _):
        items = remote_item_collection(demo_data.catalog, demo_data.root, url, tmp_path / "items.json")
        path = config_for(catalog={"source": str(items), "max_cloud": 60})
        result = _run("build", str(path))
    _assert_clean_failure(
        result, 1, "could not read asset B02 of product", f"({url}/", "HTTP response code: 403",
        "the server refused access: sign the items (catalog.modifier", "then run the build again",
    )  # fmt: skip
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_a_server_that_does_not_answer_says_check_it_not_remove_the_product(
    config_for, demo_data, tmp_path: Path
) -> None:
    """Items whose store is down (nothing listens on their port): GDAL's own words, and a remedy about the server,
    not the file (repairing or removing the product would lose it for nothing)."""
    from eoshard.flows.demo.serve import remote_item_collection

    url = f"http://127.0.0.1:{free_port()}"
    items = remote_item_collection(demo_data.catalog, demo_data.root, url, tmp_path / "items.json")
    path = config_for(catalog={"source": str(items), "max_cloud": 60})
    result = _run("build", str(path))
    _assert_clean_failure(
        result, 1, "could not read asset B02 of product", f"({url}/", "CURL error: Failed to connect to 127.0.0.1",
        "the server could not be reached or did not answer, which says nothing about the file: check the URL, "
        "that the server runs and that this machine reaches it (network, proxy, firewall), then run the build again",
    )  # fmt: skip
    assert "repair or remove" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_a_server_without_byte_ranges_says_serve_the_files_otherwise_not_remove_the_product(
    config_for, demo_data, tmp_path: Path
) -> None:
    """Items served by Python's own ``http.server``, which answers every request with the whole file: GDAL's words,
    and a remedy about the server (the files are fine), before any shard is written."""
    from eoshard.flows.demo.serve import remote_item_collection

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(demo_data.root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        items = remote_item_collection(demo_data.catalog, demo_data.root, url, tmp_path / "items.json")
        path = config_for(catalog={"source": str(items), "max_cloud": 60})
        result = _run("build", str(path))
        server.shutdown()
    _assert_clean_failure(
        result, 1, "could not read asset B02 of product", f"({url}/", "Range downloading not supported by this server",
        "the server sends whole files where a reader asks for byte ranges (HTTP Range requests), and COGs are read by "
        "ranges; the file may be fine: serve the files with a server that answers ranges (nginx, Apache, an object "
        "store; Python's `http.server` does not) or point the items at local copies, then run the build again",
    )  # fmt: skip
    assert "repair or remove" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_a_read_refused_mid_build_names_the_asset_and_says_sign_and_rerun(demo_data) -> None:
    """A signature that expires while the build runs: the shard's error names product and asset, and says what to do
    (the committed shards stay valid; a rerun searches and signs again)."""
    from types import SimpleNamespace

    import pystac

    from eoshard.flows.shard_runner import _asset_error
    from eoshard.pipeline.items import stackstac_ready

    item = next(iter(pystac.Catalog.from_file(str(demo_data.catalog)).get_items(recursive=True)))
    ready = stackstac_ready(item)
    href = str(ready["assets"]["B04"]["href"])
    refused = OSError(f"could not read {href}: RasterioIOError: HTTP response code: 403")
    message = str(_asset_error(SimpleNamespace(items=[ready]), 7, refused))  # type: ignore[arg-type]
    assert message.startswith(f"could not read asset B04 of product {item.id} ({href}) while making shard 7: ")
    assert message.endswith("the server refused access: sign the items (catalog.modifier, e.g. "
                            "planetary_computer:sign_inplace; signed URLs expire, and a rerun signs them again) or "
                            "give the credentials the store needs (AWS_* for s3://), then rerun the same build to "
                            "finish")  # fmt: skip
    failing = OSError(f"could not read {href}: RasterioIOError: HTTP response code: 502")
    assert str(_asset_error(SimpleNamespace(items=[ready]), 7, failing)).endswith(  # type: ignore[arg-type]
        "stay valid: the server failed (HTTP 502: busy, overloaded or broken), also when GDAL asked again, which "
        "says nothing about the file: wait until it serves again, or let GDAL ask more often and wait longer "
        "(GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY), then rerun the same build to finish"
    )
    corrupt = OSError(f"could not read {href}: RasterioIOError: TIFFReadEncodedTile() failed")
    assert str(_asset_error(SimpleNamespace(items=[ready]), 7, corrupt)).endswith(  # type: ignore[arg-type]
        "stay valid: repair the file, or leave the product out (its id under catalog.exclude in the config), then "
        "rerun the same build to finish"
    )
    for gone in (  # a local file, an HTTP 404, an object store's missing key (asked for twice)
        f"{href}: No such file or directory",
        "HTTP response code: 404",
        "'/vsis3/bucket/b04.tif' does not exist in the file system, and is not recognized as a supported dataset "
        "name. (read twice)",
    ):
        error = OSError(f"could not read {href}: {gone}")
        said = str(_asset_error(SimpleNamespace(items=[ready]), 7, error))  # type: ignore[arg-type]
        assert said.endswith(
            "stay valid: the file is not there (deleted or moved since its item was written: archives withdraw "
            "products, and process them again under new names): put it back, or leave the product out (its id "
            "under catalog.exclude in the config), then rerun the same build to finish"
        ), said
