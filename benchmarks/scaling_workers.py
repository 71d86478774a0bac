"""The demo build with 1 and with 2 single-threaded Dask workers; baseline: 1 worker. Prints scaling efficiency.

    .venv/bin/python benchmarks/scaling_workers.py [--repeat 2]

Efficiency = t(1 worker) / (2 x t(2 workers)); 1.0 is perfect scaling. Each run writes a fresh output folder and
the best of ``--repeat`` runs counts. The demo world is generated into a temporary folder first.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from eoshard.flows.cluster import dask_client
from eoshard.flows.config import parse_config
from eoshard.flows.demo.products import write_demo_data
from eoshard.flows.jobs import build_dataset

BANDS = ["B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"]


def timed_build(demo: object, out: Path, workers: int) -> float:
    config = parse_config(
        {
            "name": "bench",
            "catalog": {"source": str(demo.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},  # type: ignore[attr-defined]
            "aoi": str(demo.aoi),  # type: ignore[attr-defined]
            "period": {"start": "2024-04-01", "end": "2024-09-30"},
            "bands": BANDS,
            "grid": {"resolution": 10, "chunksize": 256},
            "labels": {"path": str(demo.parcels), "class_column": "class_code", "id_column": "parcel_id"},  # type: ignore[attr-defined]
            "patches": {"size": 48},
            "output": {"path": str(out), "shard_size": 4},
        },
        out.parent,
    )
    with dask_client(None, workers) as client:
        client.wait_for_workers(workers)
        start = time.perf_counter()
        result = build_dataset(config, client)
        elapsed = time.perf_counter() - start
    assert result.n_samples == 108
    shutil.rmtree(out)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*label geometries were invalid")
    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo_data(Path(tmp) / "demo")
        times: dict[int, float] = {}
        for workers in (1, 2):
            runs = [timed_build(demo, Path(tmp) / f"out-{workers}-{r}", workers) for r in range(args.repeat)]
            times[workers] = min(runs)
            print(
                f"{workers} worker(s): "
                + ", ".join(f"{t:.2f} s" for t in runs)
                + f" (best {times[workers]:.2f} s)"
            )
    speedup = times[1] / times[2]
    print(f"speed-up 2 vs 1 workers: {speedup:.2f}x; scaling efficiency: {speedup / 2:.0%}")


if __name__ == "__main__":
    main()
