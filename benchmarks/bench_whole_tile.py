"""A whole Sentinel-2 tile and season (a user's AOI), beside its baselines in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_whole_tile.py [--work DIR] [--workers 2] [--latency 0.04]

The world (`eoshard demo-data DIR --scale tile`, written once into ``--work``: about 25 minutes and 15 GB) and the
cases of ``bench_tile.py``, at 4x the quarter's area, one run each (they take minutes):
- plan; build from local files, then the same build over HTTP with ``--latency`` s per request right after it
  (as ``bench_tile.py`` pairs them: the baselines change the machine for the builds that follow them);
- the floor (every needed block decoded once); the quarter's build, for memory;
- over HTTP again with ``EOSHARD_BLOCK_STORE_MB=4096`` (the fixed default bound before the build's estimate), beside
  the first (the machine's block store bounded by the build's estimate, the default); each with the server's byte
  counter against the compressed size of the needed blocks.

Each output is deleted once measured, so the run needs about 30 GB besides the world (a whole tile's output is
23 GB); ``bench_tile.py --scale tile`` keeps several and needs more. The output floor is left out for that reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any
from unittest.mock import patch

from bench_tile import CPU_SECONDS, FLOOR_CPU, build, config, floor, needed_blocks, planning, world

from eoshard.flows.demo.serve import remote_item_collection, serve_folder


def _remote(big: Path, work: Path, workers: int, latency: float, store_mb: str | None) -> dict[str, Any]:
    """The build over HTTP (``store_mb``: ``EOSHARD_BLOCK_STORE_MB`` for its workers, None: unset)."""
    with patch.dict(os.environ):
        os.environ.pop("EOSHARD_BLOCK_STORE_MB", None)
        if store_mb is not None:
            os.environ["EOSHARD_BLOCK_STORE_MB"] = store_mb
        with serve_folder(big, latency=latency) as served:
            items = remote_item_collection(
                big / "catalog" / "catalog.json", big, served.url, work / "tile-items.json"
            )
            path = config(big, items, work / "out-tile-remote")
            seconds, peak = build(path, workers)
            figures = {"s": seconds, "requests": served.traffic.requests, "bytes": served.traffic.bytes}
    shutil.rmtree(work / "out-tile-remote")
    return {**figures, "peak": peak, "cpu": CPU_SECONDS["last"]}


def _print_remote(name: str, r: dict[str, Any], args: argparse.Namespace, note: str = "") -> None:
    print(f"build over HTTP ({args.latency * 1000:.0f} ms per request), {args.workers} workers, block store bound "
          f"{name}: {r['s']:.1f} s, {r['cpu']:.0f} CPU s, {r['requests']} requests, {r['bytes'] / 2**20:.0f} MiB "
          f"fetched, peak RSS {r['peak'] / 2**20:.0f} MiB{note}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/eoshard-bench-tile"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.040)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    big, quarter = world(work, "tile"), world(work, "quarter")

    local = config(big, big / "catalog" / "catalog.json", work / "out-tile")
    plan_s, n_patches, n_shards = planning(local)
    print(f"plan: {n_patches} patches in {n_shards} shards, planning {plan_s:.1f} s")
    build_s, peak = build(local, args.workers)
    build_cpu = CPU_SECONDS["last"]
    out = work / "out-tile"
    manifest = json.loads((out / "dataset.json").read_text())
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"build, local files, {args.workers} workers: {build_s:.1f} s, {manifest['n_samples']} samples, "
          f"{build_cpu:.0f} CPU s ({CPU_SECONDS['driver']:.0f} in the driver), peak RSS {peak / 2**20:.0f} MiB, "
          f"{written / 2**30:.1f} GiB written")  # fmt: skip
    shutil.rmtree(out)
    runs = {"estimate": _remote(big, work, args.workers, args.latency, None)}
    _print_remote("estimate", runs["estimate"], args, f" (local files just before: {build_s:.1f} s)")

    blocks = needed_blocks(big, manifest)
    needed = sum(b[3] for b in blocks)
    floor_s = floor(blocks, args.workers)
    print(f"floor: {len(blocks)} blocks ({needed / 2**20:.0f} MiB compressed) decoded once on {args.workers} threads: "
          f"{floor_s:.1f} s, {FLOOR_CPU['last']:.1f} CPU s")  # fmt: skip

    small = config(quarter, quarter / "catalog" / "catalog.json", work / "out-quarter")
    _, small_peak = build(small, args.workers)
    shutil.rmtree(work / "out-quarter")
    print(f"peak RSS: {small_peak / 2**20:.0f} MiB at the quarter, {peak / 2**20:.0f} MiB at the whole tile")

    runs["4096 MB"] = _remote(big, work, args.workers, args.latency, "4096")
    _print_remote("4096 MB", runs["4096 MB"], args)
    print(f"load average at end: {os.getloadavg()}")
    print(f"ratio build/floor: {build_s / floor_s:.2f} (CPU seconds {build_cpu / FLOOR_CPU['last']:.2f})")
    print(f"ratio remote/local: {runs['estimate']['s'] / build_s:.2f}")
    print(f"ratio bytes fetched/needed: {runs['estimate']['bytes'] / needed:.2f}")
    print(f"ratio bytes fetched/needed with a 4096 MB store: {runs['4096 MB']['bytes'] / needed:.2f}")
    print(f"ratio remote with a 4096 MB store / remote: {runs['4096 MB']['s'] / runs['estimate']['s']:.2f}")
    print(f"ratio rss whole tile/quarter (4x the area): {peak / small_peak:.2f}")


if __name__ == "__main__":
    main()
