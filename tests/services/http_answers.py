"""An HTTP server on 127.0.0.1 that answers as told: each request takes the next status of a script (a busy 503, a
refusing 403, a missing 404, ``CUT``: the range's headers and half its bytes, then the connection closed; ``SERVE``:
the bytes); once the script is spent, it serves one file's bytes with Range requests."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

CUT = 0  # in a script: answer a GET's range with half its bytes, then close the connection (a dropped transfer)
SERVE = 200  # in a script: answer with the file's bytes, as after the script


@contextmanager
def answering(data: bytes, statuses: Iterable[int]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``data`` at any path after answering ``statuses`` (empty bodies) to the first requests; yields the
    server's URL and the methods it was asked, in order."""
    script = iter(statuses)
    ahead: list[int | None] = []  # the next status, looked at (a cut waits for a GET)
    lock = threading.Lock()
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
            with lock:
                if not ahead:
                    ahead.append(next(script, None))
                status = ahead[0]
                if status == CUT and not body:  # a cut waits for a transfer: a GET
                    status = None
                else:
                    ahead.pop()
            if status is not None and status not in (CUT, SERVE):
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
            if status == CUT:
                self.wfile.write(data[start : start + (end - start + 1) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if body:
                self.wfile.write(data[start : end + 1])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()
