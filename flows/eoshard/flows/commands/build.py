"""``eoshard build``: the main job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eoshard.flows.app import RESUME_NOTE, app, console, user_errors
from eoshard.flows.config import load_config
from eoshard.flows.disk_watch import DiskWatch
from eoshard.flows.words import counted
from eoshard.flows.writable import check_writable_folder
from eoshard.pipeline.errors import readable_bytes


def progress_callback(progress: Progress, label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that drives one rich progress bar, shown from its first call (a build refused
    before its first shard shows none)."""
    task: TaskID | None = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(label, total=total)
        progress.update(task, completed=done, total=total)

    return update


def resume_note(update: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``update``, and a line first when a rerun finds shards committed by an earlier run (kept, not written
    again)."""
    said = False

    def note_then_update(done: int, total: int) -> None:
        nonlocal said
        if not said and done:
            rest = f"writing the other {total - done}" if done < total else "writing the index and manifest"
            console.print(
                f"resuming: {done} of {counted(total, 'shard')} committed by an earlier run, kept; {rest}"
            )
        said = True
        update(done, total)

    return note_then_update


def disk_watched(update: Callable[[int, int], None], output: Path) -> Callable[[int, int], None]:
    """``update``, and a warning once the shards written so far say that the output's disk will not hold the
    rest (``DiskWatch``)."""
    watch = DiskWatch(output, lambda note: console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False))

    def update_then_watch(done: int, total: int) -> None:
        update(done, total)
        watch(done, total)

    return update_then_watch


# The cluster options that every command running a build takes.
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        envvar="DASK_SCHEDULER_ADDRESS",
        help="address of an existing Dask scheduler, tcp://HOST:PORT (default: a LocalCluster)",
    ),
]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="workers of the LocalCluster (default: one per core)")
]


def time_columns() -> tuple[ProgressColumn, ...]:
    """The time so far and, after "eta", what is left at the pace of the last 30 s (rich's estimate): new columns
    for each bar (a column caches what it showed per task id, and every bar numbers its tasks from 0)."""
    return (TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


def progress_bar() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *time_columns())
    return Progress(*columns, console=console)


@app.command()
def build(
    config: Annotated[Path, typer.Argument(help="YAML build config")],
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
) -> None:
    """Build a dataset: select products, cube them lazily, rasterize labels, cut patches, write shards."""
    with user_errors(interrupted=RESUME_NOTE):
        cfg = load_config(config)  # a config error is told before the planner and Dask load
        check_writable_folder(cfg.output.path, "output.path")
        from eoshard.flows.cluster import client_started_meanwhile, dashboard_note

        # the cluster starts (and its workers import) while the driver imports the planner and plans
        with client_started_meanwhile(scheduler, workers) as started_client:
            from eoshard.flows.block_cache import block_cache_note, open_files_note
            from eoshard.flows.build import plan_build, run_build
            from eoshard.flows.masking import mask_note
            from eoshard.flows.shard_runner import worker_cache_bytes

            with console.status("searching products and planning the build"):
                plan = plan_build(cfg)
            console.print(
                f"{counted(len(plan.items), 'product')}, {counted(len(plan.dates), 'date')}, grid {plan.grid.shape.y} "
                f"x {plan.grid.shape.x} px in {plan.grid.crs}, {counted(len(plan.patches), 'patch', 'patches')} in "
                f"{counted(len(plan.shards()), 'shard')}"
            )
            console.print(mask_note(cfg.timeseries.mask, plan.config.timeseries.model_dump()))
            client = started_client()
            raised = worker_cache_bytes(plan, client.scheduler_info().get("workers", {}))  # as the build does
            cache_note = block_cache_note(
                plan.sources, plan.grid.shape[1], patch_size=cfg.patches.size, raised=raised
            )
            for note in (cache_note, open_files_note(plan.sources)):
                if note is not None:
                    console.print(note, style="yellow")
            console.print(dashboard_note(client))
            with progress_bar() as progress:
                update = disk_watched(progress_callback(progress, "writing shards"), cfg.output.path)
                result = run_build(plan, client, resume_note(update))
        if cfg.output.url is not None:  # object-store output: publish the staged dataset (storage.py)
            from eoshard.flows.storage import publish, redact_url

            with console.status(f"publishing to {redact_url(cfg.output.url)}"):
                publish(result.path, cfg.output.url)
        print_summary(result.path, result.manifest)
        note = empty_split_note(result.manifest)
        if note is not None:
            console.print(f"[yellow]warning:[/] {note}", highlight=False)


def empty_split_note(manifest: dict[str, Any]) -> str | None:
    """A warning when a split that should hold samples holds none (patches of one block share a split, so a small
    AOI, or one mostly outside the products, may put every sample in one split)."""
    splits = manifest["splits"]
    counts, fractions = splits["counts"], splits["fractions"]
    empty = [name for name, share in zip(counts, fractions, strict=True) if share > 0 and counts[name] == 0]
    if not empty or not sum(counts.values()):
        return None
    return (
        f"the {' and '.join(empty)} split{'s hold' if len(empty) > 1 else ' holds'} no sample: patches of one "
        f"{splits['block_size']:g} m block share a split, and the samples lie in too few blocks; lower "
        "splits.block_size or widen the AOI (and check that the products cover it)"
    )


def _bytes_under(folder: Path) -> int:
    """The bytes of the files under ``folder`` (a store: Zarr's shard files, LMDB's parts)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def print_summary(path: Path, manifest: dict[str, object]) -> None:
    """A table of what a dataset holds."""
    table = Table(title=escape(f"dataset {manifest['name']} at {path}"), show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # a path longer than the column is folded whole, not cut with an ellipsis
    patch = manifest["patch"]
    assert isinstance(patch, dict)
    table.add_row("patch", f"{patch['size']} px, mode {patch['mode']}")
    for key in ("n_samples", "n_candidates", "dropped", "bands", "dates", "crs", "resolution"):
        value = manifest[key]
        if isinstance(value, dict):  # the samples dropped, by reason
            shown = ", ".join(f"{reason.replace('_', ' ')} {count}" for reason, count in value.items())
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        table.add_row(key, shown)
    formats = manifest["formats"]
    assert isinstance(formats, dict)
    stores = [path / f["path"] for f in formats.values() if f]
    sized = [f"{store} ({readable_bytes(_bytes_under(store))})" for store in stores]
    table.add_row("files", escape(", ".join(sized)))
    splits = manifest["splits"]
    assert isinstance(splits, dict)
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in splits["counts"].items()))
    console.print(table)
