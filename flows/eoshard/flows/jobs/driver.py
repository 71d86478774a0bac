"""The driver of a job: runs as a task on a worker, seceded from its thread pool, and runs the whole build."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client, get_worker, worker_client

from eoshard.catalog.credentials import redact_text
from eoshard.flows.build import BuildResult, plan_build, run_build
from eoshard.flows.config import BuildConfig, parse_config
from eoshard.flows.disk_watch import DiskWatch
from eoshard.flows.jobs.registry import cancel_event, log, now, update
from eoshard.flows.storage import publish, redact_url
from eoshard.flows.words import counted

Progress = Callable[[int, int], None]


class JobCancelled(Exception):  # noqa: N818  (a signal, not an error)
    """Raised inside the driver when a cancel was requested."""


def build_dataset(config: BuildConfig, client: Client, on_progress: Progress | None = None) -> BuildResult:
    """Plan and run a build on ``client``'s cluster, then publish it to ``output.url`` when one is set."""
    plan = plan_build(config)
    result = run_build(plan, client, on_progress)
    if config.output.url is not None:
        publish(result.path, config.output.url)
    return result


def output_name(config: BuildConfig) -> str:
    """Where a build's output goes, fit for a log (no credentials)."""
    return redact_url(config.output.url) if config.output.url else str(config.output.path)


def run_job(job_id: str, config: dict[str, Any]) -> str:
    """The driver task: build the dataset, record progress and log on the scheduler; returns the final state."""
    worker = get_worker().address
    with worker_client() as client:  # secedes from the worker's pool; rejoins when the build is done
        update(client, job_id, state="running", worker=worker, started=now())
        log(client, job_id, f"driver started on {worker}")
        cancel = cancel_event(job_id, client)
        watch: DiskWatch | None = None  # the output's disk, once the config is read

        def on_progress(done: int, total: int) -> None:
            update(client, job_id, done=done, total=total)
            if watch is not None:
                watch(done, total)
            if cancel.is_set():
                raise JobCancelled

        try:
            cfg = parse_config(config, Path("/"), f"job {job_id}")
            watch = DiskWatch(cfg.output.path, lambda note: log(client, job_id, f"warning: {note}"))
            if cancel.is_set():
                raise JobCancelled
            result = build_dataset(cfg, client, on_progress)
        except JobCancelled:
            update(client, job_id, state="cancelled", finished=now())
            log(client, job_id, "cancelled: no further shards are written; rerun the build to complete it")
            return "cancelled"
        except Exception as err:
            # foreign causes (requests, pystac-client) quote the URLs they failed on, secrets included
            update(
                client, job_id, state="failed", error=redact_text(f"{type(err).__name__}: {err}"), finished=now()
            )
            log(client, job_id, "failed:\n" + redact_text("".join(traceback.format_exception(err))))
            raise
        log(
            client,
            job_id,
            f"wrote {counted(result.n_samples, 'sample')} x {counted(result.n_dates, 'date')} to {output_name(cfg)}",
        )
        update(client, job_id, state="finished", finished=now())
        return "finished"
