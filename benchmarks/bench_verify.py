"""``eoshard verify`` beside its floor, reading and hashing once every byte it checks, on a built dataset.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_verify.py DATASET [--repeat 3] [--sources 0]

Cases, each the median of ``--repeat`` runs:
- verify: ``eoshard verify DATASET --sources N`` in a fresh process (the command a user runs: checksums of the Zarr
  shards, the LMDB keys against the index, every LMDB value against its checksum and its Zarr slot, N samples
  re-read from the sources), with the peak of its anonymous memory (``RssAnon``, sampled 20 times a second: LMDB's
  pages mapped from the page cache are file-backed and left out);
- floor: every Zarr shard file and every LMDB value read once and SHA-256'd, in this process, one thread: what any
  check of every byte costs (it compares nothing).

Ends with ``ratio verify/floor``. Run it on a dataset whose files are in the page cache (after a build, or a first
run) so that both cases read from memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lmdb


def verify(dataset: Path, sources: int) -> tuple[float, int]:
    """Wall seconds of ``eoshard verify`` in a fresh process, and its peak anonymous memory in bytes."""
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "verify", str(dataset)]
    start = time.perf_counter()
    process = subprocess.Popen([*command, "--sources", str(sources)], stdout=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            break
        anon = [int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:")]
        peak = max(peak, *anon, 0)
        time.sleep(0.05)
    process.wait()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"eoshard verify exited {process.returncode}")
    return seconds, peak * 1024


def floor(dataset: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of reading and hashing every Zarr shard file and LMDB value once, and the bytes."""
    manifest = json.loads((dataset / "dataset.json").read_text())
    start, cpu, total = time.perf_counter(), time.process_time(), 0
    for name in manifest["checksums"]:
        with (dataset / name).open("rb") as f:
            hashlib.file_digest(f, "sha256")
        total += (dataset / name).stat().st_size
    for part in sorted((dataset / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin(buffers=True) as txn:
            for _, value in txn.cursor():
                hashlib.sha256(value)
                total += len(value)
        env.close()
    return time.perf_counter() - start, time.process_time() - cpu, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", type=int, default=0)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    n = json.loads((args.dataset / "dataset.json").read_text())["n_samples"]
    runs, floors = [], []
    for _ in range(args.repeat):  # alternating, so that both meet the same machine
        before = os.times()
        seconds, peak = verify(args.dataset, args.sources)
        after = os.times()
        cpu = after.children_user + after.children_system - before.children_user - before.children_system
        runs.append((seconds, cpu, peak))
        floors.append(floor(args.dataset))
    verify_s = statistics.median(r[0] for r in runs)
    floor_s = statistics.median(f[0] for f in floors)
    print(f"verify, {n} samples, --sources {args.sources}: runs {[round(r[0], 1) for r in runs]} s, median "
          f"{verify_s:.1f} s, {statistics.median(r[1] for r in runs):.1f} CPU s, peak anonymous memory "
          f"{max(r[2] for r in runs) / 2**20:.0f} MiB")  # fmt: skip
    print(f"floor: {floors[0][2] / 2**20:.0f} MiB read and SHA-256'd once: runs {[round(f[0], 1) for f in floors]} s, "
          f"median {floor_s:.1f} s, {statistics.median(f[1] for f in floors):.1f} CPU s")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")
    print(f"ratio verify/floor: {verify_s / floor_s:.2f}")


if __name__ == "__main__":
    main()
