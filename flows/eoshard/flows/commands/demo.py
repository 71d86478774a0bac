"""``eoshard demo-data``: write the offline demo world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eoshard.flows.app import app, console


@app.command("demo-data")
def demo_data(directory: Annotated[Path, typer.Argument(help="folder to write the demo world into")]) -> None:
    """Write the offline demo world: a static STAC catalog with COGs, parcels and an AOI."""
    from eoshard.flows.demo.products import write_demo_data

    with console.status("rendering the demo products"):
        made = write_demo_data(directory)
    console.print(
        f"wrote {made.n_items} products to {made.catalog}, parcels to {made.parcels}, AOI {made.aoi}, "
        f"HR products to {made.hr}, Sentinel-1 products to {made.s1}"
    )
