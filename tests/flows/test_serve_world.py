"""``eoshard demo-data DIR --serve``: the world over HTTP as an object store serves it, its items pointing there, a
build of it that reads them, and what was served said at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pystac
import pytest

from eoshard.flows.config import load_config

EOSHARD = [sys.executable, "-c", "from eoshard.flows.cli import main; main()"]
ENV = {**os.environ, "COLUMNS": "300"}


def _range(url: str, start: int, end: int) -> bytes:
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-{end}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 206
        return bytes(response.read())


def test_the_served_world_is_the_written_one_and_its_build_reads_it(tmp_path: Path) -> None:
    root = tmp_path / "world"
    server = subprocess.Popen(
        [*EOSHARD, "demo-data", str(root), "--scale", "small", "--serve", "--latency-ms", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        lines = []
        while not (line := server.stdout.readline()).startswith("serving"):
            assert line, f"the server stopped: {server.stderr.read() if server.stderr else ''}"
            lines.append(line)
        assert "wrote 12 products of 1098 x 1098 px" in "".join(lines)
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and line.startswith(f"serving {root} at {url} (5 ms a request)")

        # every asset of the catalog, and only those, under the server's URL at its path in the folder
        catalog = pystac.Catalog.from_file(str(root / "catalog" / "catalog.json"))
        local = {
            (item.id, key): Path(asset.get_absolute_href() or "")
            for item in catalog.get_items(recursive=True)
            for key, asset in item.assets.items()
        }
        features = json.loads((root / "http-items.json").read_text())["features"]
        remote = {(f["id"], key): asset["href"] for f in features for key, asset in f["assets"].items()}
        assert remote == {k: f"{url}/{p.relative_to(root).as_posix()}" for k, p in local.items()}

        # Range requests answer the file's bytes
        b02 = local[next(k for k in local if k[1] == "B02")]
        data = b02.read_bytes()
        href = remote[next(k for k in local if k[1] == "B02")]
        assert _range(href, 0, 16383) == data[:16384]
        assert _range(href, len(data) - 1000, len(data) - 1) == data[-1000:]

        # the world's build, over HTTP: the same build but its products and its output folder
        config, served_config = load_config(root / "build.yaml"), load_config(root / "build-http.yaml")
        assert served_config.catalog.source == str(root / "http-items.json")
        assert Path(served_config.output.path) == root / "dataset-http"
        assert served_config.name == f"{config.name}-http"
        same = ("aoi", "period", "bands", "labels", "patches", "timeseries")
        assert {k: getattr(served_config, k) for k in same} == {k: getattr(config, k) for k in same}

        # the port is taken: a second server says so, and writes nothing
        port = url.rsplit(":", 1)[1]
        (root / "http-items.json").unlink()
        second = subprocess.run(
            [*EOSHARD, "demo-data", str(root), "--serve", "--port", port],
            capture_output=True, text=True, timeout=120, env=ENV, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"could not serve on port {port} of 127.0.0.1" in second.stderr
        assert "give another --port, or 0 for a free one" in second.stderr
        assert "Traceback" not in second.stderr
        assert not (root / "http-items.json").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert out.strip().splitlines()[-1] == "served 2 requests, 17,384 bytes (0.0 MiB)"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--latency-ms", "-1"], "expected 0 or more milliseconds, got -1"),
        (["--port", "70000"], "expected a port from 0 to 65535, got 70000"),
    ],
)
def test_a_bad_serve_option_is_refused_before_anything_is_written(
    tmp_path: Path, option: list[str], message: str
) -> None:
    run = subprocess.run(
        [*EOSHARD, "demo-data", str(tmp_path / "w"), "--serve", *option],
        capture_output=True, text=True, timeout=120, env=ENV, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert message in run.stderr
    assert not (tmp_path / "w").exists()
