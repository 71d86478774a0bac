"""A local stand-in for an object store: a folder served over HTTP on 127.0.0.1 with Range requests, an added
latency per request and a request/byte counter (aiohttp's static file handler serves the bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pystac
import yaml
from aiohttp import web

DEFAULT_LATENCY_S = 0.040  # a typical first-byte latency of an object store seen from its own region


@dataclass
class Traffic:
    """What the server answered: requests and body bytes (a Range request counts the bytes of its range)."""

    requests: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, size: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes += size

    def reset(self) -> None:
        with self.lock:
            self.requests = self.bytes = 0


@dataclass
class Tokens:
    """Signed URLs that expire, as Planetary Computer's: ``GET /token`` answers ``{"token": ...}``, and a file is
    served only to ``?token=`` the current token (else 403). When the files served in all reach a count of
    ``expire_at``, the current token expires, as a time limit would end it, and ``/token`` gives the next one.
    ``revoke_after``: every token is refused once that many files were served (credentials revoked)."""

    expire_at: tuple[int, ...] = ()
    revoke_after: int | None = None
    issued: int = 0  # tokens given out by /token
    expired: int = 0  # tokens that expired
    served: int = 0  # files served in all
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def current(self) -> str:
        return f"t{self.expired}"

    def issue(self) -> str:
        with self.lock:
            self.issued += 1
            return self.current

    def admit(self, token: str | None) -> bool:
        with self.lock:
            if token != self.current or (self.revoke_after is not None and self.served >= self.revoke_after):
                return False
            self.served += 1
            if self.served in self.expire_at:
                self.expired += 1
            return True


@dataclass
class Outage:
    """A server that stops answering, as one whose process hangs: once ``after`` requests were answered, every
    request waits unanswered (its connection open) until ``end()``."""

    after: int
    answered: int = 0
    held: int = 0  # requests that came while it lasted
    ended: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answers(self) -> bool:
        """Whether the next request is answered now (counting it when it is)."""
        with self.lock:
            if self.answered < self.after or self.ended.is_set():
                self.answered += 1
                return True
            return False

    def begin(self) -> None:
        """Stop answering from now on (until ``end()``)."""
        with self.lock:
            self.after = self.answered

    def end(self) -> None:
        self.ended.set()


@dataclass(frozen=True)
class Served:
    url: str  # http://127.0.0.1:PORT, serving the folder's files under /
    traffic: Traffic


def _app(
    root: Path, latency: float, traffic: Traffic, tokens: Tokens | None, outage: Outage | None = None
) -> web.Application:
    @web.middleware
    async def delay(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if latency > 0:
            await asyncio.sleep(latency)
        if outage is not None and not outage.answers():
            with outage.lock:
                outage.held += 1
            while not outage.answers():
                await asyncio.sleep(0.1)
        if tokens is not None:
            if request.path == "/token":
                return web.json_response({"token": tokens.issue()})
            if not tokens.admit(request.query.get("token")):
                return web.Response(status=403, text="the token is missing or expired")
        return await handler(request)

    async def count(request: web.Request, response: web.StreamResponse) -> None:
        if request.method == "GET":
            traffic.add(int(response.headers.get("Content-Length", 0)))
        else:
            traffic.add(0)

    app = web.Application(middlewares=[delay])
    app.router.add_static("/", str(root), follow_symlinks=False)
    app.on_response_prepare.append(count)
    return app


@contextmanager
def serve_folder(
    root: Path,
    latency: float = DEFAULT_LATENCY_S,
    tokens: Tokens | None = None,
    port: int = 0,
    outage: Outage | None = None,
) -> Iterator[Served]:
    """Serve ``root`` on ``port`` of 127.0.0.1 (0: a free one) from a background thread until the block ends (to
    holders of ``tokens`` only, when given; answering nothing during ``outage``). A port that cannot be bound
    raises ``OSError`` at once."""
    traffic = Traffic()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(Path(root), latency, traffic, tokens, outage), access_log=None)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return int(runner.addresses[0][1])

    thread = threading.Thread(target=loop.run_forever, name="eoshard-cog-server", daemon=True)
    thread.start()
    try:
        try:  # a port that cannot be bound raises here, in the caller's thread
            bound = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        except TimeoutError as err:
            raise RuntimeError("the local COG server did not start within 30 s") from err
        yield Served(f"http://127.0.0.1:{bound}", traffic)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def remote_item_collection(catalog: Path, root: Path, base_url: str, out: Path) -> Path:
    """The catalog's items as an ItemCollection file whose asset hrefs point under ``base_url`` instead of ``root``.

    ``base_url`` is e.g. the ``url`` of ``serve_folder(root)``, or ``s3://bucket/prefix`` for the same files
    uploaded to an object store.
    """
    items = []
    root = Path(root).resolve()
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        data = item.to_dict(transform_hrefs=False)
        for key, asset in item.assets.items():
            local = Path(asset.get_absolute_href() or asset.href).resolve()
            data["assets"][key]["href"] = f"{base_url.rstrip('/')}/{local.relative_to(root).as_posix()}"
        data["links"] = []
        items.append(data)
    out.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return out


def remote_build_config(config: Path, items: Path, out: Path) -> Path:
    """A copy of the world's build ``config`` that reads the products of ``items`` (say, the world served over
    HTTP) and writes its dataset beside the local build's, as ``dataset-http``; written to ``out``, beside it."""
    data = yaml.safe_load(Path(config).read_text())
    data["name"] = f"{data['name']}-http"
    data["catalog"]["source"] = os.path.relpath(items, Path(out).parent)
    data["output"]["path"] = "dataset-http"
    Path(out).write_text(
        f"# The build of {Path(config).name}, reading the products over HTTP: eoshard build {out}\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return Path(out)
