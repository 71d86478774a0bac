"""``eoshard convert``: public benchmark datasets to rico-hdl-compatible LMDB (or sharded Zarr v3)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from eoshard.flows.app import app, console, say, user_errors
from eoshard.flows.commands.build import SchedulerOption, WorkersOption, time_columns
from eoshard.flows.words import counted

if TYPE_CHECKING:  # the converters (zarr, lmdb, distributed) load when a conversion runs, not with every command
    import numpy as np
    from distributed import Client

    from eoshard.pipeline.converters import SourceGroup

convert_app = typer.Typer(help="Convert a public EO benchmark dataset into LMDB (rico-hdl layout) or Zarr v3.")
app.add_typer(convert_app, name="convert")


class Format(StrEnum):
    lmdb = "lmdb"
    zarr = "zarr"


Target = Annotated[Path, typer.Option("--target", help="output folder (created; must not hold a conversion)")]
FormatOpt = Annotated[Format, typer.Option("--format", help="lmdb (rico-hdl layout) or zarr (sharded Zarr v3)")]
Scheduler = SchedulerOption  # as every command that runs on a cluster takes them (the workers: at least 1)
Workers = WorkersOption
Folder = Annotated[Path | None, typer.Option(file_okay=False)]


def run_conversion(dataset: str, roots: dict[str, Path | None], target: Path, fmt: Format, client: Client) -> int:
    """Find the patches of every given part, then read them on the cluster and write them here, in order."""
    from eoshard.pipeline.converters import DATASETS, discover, write_lmdb, write_zarr
    from eoshard.pipeline.converters.errors import ConversionError, DatasetLayoutError
    from eoshard.pipeline.converters.lmdb_writer import PUTS_PER_TRANSACTION
    from eoshard.pipeline.converters.reading import encode_batch, read_batch
    from eoshard.pipeline.converters.safety import check_target, unique_keys

    groups = DATASETS[dataset]
    given = [(groups[part], root) for part, root in roots.items() if root is not None]
    if not given:
        raise DatasetLayoutError(f"give at least one folder of {dataset}: {', '.join(f'--{p}' for p in roots)}")
    found = [(group, discover(group, root)) for group, root in given]
    unique_keys((group.key(patch), patch) for group, patches in found for patch in patches)
    check_target(target, [root for _, root in given])
    total = sum(len(patches) for _, patches in found)

    batch = max(1, -(-PUTS_PER_TRANSACTION // (4 * max(1, len(client.scheduler_info()["workers"])))))

    def run(func: Any, group: SourceGroup, chunk: Sequence[Path]) -> list[Any]:
        batches = [list(chunk[i : i + batch]) for i in range(0, len(chunk), batch)]
        futures = client.map(func, [group] * len(batches), batches, pure=False)
        results = [r for part in client.gather(futures) for r in part]
        for result in results:
            if isinstance(result, str):
                raise ConversionError(result)
        return list(results)

    def encode(group: SourceGroup, chunk: Sequence[Path]) -> Iterator[tuple[str, bytes]]:
        yield from run(encode_batch, group, chunk)

    def read(group: SourceGroup, chunk: Sequence[Path]) -> list[dict[str, np.ndarray]]:
        return run(read_batch, group, chunk)

    columns = (TextColumn("converting {task.description}"), BarColumn(), MofNCompleteColumn(), *time_columns())
    created = not target.exists()
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(dataset, total=total)
            advance = lambda n: progress.advance(task, n)  # noqa: E731
            if fmt is Format.lmdb:
                return write_lmdb(target, found, encode, advance)
            return write_zarr(target, found, read, advance)
    except BaseException:  # the target was new or empty (check_target): what it holds now is this run's, half done
        _remove_partial(target, created)
        raise


def _remove_partial(target: Path, created: bool) -> None:
    """Empty ``target`` (remove it if this run made it), so that the same command can run again."""
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir() if target.is_dir() else ():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _convert(dataset: str, roots: dict[str, Path | None], target: Path, fmt: Format, scheduler: str | None,
             workers: int | None) -> None:  # fmt: skip
    from eoshard.flows.cluster import dask_client
    from eoshard.flows.worker_checks import check_workers

    interrupted = f"what this run wrote to {target} was removed: run the same command again to convert it"
    with user_errors(interrupted=interrupted), dask_client(scheduler, workers) as client:
        check_workers(client, "run the same command again")
        n = run_conversion(dataset, roots, target, fmt, client)
        say(f"wrote {counted(n, 'sample')} of {dataset} to {target} ({fmt.value})")


@convert_app.command("bigearthnet")
def bigearthnet(target: Target, s1: Folder = None, s2: Folder = None, reference_maps: Folder = None,
                format: FormatOpt = Format.lmdb, scheduler: Scheduler = None, workers: Workers = None) -> None:  # fmt: skip
    """BigEarthNet v2: S1, S2 and reference maps into one database (keys = patch names)."""
    _convert(
        "bigearthnet", {"s1": s1, "s2": s2, "reference-maps": reference_maps}, target, format, scheduler, workers
    )


@convert_app.command("ssl4eo-s12")
def ssl4eo_s12(target: Target, s1: Folder = None, s2_l1c: Folder = None, s2_l2a: Folder = None,
               format: FormatOpt = Format.lmdb, scheduler: Scheduler = None, workers: Workers = None) -> None:  # fmt: skip
    """SSL4EO-S12: roots s1, s2c (L1C) and s2a (L2A); keys = root_location_product."""
    _convert("ssl4eo-s12", {"s1": s1, "s2c": s2_l1c, "s2a": s2_l2a}, target, format, scheduler, workers)


@convert_app.command("major-tom-core")
def major_tom_core(target: Target, s1: Folder = None, s2: Folder = None, format: FormatOpt = Format.lmdb,
                   scheduler: Scheduler = None, workers: Workers = None) -> None:  # fmt: skip
    """Major-TOM-Core S1 and S2; keys = cell_productid."""
    _convert("major-tom-core", {"s1": s1, "s2": s2}, target, format, scheduler, workers)


def _single(name: str) -> None:
    def command(input: Annotated[Path, typer.Option("--input", file_okay=False, help="dataset folder")],
                target: Target, format: FormatOpt = Format.lmdb, scheduler: Scheduler = None,
                workers: Workers = None) -> None:  # fmt: skip
        _convert(name, {name: input}, target, format, scheduler, workers)

    command.__doc__ = f"{name}: one multi-band file (or folder) per patch; keys = patch names."
    convert_app.command(name)(command)


for _name in ("eurosat-ms", "uc-merced", "hyspecnet-11k", "hydro"):
    _single(_name)
