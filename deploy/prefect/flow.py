"""A Prefect wrapper for those who schedule with Prefect (optional; not installed by eoshard, not run by tests).

    pip install prefect
    python deploy/prefect/flow.py            # serves the deployment: a refresh every night at 02:30 UTC

eoshard's flows stay plain functions; this file only gives them Prefect's retries, logs and schedule
(``build_dataset`` for the first build, ``refresh_dataset`` for the nightly refresh).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from eoshard.flows.cluster import dask_client
from eoshard.flows.config import load_config
from eoshard.flows.jobs import build_dataset
from eoshard.flows.refresh.run import refresh_dataset


@task(retries=2, retry_delay_seconds=600)
def build(config_path: str, scheduler: str | None) -> int:
    config = load_config(Path(config_path))
    with dask_client(scheduler) as client:
        result = build_dataset(
            config, client, lambda done, total: get_run_logger().info("%d/%d shards", done, total)
        )
    return result.n_samples


@flow(name="eoshard-build")
def eoshard_build(config_path: str, scheduler: str | None = None) -> int:
    return build(config_path, scheduler)


# A failed refresh releases its lock and keeps its staging folder: a retry resumes it (docs/scheduled-refresh.md).
@task(retries=2, retry_delay_seconds=600)
def refresh(config_path: str, scheduler: str | None) -> list[str]:
    config = load_config(Path(config_path))
    result = refresh_dataset(
        config,
        lambda: dask_client(scheduler),
        lambda done, total: get_run_logger().info("%d/%d shards", done, total),
    )
    get_run_logger().info("up to date" if result.up_to_date else f"dates added: {list(result.added_dates)}")
    return list(result.added_dates)


@flow(name="eoshard-refresh")
def eoshard_refresh(config_path: str, scheduler: str | None = None) -> list[str]:
    return refresh(config_path, scheduler)


if __name__ == "__main__":
    eoshard_refresh.serve(name="nightly", cron="30 2 * * *", parameters={"config_path": "configs/my-aoi.yaml"})
