"""``eoshard refresh``: bring a dataset up to date with its catalog (scheduled by cron, systemd, Kubernetes)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from eoshard.flows.app import RESUME_NOTE, app, console, say, user_errors
from eoshard.flows.commands.build import (
    SchedulerOption,
    WorkersOption,
    disk_watched,
    print_summary,
    progress_bar,
    progress_callback,
)
from eoshard.flows.config import load_config
from eoshard.flows.writable import check_writable_folder


@app.command()
def refresh(
    config: Annotated[Path, typer.Argument(help="YAML build config of the dataset")],
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
) -> None:
    """Add the acquisitions newer than the dataset's newest date; change nothing when there are none."""
    from eoshard.flows.cluster import dask_client
    from eoshard.flows.refresh.run import refresh_dataset
    from eoshard.flows.storage import publish, redact_url

    with user_errors(interrupted=RESUME_NOTE):
        cfg = load_config(config)
        check_writable_folder(cfg.output.path, "output.path")
        bar = _LazyBar(cfg.output.path)
        try:
            result = refresh_dataset(cfg, partial(dask_client, scheduler, workers), bar)
        finally:
            bar.stop()
        if result.up_to_date:
            say(f"{result.path} is up to date: no acquisitions after its newest date")
            return
        console.print(
            f"{len(result.new_products)} new product(s), {len(result.reprocessed_products)} reprocessed; "
            f"dates added: {', '.join(result.added_dates) or 'none'}; "
            f"dates read again: {', '.join(result.reread_dates) or 'none'}",
            soft_wrap=True,
        )
        if cfg.output.url is not None:
            with console.status(f"publishing to {redact_url(cfg.output.url)}"):
                publish(result.path, cfg.output.url)
        assert result.manifest is not None
        print_summary(result.path, dict(result.manifest))


class _LazyBar:
    """A progress bar that appears with the first shard (a refresh with nothing to do shows none)."""

    def __init__(self, output: Path) -> None:
        self.output = output  # the disk the shards go to, watched (a staging folder beside the dataset)
        self.progress: Progress | None = None
        self.update: Callable[[int, int], None] | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None or self.update is None:
            self.progress = progress_bar()
            self.progress.start()
            self.update = disk_watched(progress_callback(self.progress, "writing shards"), self.output)
        self.update(done, total)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
