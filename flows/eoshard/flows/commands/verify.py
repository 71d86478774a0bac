"""``eoshard verify``: checksums, Zarr against LMDB, and shard pixels against the source products."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from eoshard.flows.app import app, errors, say, user_errors


@app.command()
def verify(
    dataset: Annotated[Path, typer.Argument(help="dataset folder (holds dataset.json)")],
    sources: Annotated[
        int, typer.Option(min=0, help="samples whose pixels are re-read from the source products")
    ] = 4,
    seed: Annotated[int, typer.Option(min=0, help="seed of the choice of those samples")] = 0,
) -> None:
    """Check a dataset bit for bit; exits 1 on any difference."""
    from eoshard.flows.commands.build import progress_bar, progress_callback
    from eoshard.flows.verify import verified_parts, verify_dataset

    with user_errors():
        with progress_bar() as progress:  # minutes at a whole tile
            update = progress_callback(progress, "verifying files, samples and source samples")
            problems = verify_dataset(dataset, n_source=sources, seed=seed, on_progress=update)
        if problems:
            for problem in problems[:50]:
                errors.print(f"[bold red]difference:[/] {escape(problem)}", highlight=False, soft_wrap=True)
            errors.print(
                f"[bold red]error:[/] {len(problems)} difference(s) in {escape(str(dataset))}", highlight=False
            )
            raise typer.Exit(1)
        manifest = json.loads((dataset / "dataset.json").read_text())  # read and checked by verify_dataset
        say(f"{dataset}: {verified_parts(manifest, sources)} verified, no difference")
