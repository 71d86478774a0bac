"""The ``eoshard`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from eoshard.catalog import CatalogError
from eoshard.flows.config import ConfigError, load_config
from eoshard.pipeline.errors import PipelineError

app = typer.Typer(
    name="eoshard",
    help="Turn Sentinel-1/2 archives into deep-learning-ready shards (Zarr v3, LMDB + safetensors).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Print eoshard's errors as one readable message and exit non-zero, without a traceback."""
    try:
        yield
    except ConfigError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (CatalogError, PipelineError) as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("demo-data")
def demo_data(directory: Annotated[Path, typer.Argument(help="folder to write the demo world into")]) -> None:
    """Write the offline demo world: a static STAC catalog with COGs, parcels and an AOI."""
    from eoshard.flows.demo.products import write_demo_data

    with console.status("rendering the demo products"):
        made = write_demo_data(directory)
    console.print(f"wrote {made.n_items} products to {made.catalog}, parcels to {made.parcels}, AOI {made.aoi}")


def _progress_bar(progress: Progress, label: str) -> Callable[[int, int], None]:
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return update


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="YAML build config")],
    scheduler: Annotated[
        str | None, typer.Option(help="address of an existing Dask scheduler (default: a LocalCluster)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="workers of the LocalCluster (default: one per core)")
    ] = None,
) -> None:
    """Build a dataset: select products, cube them lazily, rasterize labels, cut patches, write shards."""
    from eoshard.flows.build import plan_build, run_build
    from eoshard.flows.cluster import dask_client

    with _user_errors():
        cfg = load_config(config)
        with console.status("searching products and planning the build"):
            plan = plan_build(cfg)
        console.print(
            f"{len(plan.items)} products, {len(plan.dates)} dates, grid {plan.grid.shape.y} x {plan.grid.shape.x}"
            f" px in {plan.grid.crs}, {len(plan.patches)} patches in {len(plan.shards())} shards"
        )
        with dask_client(scheduler, workers) as client:
            console.print(f"dask dashboard: {client.dashboard_link}")
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as progress:
                result = run_build(plan, client, _progress_bar(progress, "writing shards"))
        _print_result(result.path, result.manifest)


def _print_result(path: Path, manifest: dict[str, object]) -> None:
    table = Table(title=f"dataset {manifest['name']} at {path}", show_header=False)
    for key in ("n_samples", "patch_size", "bands", "dates", "crs", "resolution"):
        value = manifest[key]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        table.add_row(key, shown)
    formats = manifest["formats"]
    assert isinstance(formats, dict)
    table.add_row("files", ", ".join(str(path / f["path"]) for f in formats.values() if f))
    console.print(table)


def main() -> None:
    """Entry point of the ``eoshard`` script."""
    sys.exit(app())
