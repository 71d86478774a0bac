"""Servers as object stores answer: one that stops answering fails the read, which names the asset, instead of
holding a build forever; a busy answer (503, 429) is asked again; a missing file is not."""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from eoshard.flows.demo.serve import Outage, Tokens, serve_folder
from eoshard.pipeline.direct import (
    AssetSource,
    GroupSource,
    ProductSource,
    answers,
    prefetch_group_window,
    read_group_window,
)
from eoshard.pipeline.direct.blocks import close_files, open_file, release_build
from eoshard.pipeline.direct.vsi import forget_remote_files
from eoshard.pipeline.errors import AssetReadError, read_remedy
from eoshard.pipeline.gdal_defaults import GDAL_REMOTE_DEFAULTS
from tests.services.http_answers import CUT, SERVE, answering

TRANSFORM = Affine(10, 0, 600000, 0, -10, 5000000)


def _fresh(url: str) -> str:
    """A URL of a name no earlier test served: GDAL's /vsicurl/ caches what a URL answered for the whole process,
    and a server on a port an earlier one used would be answered from that cache (a 404 read as the COG before)."""
    return f"{url}/b04-{uuid.uuid4().hex[:12]}.tif"


def _source(href: str, block: int = 256) -> GroupSource:
    """One product with asset B04 at ``href``, on a 256 px grid of TRANSFORM."""
    step = (ProductSource("p", {"B04": AssetSource(href, None)}),)
    return GroupSource(
        GeoBox((256, 256), TRANSFORM, "EPSG:32632"), ("B04",), "uint16", 0.0, "nearest", block, (step,)
    )


@contextmanager
def _silent_server() -> Iterator[str]:
    """A port on 127.0.0.1 that accepts connections, reads the requests and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.recv(65536)
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def test_a_server_that_stops_answering_fails_the_read_and_names_the_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GDAL_REMOTE_DEFAULTS["GDAL_HTTP_LOW_SPEED_TIME"] == "60"  # what a build waits by default
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    close_files()
    outcome: list[BaseException] = []
    with _silent_server() as url:
        href = f"{url}/b04.tif"
        source = _source(href, block=1024)

        def read() -> None:
            try:
                read_group_window(source, slice(0, 256), slice(0, 256))
            except BaseException as err:
                outcome.append(err)

        started = time.monotonic()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(60)
        elapsed = time.monotonic() - started
    close_files()
    assert not reader.is_alive(), "the read still waits for the silent server after 60 s"
    assert len(outcome) == 1 and isinstance(outcome[0], AssetReadError), outcome
    assert href in str(outcome[0])
    # it gave up at the low-speed limit (2 s): not at once for another reason, nor after the 60 s default
    assert 1.5 < elapsed < 30, elapsed


def _fails_then_reads(source: GroupSource, rows: slice, outage: Outage, said: str) -> np.ndarray:
    """The window read while the server does not answer (the error must match ``said``), then once it answers."""
    outage.begin()
    try:
        with pytest.raises(AssetReadError, match=said):
            read_group_window(source, rows, slice(0, 256))
    finally:
        outage.end()
    return read_group_window(source, rows, slice(0, 256))


def _cog(path: Path, seed: int = 2) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 3000, size=(1, 256, 256), dtype="uint16")
    profile = {"driver": "COG", "width": 256, "height": 256, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": TRANSFORM, "blocksize": 256, "compress": "deflate", "overviews": "NONE"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return values[0]


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_answer_is_asked_again_and_the_read_gets_the_pixels(tmp_path: Path, status: int) -> None:
    values = _cog(tmp_path / "b04.tif")
    close_files()
    with answering((tmp_path / "b04.tif").read_bytes(), [status]) as (url, asked):
        got = read_group_window(_source(_fresh(url)), slice(0, 256), slice(0, 256))
    close_files()
    assert asked[:2] == ["HEAD", "HEAD"]  # the busy answer, then the same question again
    np.testing.assert_array_equal(got[0, 0], values)


def test_a_transfer_cut_short_is_asked_for_again_through_a_new_handle(tmp_path: Path) -> None:
    """A connection dropped in the middle of a block's range (object stores do, now and then): GDAL does not ask
    again, and every shard that read the file failed, told to repair or remove the product."""
    values = _cog(tmp_path / "b04.tif")
    close_files()
    with answering((tmp_path / "b04.tif").read_bytes(), [SERVE, SERVE, CUT]) as (url, asked):
        got = read_group_window(_source(_fresh(url)), slice(0, 256), slice(0, 256))
    close_files()
    assert asked[:5] == ["HEAD", "GET", "GET", "GET", "HEAD"]  # the open, the cut read, the probe, a new open
    np.testing.assert_array_equal(got[0, 0], values)
    close_files()
    with (
        # the open (HEAD, the header's GET), the cut read, the server asked whether it answers (a GET), all again
        answering((tmp_path / "b04.tif").read_bytes(), [SERVE, SERVE, CUT, SERVE] * 2) as (url, asked),
        pytest.raises(AssetReadError) as cut,
    ):
        read_group_window(_source(_fresh(url)), slice(0, 256), slice(0, 256))
    close_files()
    message = str(cut.value)
    assert asked == ["HEAD", "GET", "GET", "GET"] * 2, asked
    assert re.search(r"got \d+ bytes, expected \d+\) \(read twice\)$", message), message
    assert read_remedy(message).startswith("the server sent fewer bytes than asked for, twice")


def test_a_file_whose_open_timed_out_is_read_once_its_server_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL remembers a file whose open timed out as missing, for the life of the process, and then says only that
    it "does not exist in the file system": after a server's short outage every later shard that read the file
    failed at once, told to repair or remove the product."""
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setattr(answers, "PROBE_TIMEOUT_S", 1)
    name = f"b04-{uuid.uuid4().hex[:12]}.tif"
    values = _cog(tmp_path / name)
    close_files()
    outage = Outage(after=10**9)
    with serve_folder(tmp_path, latency=0, outage=outage) as served:
        got = _fails_then_reads(_source(f"{served.url}/{name}"), slice(0, 256), outage, "Operation too slow")
    close_files()
    np.testing.assert_array_equal(got[0, 0], values)


