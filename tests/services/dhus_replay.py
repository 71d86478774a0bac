"""A recorded-response server for Copernicus DHuS: the hub cannot run here, so this replays its real answers.

It serves the vcrpy cassettes of sentinelsat's test suite (``../shared/data/dhus/sentinelsat_cassettes``) on
127.0.0.1. A request is answered when a recorded one has the same path and parameters; the OpenSearch ``q``
must match term for term, the footprint geometry compared as a geometry (a one-member GEOMETRYCOLLECTION equals
its member). Anything else gets 404 with the request in the body, so a test never passes on a made-up answer.
The recordings carry no credentials, so the server plays the hub's account check: Basic credentials other than
``VALID_ACCOUNT`` get the hub's recorded 401 answer; anonymous requests (an open mirror) and the valid account get
the recorded successes.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.conftest import shared_path

VALID_ACCOUNT = ("eoshard-test", "valid-password")
FOOTPRINT = re.compile(r'\s*footprint:"(\w+)\((.*)\)"\s*$', re.S)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes


def _geometry(wkt: str) -> Any:
    import shapely  # here, not at the top: the training package's own test venv loads this plugin without it

    geom = shapely.from_wkt(wkt)
    if isinstance(geom, shapely.GeometryCollection) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    return shapely.normalize(geom)


def _same_query(recorded: str, asked: str) -> bool:
    a, b = FOOTPRINT.search(recorded), FOOTPRINT.search(asked)
    if (a is None) != (b is None):
        return False
    if a is None or b is None:
        return recorded.split() == asked.split()
    rest_a, rest_b = recorded[: a.start()].split(), asked[: b.start()].split()
    return (
        rest_a == rest_b
        and a.group(1).lower() == b.group(1).lower()
        and _geometry(a.group(2)).equals_exact(_geometry(b.group(2)), tolerance=1e-6)
    )


def load_cassettes(folder: Path) -> list[Recorded]:
    import yaml

    recorded = []
    for path in sorted(folder.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            request, response = interaction["request"], interaction["response"]
            uri = urlsplit(request["uri"])
            body = response["body"].get("string", "")
            recorded.append(
                Recorded(
                    method=request["method"],
                    path=uri.path,
                    params=dict(parse_qsl(uri.query, keep_blank_values=True)),
                    status=int(response["status"]["code"]),
                    headers={
                        k: v[0]
                        for k, v in response["headers"].items()
                        if k.lower() in ("www-authenticate", "content-encoding")
                    },
                    body=body.encode() if isinstance(body, str) else bytes(body),
                )
            )
    return recorded


class _Handler(BaseHTTPRequestHandler):
    recorded: ClassVar[list[Recorded]] = []
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        uri = urlsplit(self.path)
        params = dict(parse_qsl(uri.query, keep_blank_values=True, encoding="latin1"))
        self.requests.append(self.path)
        refused = self._wrong_credentials()
        for rec in self.recorded:
            if (rec.status == 401) != refused:
                continue
            if rec.method != "GET" or rec.path != uri.path or set(rec.params) != set(params):
                continue
            others = all(rec.params[k] == params[k] for k in params if k != "q")
            if others and ("q" not in params or _same_query(rec.params["q"], params["q"])):
                self._answer(rec.status, rec.body, {"Content-Type": "application/json", **rec.headers})
                return
        self._answer(404, f"no recorded response for GET {self.path}".encode(), {"Content-Type": "text/plain"})

    def _wrong_credentials(self) -> bool:
        auth = self.headers.get("Authorization")
        if auth is None:
            return False
        scheme, _, encoded = auth.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return True
        return scheme.lower() != "basic" or (user, password) != VALID_ACCOUNT

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class DhusReplay:
    url: str  # the hub's API root, as sentinelsat's api_url
    requests: list[str]


@pytest.fixture(scope="session")
def dhus_replay() -> Iterator[DhusReplay]:
    folder = shared_path("dhus", "sentinelsat_cassettes")
    handler = type("Handler", (_Handler,), {"recorded": load_cassettes(folder), "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DhusReplay(url=f"http://127.0.0.1:{server.server_port}/apihub/", requests=handler.requests)
    finally:
        server.shutdown()
        server.server_close()
