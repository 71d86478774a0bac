"""The tile-scale build over HTTP at several latencies per request, each beside a local build of the same plan.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_latency.py [--work DIR] [--scale quarter] [--workers 2]
        [--latencies 0 0.04 0.15]

For each latency: ``eoshard build`` on local files, then the same build over HTTP from a local server that waits that
long before each answer (``eoshard.flows.demo.serve``), so that both meet the machine in the same state. Each second
of the remote build prints the busy cores and the requests and MiB the server answered, which shows whether it waits
for the network or for the cores. Ends with one ``ratio remote/local at N ms`` line per latency.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import psutil

from benchmarks.bench_tile import CPU_SECONDS, build, config, remote_item_collection, world
from eoshard.flows.demo.serve import Traffic, serve_folder


def _each_second(traffic: Traffic, stop: threading.Event, seen: list[str]) -> None:
    """Busy cores of the machine, requests and MiB answered in each second until ``stop``."""
    cores = psutil.cpu_count() or 1
    psutil.cpu_percent()  # the next call counts from here
    requests, served = traffic.requests, traffic.bytes
    while not stop.wait(1.0):
        busy = cores * psutil.cpu_percent() / 100
        seen.append(f"{busy:.1f}/{traffic.requests - requests}r/{(traffic.bytes - served) >> 20}M")
        requests, served = traffic.requests, traffic.bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench-work"))
    parser.add_argument("--scale", default="quarter")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.0, 0.04, 0.15])
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    big = world(work, args.scale)
    local = config(big, big / "catalog" / "catalog.json", work / "out-local")
    ratios = []
    for latency in args.latencies:
        local_s, _ = build(local, args.workers)
        local_cpu = CPU_SECONDS["last"]
        with serve_folder(big, latency=latency) as served:
            items = remote_item_collection(
                big / "catalog" / "catalog.json", big, served.url, work / "http-items.json"
            )
            remote = config(big, items, work / "out-remote")
            served.traffic.reset()
            stop, seen = threading.Event(), list[str]()
            sampler = threading.Thread(target=_each_second, args=(served.traffic, stop, seen))
            sampler.start()
            start = time.perf_counter()
            remote_s, _ = build(remote, args.workers)
            stop.set()
            sampler.join()
            print(f"{latency * 1000:.0f} ms per request: local {local_s:.1f} s ({local_cpu:.0f} CPU s), over HTTP "
                  f"{remote_s:.1f} s ({CPU_SECONDS['last']:.0f} CPU s), {served.traffic.requests} requests, "
                  f"{served.traffic.bytes / 2**20:.0f} MiB fetched")  # fmt: skip
            print(f"  each second of it (busy cores / requests / MiB answered; {time.perf_counter() - start:.0f} s): "
                  + " ".join(seen))  # fmt: skip
        ratios.append((latency, remote_s / local_s))
    for latency, ratio in ratios:
        print(f"ratio remote/local at {latency * 1000:.0f} ms: {ratio:.2f}")


if __name__ == "__main__":
    main()
