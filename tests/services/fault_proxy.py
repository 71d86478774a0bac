"""A loopback HTTP proxy that injects faults in front of a real server: scripted 429/5xx answers and stalls.

``FaultProxy.script`` is consumed one entry per request: ``(status, headers)`` answers that status without asking
the upstream, ``("stall", seconds)`` waits that long before forwarding (a client with a shorter timeout gives up),
and an exhausted script forwards everything. Every request is logged with its arrival time.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Fault = tuple[int, dict[str, str]] | tuple[str, float]


@dataclass
class FaultProxy:
    url: str
    upstream: str
    script: list[Fault] = field(default_factory=list)
    log: list[tuple[float, str, str, dict[str, str]]] = field(
        default_factory=list
    )  # (time, method, path, headers)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault | None:
        with self.lock:
            return self.script.pop(0) if self.script else None

    def reset(self, script: list[Fault] | None = None) -> None:
        with self.lock:
            self.script = list(script or [])
            self.log.clear()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            proxy.log.append((time.monotonic(), self.command, self.path, dict(self.headers)))
            fault = proxy.next_fault()
            if fault is not None and fault[0] == "stall":
                time.sleep(float(fault[1]))
            elif fault is not None:
                status, headers = fault
                assert isinstance(status, int) and isinstance(headers, dict)
                self._answer(status, b'{"code": "injected", "description": "fault injected by the test"}', headers)
                return
            request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command)
            for key in ("Content-Type", "Accept", "Host", "Authorization"):
                if self.headers.get(key):
                    request.add_header(key, self.headers[key])
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    self._answer(resp.status, resp.read(), {"Content-Type": resp.headers.get("Content-Type", "")})
            except urllib.error.HTTPError as err:
                self._answer(err.code, err.read(), {"Content-Type": err.headers.get("Content-Type", "")})
            except urllib.error.URLError as err:
                self._answer(502, f"upstream {proxy.upstream} failed: {err.reason}".encode(), {})

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a stall past its timeout)

        do_GET = _serve  # noqa: N815 (http.server's names)
        do_POST = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fault_proxy(pgstac: Any) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's STAC API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy := FaultProxy(url="", upstream=pgstac.url)))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
