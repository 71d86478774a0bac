"""Servers as object stores answer: one that stops answering fails the read, which names the asset, instead of
holding a build forever; a busy answer (503, 429) is asked again; a missing file is not."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from eoshard.pipeline.direct import AssetSource, GroupSource, ProductSource, read_group_window
from eoshard.pipeline.direct.blocks import GDAL_REMOTE_DEFAULTS, close_files
from eoshard.pipeline.errors import AssetReadError

TRANSFORM = Affine(10, 0, 600000, 0, -10, 5000000)


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
        grid = GeoBox((256, 256), TRANSFORM, "EPSG:32632")
        step = (ProductSource("p", {"B04": AssetSource(href, None)}),)
        source = GroupSource(grid, ("B04",), "uint16", 0.0, "nearest", 1024, (step,))

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
    assert 1.5 < elapsed < 30, elapsed


@contextmanager
def _busy_once(data: bytes, status: int) -> Iterator[tuple[str, list[str]]]:
    """Serves ``data`` with Range requests, answering ``status`` to the first request; yields its URL and the
    methods it was asked."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            asked.append(self.command)
            if len(asked) == 1:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = 0, len(data) - 1
            if self.headers.get("Range"):
                first, last = self.headers["Range"].removeprefix("bytes=").split("-")
                start, end = int(first), min(int(last), len(data) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if body:
                self.wfile.write(data[start : end + 1])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/b04.tif", asked
    finally:
        server.shutdown()
        server.server_close()


def _cog(path: Path) -> np.ndarray:
    values = np.random.default_rng(2).integers(0, 3000, size=(1, 256, 256), dtype="uint16")
    profile = {"driver": "COG", "width": 256, "height": 256, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": TRANSFORM, "blocksize": 256, "compress": "deflate", "overviews": "NONE"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values)
    return values[0]


@pytest.mark.parametrize("status", [503, 429])
def test_a_busy_answer_is_asked_again_and_the_read_gets_the_pixels(tmp_path: Path, status: int) -> None:
    values = _cog(tmp_path / "b04.tif")
    close_files()
    with _busy_once((tmp_path / "b04.tif").read_bytes(), status) as (href, asked):
        step = (ProductSource("p", {"B04": AssetSource(href, None)}),)
        source = GroupSource(GeoBox((256, 256), TRANSFORM, "EPSG:32632"), ("B04",), "uint16", 0.0, "nearest", 256,
                             (step,))  # fmt: skip
        got = read_group_window(source, slice(0, 256), slice(0, 256))
    close_files()
    assert asked[:2] == ["HEAD", "HEAD"]  # the busy answer, then the same question again
    np.testing.assert_array_equal(got[0, 0], values)


def test_a_missing_file_is_not_asked_again(tmp_path: Path) -> None:
    _cog(tmp_path / "b04.tif")
    close_files()
    with _busy_once(b"", 404) as (href, asked):
        step = (ProductSource("p", {"B04": AssetSource(href, None)}),)
        source = GroupSource(GeoBox((256, 256), TRANSFORM, "EPSG:32632"), ("B04",), "uint16", 0.0, "nearest", 256,
                             (step,))  # fmt: skip
        with pytest.raises(AssetReadError, match="404"):
            read_group_window(source, slice(0, 256), slice(0, 256))
    close_files()
    assert asked == ["HEAD"]
