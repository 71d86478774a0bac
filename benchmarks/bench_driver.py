"""The build's driver at cluster scale: what each shard costs the one process that commits every shard.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_driver.py [--work DIR] [--scale quarter] [--workers 2]

On a cluster the workers' work spreads over many machines; the driver's does not. Cases:
- builds of the ``--scale`` tile world (``bench_tile.py``'s) with ``eoshard build --workers N``: Zarr only at 16
  and at 4 samples per shard (the same pixels in 4x the shards), then Zarr and LMDB at 16. The driver's CPU
  seconds are sampled per thread (``/proc/PID/task``): its main thread (planning, commits, the final manifest) and
  the others (the event loop of Dask's comms and of a LocalCluster's scheduler, which lives in the driver; the
  LMDB writers). What a shard costs the main thread is the difference between the two Zarr builds over their
  difference in shards. The other threads' work follows the build's duration (per second of build, printed); the
  LMDB writes are what the Zarr-and-LMDB build's other threads take beyond that, over its shards;
- commit records: every record of the first build written (``CommitLog``'s dump through ``atomic_write``) and read
  back as the final manifest reads them, beside the baseline of the standard library's ``json`` doing the same.

Ends with the driver's CPU seconds per shard, a projection to 100 tiles, and ``ratio commit json/eoshard``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from eoshard.flows.demo.tile import SCALES
from eoshard.pipeline.shards.commits import atomic_write, record_json

sys.path.insert(0, str(Path(__file__).parent))
from bench_tile import config, start_build, world


def build(path: Path, workers: int) -> tuple[float, float, float, int]:
    """Wall seconds, the CPU seconds of the driver's main thread and of all its threads, and the shards committed."""
    out = Path(yaml.safe_load(path.read_text())["output"]["path"])
    start = time.perf_counter()
    process = start_build(path, workers)
    errors: list[bytes] = []  # read as it comes: a full pipe would stop the build
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read() if process.stderr else b""))
    reader.start()
    tick, seen = os.sysconf("SC_CLK_TCK"), dict[int, float]()
    while process.poll() is None:
        tasks = Path(f"/proc/{process.pid}/task")
        for task in tasks.iterdir() if tasks.is_dir() else []:
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a thread that ended
            seen[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        time.sleep(0.05)
    wall = time.perf_counter() - start
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"build failed: {b''.join(errors).decode()[-3000:]}")
    return (
        wall,
        seen.get(process.pid, 0.0),
        sum(seen.values()),
        len(list((out / "_build" / "commits").glob("shard-*.json"))),
    )


def variant(base: Path, name: str, shard_size: int, formats: list[str]) -> Path:
    data = yaml.safe_load(base.read_text())
    data["name"] = name
    data["output"] = {
        **data["output"],
        "path": str(base.parent / name),
        "shard_size": shard_size,
        "formats": formats,
    }
    path = base.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def commits(
    records: list[dict[str, Any]], dump: Callable[[dict[str, Any]], bytes], load: Callable[[bytes], Any]
) -> float:
    """CPU seconds per record to write every record as a commit does and read them all back."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"shard-{k:06d}.json" for k in range(len(records))]
        start = time.process_time()
        for path, record in zip(paths, records, strict=True):
            atomic_write(path, dump(record))
        for path in paths:
            load(path.read_bytes())
        return (time.process_time() - start) / len(records)


def _json_dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/eoshard-bench-tile"))
    parser.add_argument("--scale", default="quarter", choices=list(SCALES))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    root = world(args.work, args.scale)
    base = config(root, root / "catalog" / "catalog.json", args.work / "out-driver")
    cases = {
        "Zarr, 16 samples a shard": variant(base, "out-driver-16", 16, ["zarr"]),
        "Zarr, 4 samples a shard": variant(base, "out-driver-4", 4, ["zarr"]),
        "Zarr and LMDB, 16 samples a shard": variant(base, "out-driver-lmdb", 16, ["zarr", "lmdb"]),
    }
    figures = {}
    for label, path in cases.items():
        figures[label] = wall, main_s, all_s, shards = build(path, args.workers)
        print(f"build, {label}, {args.workers} workers: {wall:.1f} s, {shards} shards; driver CPU s: {all_s:.1f}, "
              f"{main_s:.1f} in its main thread, {(all_s - main_s) / wall:.2f} in the others per second of the "
              f"build")  # fmt: skip
    (wall16, main16, all16, n16), (_, main4, _, n4), (wall_lmdb, _, all_lmdb, _) = figures.values()
    per_shard = (main4 - main16) / (n4 - n16)
    # the other threads' periodic work (comms, a LocalCluster's scheduler) follows the build's duration: the LMDB
    # build's is taken to be the Zarr build's per second, the rest of its other threads' time is the LMDB writers'
    periodic = (all16 - main16) / wall16
    lmdb_per_shard = (all_lmdb - all16 - periodic * (wall_lmdb - wall16)) / n16
    print(f"the driver's main thread per shard: {per_shard * 1000:.1f} ms; the LMDB writes per shard: "
          f"{lmdb_per_shard * 1000:.1f} ms")  # fmt: skip

    files = sorted((args.work / "out-driver-16" / "_build" / "commits").glob("*.json"))
    records = [json.loads(p.read_bytes()) for p in files]
    ours, baseline = [], []
    for _ in range(3):  # alternating: the first writes of a run pay for fresh pages
        ours.append(commits(records, record_json, orjson.loads))
        baseline.append(commits(records, _json_dump, json.loads))
    size = sum(p.stat().st_size for p in files) / len(files)
    print(f"commit records ({len(records)}, {size / 1024:.0f} KiB each), written and read back: eoshard "
          f"{min(ours) * 1000:.1f} ms, json {min(baseline) * 1000:.1f} ms per record (the best of 3)")  # fmt: skip
    quarters = round((10980 / SCALES[args.scale]) ** 2)
    shards = n16 * quarters * 100
    print(f"projection, 100 tiles ({shards} shards): the driver's main thread {shards * per_shard / 3600:.2f} h "
          f"for Zarr alone, {shards * (per_shard + max(0.0, lmdb_per_shard)) / 3600:.2f} h with LMDB")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")
    print(f"ratio commit json/eoshard: {min(baseline) / min(ours):.2f}")


if __name__ == "__main__":
    main()
