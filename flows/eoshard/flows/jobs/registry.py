"""Job records, logs and cancel requests, kept by the scheduler (metadata store, events, ``Event``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from distributed import Client, Event

from eoshard.flows import cluster
from eoshard.flows.errors import FlowsError

JOBS = "eoshard-jobs"
STATES = ("queued", "running", "cancelling", "finished", "failed", "cancelled")


class JobError(FlowsError, RuntimeError):
    """A job, or the scheduler that should hold it, that cannot be reached or used."""


@dataclass(frozen=True)
class JobInfo:
    """One job as the scheduler knows it."""

    id: str
    name: str
    state: str
    done: int
    total: int | None
    submitted: str
    output: str
    error: str | None = None
    worker: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> JobInfo:
        fields: dict[str, Any] = {k: record.get(k) for k in cls.__dataclass_fields__}
        return cls(**{**fields, "done": int(record.get("done") or 0)})


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def topic(job_id: str) -> str:
    """The scheduler event topic that holds a job's log."""
    return f"eoshard-job-{job_id}"


def task_key(job_id: str) -> str:
    """The key of the driver task."""
    return f"eoshard-driver-{job_id}"


def cancel_event(job_id: str, client: Client) -> Event:
    return Event(f"eoshard-cancel-{job_id}", client=client)


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``; a clear error if none answers."""
    try:
        return cluster.connect(address, set_as_default=False)
    except FlowsError as err:
        raise JobError(str(err)) from err.__cause__


def update(client: Client, job_id: str, **fields: Any) -> None:
    """Set fields of a job's record on the scheduler; ``state`` last, so a reader that sees the new state also sees
    the fields that go with it (the error of a failed job, say)."""
    for name, value in sorted(fields.items(), key=lambda kv: kv[0] == "state"):
        client.set_metadata([JOBS, job_id, name], value)


def log(client: Client, job_id: str, message: str) -> None:
    """Append one line to a job's log on the scheduler."""
    client.log_event(topic(job_id), message)


def list_jobs(client: Client) -> list[JobInfo]:
    """Every job this scheduler holds, oldest first."""
    records: dict[str, dict[str, Any]] = client.get_metadata([JOBS], default={})
    return sorted((JobInfo.from_record(r) for r in records.values()), key=lambda j: (j.submitted, j.id))


def get_job(client: Client, job_id: str) -> JobInfo:
    record = client.get_metadata([JOBS, job_id], default=None)
    if record is None:
        known = ", ".join(j.id for j in list_jobs(client)) or "none"
        raise JobError(f"no job {job_id!r} on this scheduler; jobs there: {known}")
    return JobInfo.from_record(record)


def job_logs(client: Client, job_id: str) -> list[tuple[float, str]]:
    """The driver's log lines of a job as ``(unix time, message)``."""
    get_job(client, job_id)
    return [(float(t), str(m)) for t, m in client.get_events(topic(job_id))]


def cancel_job(client: Client, job_id: str) -> JobInfo:
    """Ask a job's driver to stop; it cancels its tasks, closes its writers and records ``cancelled``."""
    job = get_job(client, job_id)
    if job.state in ("finished", "failed", "cancelled"):
        raise JobError(f"job {job_id} has already ended ({job.state}); nothing to cancel")
    cancel_event(job_id, client).set()
    update(client, job_id, state="cancelling")
    log(client, job_id, "cancel requested")
    return get_job(client, job_id)


def wait_for_state(client: Client, job_id: str, states: tuple[str, ...], timeout: float) -> JobInfo:
    """Poll a job until it reaches one of ``states``."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(client, job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise JobError(f"job {job_id} is still {job.state} after {timeout:.0f} s (waited for {states})")
        time.sleep(0.2)
