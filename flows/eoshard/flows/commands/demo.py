"""``eoshard demo-data``: write the offline demo world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eoshard.flows.app import app, console
from eoshard.flows.commands.build import progress_bar, progress_callback


@app.command("demo-data")
def demo_data(
    directory: Annotated[Path, typer.Argument(help="folder to write the demo world into")],
    scale: Annotated[
        str | None,
        typer.Option(help="write the tile-scale benchmark world instead: tile, quarter, sixteenth or small"),
    ] = None,
) -> None:
    """Write the offline demo world: a static STAC catalog with COGs, parcels and an AOI."""
    from eoshard.flows.demo.products import write_demo_data

    if scale is not None:
        from eoshard.flows.demo.tile import SCALES, write_tile_world

        if scale not in SCALES:
            raise typer.BadParameter(f"expected one of {', '.join(SCALES)}, got {scale!r}", param_hint="--scale")
        with progress_bar() as progress:  # minutes per product at the larger scales
            side = SCALES[scale]
            update = progress_callback(
                progress, f"rendering the {scale} tile world ({side} x {side} px), products"
            )
            world = write_tile_world(directory, scale, on_progress=update)
        console.print(
            f"wrote {world.n_items} products of {world.size} x {world.size} px to {world.catalog}, "
            f"{world.n_parcels} parcels to {world.parcels}, AOI {world.aoi}\n"
            f"build it (10 bands, labels, 128 px patches) with: eoshard build {world.config}"
        )
        return

    with console.status("rendering the demo products"):
        made = write_demo_data(directory)
    console.print(
        f"wrote {made.n_items} products to {made.catalog}, parcels to {made.parcels}, AOI {made.aoi}, "
        f"HR products to {made.hr}, Sentinel-1 products to {made.s1}"
    )