def test_a_missing_file_is_not_asked_again() -> None:
    close_files()
    with answering(b"", [404]) as (url, asked), pytest.raises(AssetReadError, match="404"):
        read_group_window(_source(_fresh(url)), slice(0, 256), slice(0, 256))
    close_files()
    assert asked == ["HEAD"]


def test_a_range_refused_after_the_open_says_the_status(tmp_path: Path) -> None:
    """GDAL reports a range refused after the file was opened only as a short read ("got 0 bytes"): the reader asks
    once more and the message says 403, without the URL's signature (the token expires after the 2 requests of
    the open)."""
    _cog(tmp_path / "b04.tif")
    close_files()
    tokens = Tokens(expire_at=(2,))
    with serve_folder(tmp_path, latency=0, tokens=tokens) as served:
        href = f"{served.url}/b04.tif?token=t0"
        with pytest.raises(AssetReadError) as refused:
            read_group_window(_source(href), slice(0, 256), slice(0, 256))
    close_files()
    assert tokens.expired == 1
    message = str(refused.value)
    assert message.startswith(f"could not read {served.url}/b04.tif: RasterioIOError: ")
    # GDAL's own words: a short read (the bytes of the tile that came with the header, if any)
    assert re.search(r"got \d+ bytes, expected \d+\) \(asked again: HTTP response code: 403\)$", message), message
    assert "t0" not in message


def test_a_server_gone_after_the_open_and_refused_s3_credentials_get_their_own_advice() -> None:
    """A server killed midway gave "got 0 bytes" and the probe's refused connection was dropped, so the advice was
    to repair or remove the product; S3's refused or missing keys got the same."""
    from eoshard.pipeline.direct.answers import http_answer
    from eoshard.pipeline.errors import read_remedy
    from tests.services.dask_cluster import free_port

    gone = f"http://127.0.0.1:{free_port()}/b04.tif"
    said = "RasterioIOError: TIFFFillTile:Read error at row 0, col 0, tile 0; got 0 bytes, expected 8192"
    answer = http_answer(gone, said)
    assert answer.startswith(" (asked again: no answer: ") and "Connection refused" in answer, answer
    assert read_remedy(said + answer).startswith("the server could not be reached or did not answer")
    for s3 in (
        "The AWS Access Key Id you provided does not exist in our records. (InvalidAccessKeyId)",
        "AWS_SECRET_ACCESS_KEY and AWS_NO_SIGN_REQUEST configuration options not defined",
    ):
        assert read_remedy(s3).startswith("the server refused access: sign the items"), s3
    assert read_remedy(said).startswith("repair the file, or leave the product out")  # the server still answers


