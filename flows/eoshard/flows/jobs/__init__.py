"""Builds run as jobs on any Dask cluster: the driver itself is a task, so the submitting client may leave.

Everything lives in distributed's own state on the scheduler: the job records in the scheduler's metadata
store, the driver's log as scheduler events, the cancel request as a ``distributed.Event``.
"""

from __future__ import annotations

from eoshard.flows.jobs.driver import build_dataset, run_job
from eoshard.flows.jobs.registry import (
    JobError,
    JobInfo,
    cancel_job,
    connect,
    job_logs,
    list_jobs,
)
from eoshard.flows.jobs.submit import submit_job

__all__ = [
    "JobError",
    "JobInfo",
    "build_dataset",
    "cancel_job",
    "connect",
    "job_logs",
    "list_jobs",
    "run_job",
    "submit_job",
]
