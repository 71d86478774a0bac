"""``eoshard demo-data``: write the offline demo world, and serve it over HTTP as an object store would."""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from eoshard.flows.app import app, console, say, user_errors
from eoshard.flows.commands.build import progress_bar, progress_callback
from eoshard.flows.errors import FlowsError


@app.command("demo-data")
def demo_data(
    directory: Annotated[Path, typer.Argument(help="folder to write the demo world into")],
    scale: Annotated[
        str | None,
        typer.Option(help="write the tile-scale benchmark world instead: tile, quarter, sixteenth or small"),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="then serve the folder's world over HTTP on 127.0.0.1 (Range requests, a latency per request, as "
            "an object store answers) until Ctrl-C, with its items' hrefs as http:// URLs; a world already there "
            "is served as it is",
        ),
    ] = False,
    latency_ms: Annotated[
        float, typer.Option(help="with --serve: the latency added to each request, in ms")
    ] = 40.0,
    port: Annotated[int, typer.Option(help="with --serve: the port of 127.0.0.1 to serve on (0: a free one)")] = 0,
) -> None:
    """Write the offline demo world: a static STAC catalog with COGs, parcels and an AOI."""
    if scale is not None:
        from eoshard.flows.demo.tile import SCALES

        if scale not in SCALES:
            raise typer.BadParameter(f"expected one of {', '.join(SCALES)}, got {scale!r}", param_hint="--scale")
    if latency_ms < 0:
        raise typer.BadParameter(f"expected 0 or more milliseconds, got {latency_ms:g}", param_hint="--latency-ms")
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"expected a port from 0 to 65535, got {port}", param_hint="--port")
    if not (serve and (directory / "catalog" / "catalog.json").is_file()):
        _write_world(directory, scale)
    if serve:
        with user_errors():
            _serve_world(directory, latency_ms / 1000, port)


def _write_world(directory: Path, scale: str | None) -> None:
    from eoshard.flows.demo.products import write_demo_data

    if scale is not None:
        from eoshard.flows.demo.tile import SCALES, write_tile_world

        with progress_bar() as progress:  # minutes per product at the larger scales
            side = SCALES[scale]
            update = progress_callback(
                progress, f"rendering the {scale} tile world ({side} x {side} px), products"
            )
            world = write_tile_world(directory, scale, on_progress=update)
        say(
            f"wrote {world.n_items} products of {world.size} x {world.size} px to {world.catalog}, "
            f"{world.n_parcels} parcels to {world.parcels}, AOI {world.aoi}\n"
            f"build it (10 bands, labels, 128 px patches) with: eoshard build {world.config}"
        )
        return

    with console.status("rendering the demo products"):
        made = write_demo_data(directory)
    say(
        f"wrote {made.n_items} products to {made.catalog}, parcels to {made.parcels}, AOI {made.aoi}, "
        f"HR products to {made.hr}, Sentinel-1 products to {made.s1}"
    )


def _serve_world(root: Path, latency: float, port: int) -> None:
    """Serve ``root`` until Ctrl-C (or SIGTERM), then say what was served."""
    from eoshard.flows.demo.serve import remote_build_config, remote_item_collection, serve_folder

    root = root.resolve()
    server = ExitStack()
    try:
        served = server.enter_context(serve_folder(root, latency=latency, port=port))
    except OSError as err:
        raise FlowsError(
            f"could not serve on port {port} of 127.0.0.1: {err.strerror or err}; give another --port, or 0 for a "
            "free one"
        ) from None
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        try:
            items = remote_item_collection(
                root / "catalog" / "catalog.json", root, served.url, root / "http-items.json"
            )
            lines = [
                f"serving {root} at {served.url} ({latency * 1000:g} ms a request); Ctrl-C stops it",
                f"the world's items, with their hrefs on this server: {items}",
            ]
            if (root / "build.yaml").is_file():
                config = remote_build_config(root / "build.yaml", items, root / "build-http.yaml")
                lines.append(f"build it over HTTP (from another terminal) with: eoshard build {config}")
            console.print(escape("\n".join(lines)), highlight=False, soft_wrap=True)
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    traffic = served.traffic
    plural = "" if traffic.requests == 1 else "s"
    console.print(
        f"served {traffic.requests} request{plural}, {traffic.bytes:,} bytes ({traffic.bytes / 2**20:.1f} MiB)",
        highlight=False,
    )
