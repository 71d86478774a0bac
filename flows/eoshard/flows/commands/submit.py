"""``eoshard submit``: send a whole build to an existing Dask cluster as a job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eoshard.flows.app import app, console, say, user_errors
from eoshard.flows.config import load_config

Scheduler = Annotated[
    str, typer.Option(envvar="DASK_SCHEDULER_ADDRESS", help="address of the Dask scheduler, tcp://HOST:PORT")
]


@app.command()
def submit(config: Annotated[Path, typer.Argument(help="YAML build config")], scheduler: Scheduler) -> None:
    """Run a build as a job on the cluster; the driver runs there, so this command may exit at once."""
    from eoshard.flows.cluster import dashboard_note
    from eoshard.flows.jobs import connect, submit_job
    from eoshard.flows.worker_checks import check_workers

    with user_errors():
        cfg = load_config(config)
        with connect(scheduler) as client:
            check_workers(client, "submit the job again")  # the job's driver is a task on one of them
            job_id = submit_job(client, cfg)
            say(f"job {job_id} submitted to {scheduler}")
            console.print(dashboard_note(client), soft_wrap=True)
            # one line whatever the width (piped output is 80 columns): it is meant to be copied
            say(f"follow it with: eoshard jobs --scheduler {scheduler} logs {job_id}")
        print(job_id)
