"""``eoshard jobs``: list the jobs on a scheduler, show a job's log, cancel a job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from eoshard.flows.app import app, console, user_errors
from eoshard.flows.errors import FlowsError

if TYPE_CHECKING:
    from eoshard.flows.jobs.registry import JobInfo

jobs_app = typer.Typer(help="Jobs on a Dask scheduler: list (default), logs ID, cancel ID.", no_args_is_help=False)
app.add_typer(jobs_app, name="jobs")


# given before or after the subcommand (``jobs --scheduler A logs ID`` or ``jobs logs ID --scheduler A``)
Scheduler = Annotated[
    str | None,
    typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="address of the Dask scheduler, tcp://HOST:PORT"),
]


JOB_COLUMNS = ("job", "state", "progress", "submitted", "output", "error")


def _address(ctx: typer.Context, scheduler: str | None) -> str:
    address: str | None = scheduler or ctx.obj  # the option after the subcommand, else the one before it
    if not address:
        raise FlowsError(
            "no scheduler given: add --scheduler tcp://HOST:PORT (the address the scheduler printed) or set "
            "DASK_SCHEDULER_ADDRESS"
        )
    return address


def _row(job: JobInfo) -> tuple[str, ...]:
    """A job's values in ``JOB_COLUMNS`` order (a failed job's error on one line; ``jobs logs`` has the rest)."""
    progress = f"{job.done}/{job.total} shards" if job.total else "-"
    error = " ".join(job.error.split()) if job.error else "-"
    return job.id, job.state, progress, job.submitted, job.output, error


@jobs_app.callback(invoke_without_command=True)
def jobs(ctx: typer.Context, scheduler: Scheduler = None) -> None:
    """List the jobs on the scheduler with their state and progress."""
    ctx.obj = scheduler
    if ctx.invoked_subcommand is not None:
        return
    from eoshard.flows.jobs import connect, list_jobs

    with user_errors():
        address = _address(ctx, scheduler)
        with connect(address) as client:
            rows = [_row(job) for job in list_jobs(client)]
    if not console.is_terminal:  # piped: whole values, one tab-separated line per job (a table cuts them to fit)
        for row in [JOB_COLUMNS, *rows]:
            typer.echo("\t".join(row))  # not through rich, which turns tabs into spaces
        return
    # a value longer than its column (an output path, an error) is folded whole, not cut with an ellipsis
    table = Table(*(Column(name, overflow="fold") for name in JOB_COLUMNS), title=f"jobs on {address}")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@jobs_app.command()
def logs(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="job id printed by submit")],
    scheduler: Scheduler = None,
) -> None:
    """Print the driver's log of a job."""
    from eoshard.flows.jobs import connect, job_logs

    with user_errors(), connect(_address(ctx, scheduler)) as client:
        for when, message in job_logs(client, job_id):
            stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
            console.print(f"{stamp} {message}", highlight=False, markup=False, soft_wrap=True)


@jobs_app.command()
def cancel(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="job id printed by submit")],
    scheduler: Scheduler = None,
) -> None:
    """Stop a job cleanly: its driver cancels the remaining shards and closes its writers."""
    from eoshard.flows.jobs import cancel_job, connect

    with user_errors(), connect(_address(ctx, scheduler)) as client:
        job = cancel_job(client, job_id)
        console.print(f"job {job_id}: {job.state}")