def test_a_process_that_outlives_a_build_reads_the_files_as_they_are_at_the_next(tmp_path: Path) -> None:
    """A cluster's worker (or a notebook) serves one build after another: GDAL remembered, for the whole process,
    that a file was missing (its server was down) and the ranges it had downloaded (a file replaced since). What
    a build leaves (``release_build``) includes that now."""
    name = f"b04-{uuid.uuid4().hex[:12]}.tif"
    with serve_folder(tmp_path, latency=0) as served:
        source = _source(f"{served.url}/{name}")
        with pytest.raises(AssetReadError, match="404"):
            read_group_window(source, slice(0, 256), slice(0, 256))
        release_build(None)
        first = _cog(tmp_path / name, seed=3)
        np.testing.assert_array_equal(read_group_window(source, slice(0, 256), slice(0, 256))[0, 0], first)
        release_build(None)
        second = _cog(tmp_path / name, seed=4)
        assert (tmp_path / name).stat().st_size > 0 and not np.array_equal(first, second)
        np.testing.assert_array_equal(read_group_window(source, slice(0, 256), slice(0, 256))[0, 0], second)
    close_files()


def test_a_block_whose_read_failed_is_read_again_through_a_new_handle_never_as_zeros(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GDAL loads a COG's tile offsets as reads need them: when that load fails (the server stopped answering), the
    same handle then answers the block as all nodata, with no error, even once the server is back. Builds
    committed such zeros (a server hung for minutes); a failed read now lets its handle go."""
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    monkeypatch.setattr(answers, "PROBE_TIMEOUT_S", 1)
    values = np.random.default_rng(5).integers(1, 3000, size=(1, 540, 540), dtype="uint16")
    # overviews, as the products have: without them the handle went on raising instead
    profile = {"driver": "COG", "width": 540, "height": 540, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": TRANSFORM, "blocksize": 256, "compress": "deflate", "overviews": "AUTO", "nodata": 0}  # fmt: skip
    name = f"b04-{uuid.uuid4().hex[:12]}.tif"
    with rasterio.open(tmp_path / name, "w", **profile) as dst:
        dst.write(values)
    close_files()
    outage = Outage(after=10**9)
    with serve_folder(tmp_path, latency=0, outage=outage) as served:
        step = (ProductSource("p", {"B04": AssetSource(f"{served.url}/{name}", None)}),)
        source = GroupSource(GeoBox((540, 540), TRANSFORM, "EPSG:32632"), ("B04",), "uint16", 0.0, "nearest", 256,
                             (step,))  # fmt: skip
        open_file(f"{served.url}/{name}")  # open (its header read), no block read yet
        forget_remote_files()  # as when GDAL's cache of downloaded ranges (16 MB) let the file's header go
        bottom = _fails_then_reads(source, slice(256, 512), outage, "no answer")
    close_files()
    np.testing.assert_array_equal(bottom[0, 0], values[0, 256:512, :256])  # not 65,536 zeros


def test_a_read_waiting_for_a_read_ahead_that_got_no_answer_does_not_wait_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read ahead opens a file of a hung server and waits out the timeout; the shard's own read of that file waited
    for it, then asked the server itself and waited as long again (a build on a hung server took 10 minutes to stop,
    not 4). It now fails with the read ahead's error, having asked nothing."""
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "2")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    name = f"b04-{uuid.uuid4().hex[:12]}.tif"
    _cog(tmp_path / name)
    close_files()
    outage = Outage(after=0)
    with serve_folder(tmp_path, latency=0, outage=outage) as served:
        source = _source(f"{served.url}/{name}")
        try:
            prefetch_group_window(source, slice(0, 256), slice(0, 256))
            while outage.held < 1:  # the read ahead's open waits for the server
                time.sleep(0.01)
            with pytest.raises(AssetReadError, match="Operation too slow") as failed:
                read_group_window(source, slice(0, 256), slice(0, 256))
        finally:
            outage.end()
    close_files()
    assert outage.held == 1, str(failed.value)  # the read ahead's request alone
