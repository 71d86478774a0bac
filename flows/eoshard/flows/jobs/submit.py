"""Submit a build as a job: the driver task is fire-and-forget, so it outlives the submitting client."""

from __future__ import annotations

import time
import uuid

from distributed import Client, Scheduler, fire_and_forget

from eoshard.flows.config import BuildConfig
from eoshard.flows.jobs.driver import output_name, run_job
from eoshard.flows.jobs.registry import JOBS, JobError, now, task_key

HANDOVER_TIMEOUT = 30.0


def submit_job(client: Client, config: BuildConfig) -> str:
    """Start the build of ``config`` on ``client``'s cluster; returns the job id once the scheduler holds it."""
    job_id = f"{config.name}-{uuid.uuid4().hex[:8]}"
    record = {"id": job_id, "name": config.name, "state": "queued", "done": 0, "total": None}
    client.set_metadata([JOBS, job_id], {**record, "submitted": now(), "output": output_name(config)})
    key = task_key(job_id)
    future = client.submit(run_job, job_id, config.model_dump(mode="json"), key=key, pure=False)
    fire_and_forget(future)
    _wait_until_held(client, key)
    return job_id


def _wait_until_held(client: Client, key: str) -> None:
    """Return once the scheduler keeps the driver for no client, so that this client may disconnect."""

    def _held(
        key: str, dask_scheduler: Scheduler
    ) -> bool:  # local, so pickled by value: no eoshard on the scheduler
        task = dask_scheduler.tasks.get(key)
        return task is not None and any(c.client_key == "fire-and-forget" for c in task.who_wants or ())

    deadline = time.monotonic() + HANDOVER_TIMEOUT
    while not client.run_on_scheduler(_held, key):
        if time.monotonic() > deadline:
            raise JobError(f"the scheduler did not take over job task {key} within {HANDOVER_TIMEOUT:.0f} s")
        time.sleep(0.05)
