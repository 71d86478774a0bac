"""Start Dask workers as Slurm jobs and keep a scheduler for eoshard (run it on the login node, e.g. in tmux).

    DASK_CONFIG=deploy/slurm python deploy/slurm/cluster.py --max-workers 32
    eoshard submit build.yaml --scheduler tcp://LOGIN-NODE:8786       # from anywhere that reaches the login node

The workers come and go with the load (``adapt``); settings come from ``jobqueue.yaml`` beside this file.
"""

from __future__ import annotations

import argparse
import time

from dask_jobqueue import SLURMCluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-workers", type=int, default=0)
    parser.add_argument("--max-workers", type=int, default=16)
    parser.add_argument("--port", type=int, default=8786)
    args = parser.parse_args()
    cluster = SLURMCluster(scheduler_options={"port": args.port, "dashboard_address": ":8787"})
    cluster.adapt(minimum=args.min_workers, maximum=args.max_workers)
    print(f"scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}", flush=True)
    print(cluster.job_script(), flush=True)
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
