"""A server that stops answering fails the read, which names the asset, instead of holding a build forever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
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
