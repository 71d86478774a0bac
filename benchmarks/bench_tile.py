"""Tile-scale build benchmark: a quarter of a Sentinel-2 tile over a season, beside its baselines in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tile.py [--work DIR] [--scale quarter] [--small sixteenth]
        [--workers 2] [--repeat 3] [--latency 0.04] [--naive 64]

Cases (each printed with its figures, then one line per ratio at the end):
- floor: every source block the build needs (bands and SCL of every product, blocks touching the grid), decoded
  once with rasterio on as many threads as the build has workers;
- build: ``eoshard build`` (labels, Zarr and LMDB, statistics, checksums) on local files, ``--workers`` processes;
- output floor: what writing the build's output costs by itself (its Zarr chunks encoded again, its Zarr files and
  LMDB values checksummed and written) on as many threads; the floor plus this is what a build that did nothing
  but decode its input once and write its output would take;
- naive: the per-patch x date x band reader of ``bench_build.py`` on the first ``--naive`` patches (samples/s);
- remote: the same build over HTTP from a local server with ``--latency`` s per request, N workers right after
  each local build (so that both meet the machine in the same state) and 1 worker once, with the server's byte
  counter against the compressed size of the needed blocks;
- memory: peak RSS of the build's process tree at the small scale (4x less area) and at ``--scale``, summed over
  the processes that have lived 1 s or more (a child forked to run a command shares its parent's pages for a moment
  and would count them twice; summing PSS instead walks every page table ten times a second and slowed the build).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
import yaml
from rasterio.windows import Window, from_bounds

from eoshard.flows.demo.serve import remote_item_collection, serve_folder
from eoshard.flows.demo.tile import BANDS_10, BANDS_20, SCALES, write_tile_world

BANDS = [*BANDS_10, *BANDS_20]
SHARD_SIZE = 16  # samples per shard (and per LMDB commit)


def world(work: Path, scale: str) -> Path:
    root = work / f"world-{scale}"
    if not (root / "catalog" / "catalog.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        write_tile_world(root, scale)
        print(f"wrote the {scale} world in {time.perf_counter() - start:.0f} s")
    return root


def config(root: Path, source: Path, out: Path) -> Path:
    data = {
        "name": out.name,
        "catalog": {"source": str(source), "collection": "sentinel-2-l2a", "max_cloud": 100},
        "aoi": str(root / "aoi.geojson"),
        "period": {"start": "2024-04-01", "end": "2024-10-31"},
        "bands": BANDS,
        "labels": {
            "path": str(root / "parcels.gpkg"),
            "class_column": "class_code",
            "class_name_column": "class_name",
            "id_column": "parcel_id",
        },
        "patches": {"size": 128},
        "timeseries": {"mask": "scl"},
        "output": {"path": str(out), "shard_size": SHARD_SIZE, "lmdb_parts": 2},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# the last build's CPU seconds: "last" summed over its processes, "driver" the driver's own
CPU_SECONDS: dict[str, float] = {}


def start_build(path: Path, workers: int) -> subprocess.Popen[bytes]:
    """``eoshard build PATH --workers N`` started in a fresh process, its output folder removed first."""
    out = Path(yaml.safe_load(path.read_text())["output"]["path"])
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build", str(path)]
    return subprocess.Popen(
        [*command, "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def build(path: Path, workers: int) -> tuple[float, int]:
    """Wall time (the whole command: planning, cluster start, shards, manifest) and peak RSS of its process tree
    (see the module's docstring)."""
    start = time.perf_counter()
    process = start_build(path, workers)
    peak, done = 0, threading.Event()

    cpu: dict[int, float] = {}

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                procs = [parent, *parent.children(recursive=True)]
                now = time.time()
                peak = max(peak, sum(p.memory_info().rss for p in procs if now - p.create_time() >= 1.0))
                for p in procs:
                    times = p.cpu_times()
                    cpu[p.pid] = max(cpu.get(p.pid, 0.0), times.user + times.system)
            time.sleep(0.1)

    thread = threading.Thread(target=sample)
    thread.start()
    _, err = process.communicate()
    done.set()
    thread.join()
    if process.returncode != 0:
        raise SystemExit(f"build failed: {err.decode()[-3000:]}")
    CPU_SECONDS["last"] = sum(cpu.values())
    CPU_SECONDS["driver"] = cpu.get(process.pid, 0.0)
    return time.perf_counter() - start, peak


def needed_blocks(root: Path, manifest: dict[str, Any]) -> list[tuple[Path, int, int, int]]:
    """(file, block row, block col, compressed bytes) of every block of every asset the grid touches."""
    import pystac

    t = manifest["transform"]
    ny, nx = manifest["shape"]
    bounds = (t[2], t[5] + ny * t[4], t[2] + nx * t[0], t[5])
    blocks = []
    dates = {d[:10] for d in manifest["dates"]}
    for item in pystac.Catalog.from_file(str(root / "catalog" / "catalog.json")).get_items(recursive=True):
        if item.datetime is None or item.datetime.strftime("%Y-%m-%d") not in dates:
            continue
        for band in [*BANDS, "SCL"]:
            path = Path(item.assets[band].get_absolute_href() or "")
            with rasterio.open(path) as src:
                w = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
                bh, bw = src.block_shapes[0]
                r0, c0 = max(0, int(w.row_off)), max(0, int(w.col_off))
                r1, c1 = min(src.height, int(w.row_off + w.height)), min(src.width, int(w.col_off + w.width))
                for r in range(r0 // bh, math.ceil(r1 / bh)):
                    for c in range(c0 // bw, math.ceil(c1 / bw)):
                        blocks.append((path, r, c, src.block_size(1, r, c)))
    return blocks


FLOOR_CPU: dict[str, float] = {}  # the last floor run's CPU seconds (all threads)


def floor(blocks: list[tuple[Path, int, int, int]], threads: int) -> float:
    """Decode every needed block once, ``threads`` at a time (each thread opens its own files)."""
    local = threading.local()

    def decode(block: tuple[Path, int, int, int]) -> int:
        path, r, c, _ = block
        files = local.__dict__.setdefault("files", {})
        src = files.get(path) or files.setdefault(path, rasterio.open(path))
        bh, bw = src.block_shapes[0]
        window = Window(c * bw, r * bh, min(bw, src.width - c * bw), min(bh, src.height - r * bh))
        return int(src.read(1, window=window).size)

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(decode, blocks, chunksize=8))
    FLOOR_CPU["last"] = time.process_time() - cpu
    return time.perf_counter() - start


OUTPUT_CPU: dict[str, float] = {}  # the last output floor's CPU seconds (all threads)


def output_floor(out: Path, threads: int) -> float:
    """What writing the build's output costs by itself, ``threads`` at a time: every Zarr chunk encoded again with
    its own codec (zstd at the store's level), every Zarr shard file and every LMDB value SHA-256'd (the values also
    CRC-32C'd, as the build records) and written to a fresh file as the build writes them: shard files past the page
    cache where it can (``write_new_file``), values synced and dropped from it (as LMDB's commits are). The chunks
    and values are read before the clock runs, a batch at a time; planning, reading, labels, statistics and the LMDB
    B-tree are left out."""
    import google_crc32c
    import lmdb
    import numcodecs
    import zarr

    from eoshard.pipeline.shards.direct_io import BYPASS, write_new_file
    from eoshard.pipeline.shards.shard_bytes import one_pass_level

    scratch = out.parent / f"{out.name}-output-floor"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    names = itertools.count()  # every file written is a new one, as the build's are
    seconds, cpu = 0.0, 0.0

    def timed(work: Any, batch: list[Any]) -> None:
        nonlocal seconds, cpu
        start, cpu0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, batch))
        seconds += time.perf_counter() - start
        cpu += time.process_time() - cpu0

    def shard_file(job: tuple[int, list[bytes], bytes, int]) -> None:
        n, raws, tail, level = job
        zstd = numcodecs.Zstd(level=level)
        data = b"".join([*(zstd.encode(r) for r in raws), tail])
        hashlib.sha256(data).hexdigest()
        write_new_file(scratch / f"zarr-{n}", [data])

    root = zarr.open_group(str(out / "data.zarr"), mode="r")
    jobs: list[tuple[int, list[bytes], bytes, int]] = []
    batch_bytes = 0
    for name, array in root.arrays():
        level = one_pass_level(array)
        assert level is not None and array.shards is not None, name
        per = array.shards[0]
        zstd = numcodecs.Zstd(level=level)
        for file in sorted(p for p in (out / "data.zarr" / name / "c").rglob("*") if p.is_file()):
            data = file.read_bytes()
            tail = data[-(per * 16 + 4) :]
            index = np.frombuffer(tail[:-4], dtype="<u8").reshape(per, 2)
            raws = [bytes(zstd.decode(data[o : o + size])) for o, size in index if o != np.iinfo(np.uint64).max]
            jobs.append((next(names), raws, tail, level))
            batch_bytes += sum(len(r) for r in raws)
            if batch_bytes > 256 * 2**20:
                timed(shard_file, jobs)
                jobs, batch_bytes = [], 0
    timed(shard_file, jobs)

    def commit(job: tuple[int, list[bytes]]) -> None:
        """A shard's values: checksummed, appended to one new file, synced once (as an LMDB commit)."""
        n, datas = job
        with (scratch / f"lmdb-{n}").open("wb") as f:
            for data in datas:
                hashlib.sha256(data).hexdigest()
                google_crc32c.value(data)
                f.write(data)
            f.flush()
            os.fdatasync(f.fileno())
            if BYPASS:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    for part in sorted((out / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            commits: list[tuple[int, list[bytes]]] = []
            shard: list[bytes] = []
            for _, data in txn.cursor():
                shard.append(bytes(data))
                if len(shard) == SHARD_SIZE:
                    commits.append((next(names), shard))
                    shard = []
                if len(commits) == 4:
                    timed(commit, commits)
                    commits = []
            timed(commit, [*commits, *([(next(names), shard)] if shard else [])])
        env.close()
    shutil.rmtree(scratch)
    OUTPUT_CPU["last"] = cpu
    return seconds


def naive(root: Path, manifest: dict[str, Any], n: int) -> float:
    """Samples/s of the older tools' reader: open the file of every patch x date x band and read the window."""
    import pystac

    items = {
        i.datetime.strftime("%Y-%m-%dT%H:%M:%S"): i
        for i in pystac.Catalog.from_file(str(root / "catalog" / "catalog.json")).get_items(recursive=True)
        if i.datetime is not None
    }
    keys = manifest["keys"][:n]
    start = time.perf_counter()
    for key in keys:
        _, res, x0, y0 = (float(v) for v in key.split("_"))
        size = manifest["patch"]["size"] * res
        for band in BANDS:
            stack = []
            for date in manifest["dates"]:
                with rasterio.open(items[date].assets[band].get_absolute_href()) as src:
                    window = from_bounds(x0, y0 - size, x0 + size, y0, transform=src.transform)
                    stack.append(src.read(1, window=window, boundless=True, fill_value=0))
            np.stack(stack)
    return len(keys) / (time.perf_counter() - start)


def planning(path: Path) -> tuple[float, int, int]:
    from eoshard.flows.build import plan_build
    from eoshard.flows.config import load_config

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_build(load_config(path))
    return time.perf_counter() - start, len(plan.patches), len(plan.shards())


def scheduler_seconds_per_task(workers: int, n: int = 2000) -> float:
    """Scheduler and transfer overhead of one task: ``n`` no-op tasks on a LocalCluster like the build's."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as c,
    ):
        c.gather(c.map(int, range(100)))  # warm
        start = time.perf_counter()
        c.gather(c.map(int, range(100, 100 + n), pure=False))
        return (time.perf_counter() - start) / n


def project(
    n_shards: int, cpu_s: float, driver_s: float, fetched: int, out_bytes: int, per_task: float, quarters: int
) -> None:
    """100 workers x 100 tiles from this run's per-shard figures (a tile is ``quarters`` x this AOI).

    The driver's part (its CPU seconds do not spread over the workers) is ``bench_driver.py``'s: dividing its whole
    time by the shards, as this did before, counted its start and a LocalCluster scheduler's periodic work (which
    follows the build's duration) as if every shard cost them."""
    shards = n_shards * quarters * 100
    cpu_per_shard = (cpu_s - driver_s) / n_shards
    wall_h = shards * cpu_per_shard / 100 / 3600
    print(f"projection, 100 tiles on 100 single-core workers: {shards} shard tasks, {cpu_per_shard:.2f} CPU s of "
          f"workers and {fetched / n_shards / 2**20:.1f} MiB in, {out_bytes / n_shards / 2**20:.1f} MiB out per shard "
          f"-> {wall_h:.2f} h of wall time if CPU-bound, {fetched * quarters * 100 / 2**40:.2f} TiB read, "
          f"{out_bytes * quarters * 100 / 2**40:.2f} TiB written, each worker reading "
          f"{fetched / n_shards / cpu_per_shard / 2**20:.1f} MiB/s; scheduler {per_task * 1000:.2f} ms per task "
          f"-> {shards * per_task / 60:.1f} min of scheduler time in all; the driver: {driver_s:.1f} CPU s in this "
          f"build, per shard in benchmarks/bench_driver.py")  # fmt: skip


def median(runs: list[float]) -> float:
    return statistics.median(runs)


def cpu_ticks() -> tuple[int, int] | None:
    """The machine's (stolen, all) CPU ticks from /proc/stat (None off Linux): a virtual machine's neighbours take
    the steal, and the CPU seconds of a run swing with it."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[7], sum(fields[:8])
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/eoshard-bench-tile"))
    parser.add_argument("--scale", default="quarter", choices=list(SCALES))
    parser.add_argument("--small", default="sixteenth", choices=list(SCALES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.040)
    parser.add_argument("--naive", type=int, default=32)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} CPUs")
    ticks = cpu_ticks()
    big, small = world(work, args.scale), world(work, args.small)

    local = config(big, big / "catalog" / "catalog.json", work / "out-local")
    plan_s, n_patches, n_shards = planning(local)
    print(f"plan: {n_patches} patches in {n_shards} shards, {n_shards} shard tasks (+ one small task per worker holding its input); "
          f"planning {plan_s:.1f} s")  # fmt: skip

    runs, peaks, cpus, drivers = [], [], [], []
    remote_runs: list[float] = []
    remote_one, fetched = 0.0, 0
    with serve_folder(big, latency=args.latency) as served:
        items = remote_item_collection(big / "catalog" / "catalog.json", big, served.url, work / "http-items.json")
        remote_cfg = config(big, items, work / "out-remote")
        # a local build and the same build over HTTP, one after the other: each pair meets the machine as it is
        # then (the page cache, other load), which the baselines below change for minutes
        for _ in range(args.repeat):
            seconds, peak = build(local, args.workers)
            runs.append(seconds)
            peaks.append(peak)
            cpus.append(CPU_SECONDS["last"])
            drivers.append(CPU_SECONDS["driver"])
            served.traffic.reset()
            seconds, remote_peak = build(remote_cfg, args.workers)
            remote_runs.append(seconds)
            fetched, requests = served.traffic.bytes, served.traffic.requests
            print(f"build over HTTP ({args.latency * 1000:.0f} ms per request), {args.workers} workers: "
                  f"{seconds:.1f} s (local files just before: {runs[-1]:.1f} s), {requests} requests, "
                  f"{fetched / 2**20:.0f} MiB fetched, peak RSS {remote_peak / 2**20:.0f} MiB")  # fmt: skip
        if args.workers > 1:
            remote_one, _ = build(remote_cfg, 1)
            print(f"build over HTTP, 1 worker: {remote_one:.1f} s")
    out_bytes = sum(p.stat().st_size for p in (work / "out-local").rglob("*") if p.is_file())
    manifest = json.loads((work / "out-local" / "dataset.json").read_text())
    build_s = median(runs)
    print(f"build, local files, {args.workers} workers: runs {[round(r, 1) for r in runs]} s, median {build_s:.1f} s, "
          f"{manifest['n_samples']} samples = {manifest['n_samples'] / build_s:.2f} samples/s, "
          f"peak RSS {max(peaks) / 2**20:.0f} MiB, {median(cpus):.0f} CPU s ({median(drivers):.0f} in the driver), "
          f"{out_bytes / 2**20:.0f} MiB written")  # fmt: skip

    blocks = needed_blocks(big, manifest)
    floors, floor_cpus = [], []
    for _ in range(max(3, args.repeat)):  # under a minute: a median of 3 at least
        floors.append(floor(blocks, args.workers))
        floor_cpus.append(FLOOR_CPU["last"])
    floor_s = median(floors)
    needed_bytes = sum(b[3] for b in blocks)
    print(f"floor: {len(blocks)} blocks ({needed_bytes / 2**20:.0f} MiB compressed) decoded once on "
          f"{args.workers} threads: runs {[round(f, 1) for f in floors]} s, median {floor_s:.1f} s, "
          f"{median(floor_cpus):.1f} CPU s")  # fmt: skip

    outputs, output_cpus = [], []
    for _ in range(max(3, args.repeat)):
        outputs.append(output_floor(work / "out-local", args.workers))
        output_cpus.append(OUTPUT_CPU["last"])
    output_s = median(outputs)
    print(f"output floor: the build's Zarr chunks encoded again, its Zarr files and LMDB values checksummed and "
          f"written, {args.workers} threads: runs {[round(o, 1) for o in outputs]} s, median {output_s:.1f} s, "
          f"{median(output_cpus):.1f} CPU s")  # fmt: skip

    naive_rate = naive(big, manifest, args.naive)
    print(f"naive per patch x date x band reader: {naive_rate:.2f} samples/s ({args.naive} samples)")

    small_cfg = config(small, small / "catalog" / "catalog.json", work / "out-small")
    _, small_peak = build(small_cfg, args.workers)
    small_manifest = json.loads((work / "out-small" / "dataset.json").read_text())
    area = (manifest["shape"][0] * manifest["shape"][1]) / (
        small_manifest["shape"][0] * small_manifest["shape"][1]
    )
    print(f"peak RSS: {small_peak / 2**20:.0f} MiB at {args.small}, {max(peaks) / 2**20:.0f} MiB at {args.scale} "
          f"({area:.1f}x the area)")  # fmt: skip

    per_task = scheduler_seconds_per_task(args.workers)
    quarters = round((10980 / SCALES[args.scale]) ** 2)
    project(n_shards, median(cpus), median(drivers), fetched, out_bytes, per_task, quarters)
    print(f"load average at end: {os.getloadavg()}")
    now = cpu_ticks()
    if ticks is not None and now is not None and now[1] > ticks[1]:
        print(
            f"CPU time stolen by the hypervisor during the run: {100 * (now[0] - ticks[0]) / (now[1] - ticks[1]):.1f} %"
        )
    print(f"ratio build/floor: {build_s / floor_s:.2f}")
    print(
        f"ratio build/floor in CPU seconds (less sensitive to other load): {median(cpus) / median(floor_cpus):.2f}"
    )
    print(f"ratio build/(floor + output floor): {build_s / (floor_s + output_s):.2f} "
          f"(CPU seconds {median(cpus) / (median(floor_cpus) + median(output_cpus)):.2f})")  # fmt: skip
    print(f"ratio naive/build: {(manifest['n_samples'] / build_s) / naive_rate:.2f}")
    print(f"ratio remote/local: {median(remote_runs) / build_s:.2f}")
    print(f"ratio bytes fetched/needed: {fetched / needed_bytes:.2f}")
    print(f"ratio rss {area:.0f}x/1x: {max(peaks) / small_peak:.2f}")
    if args.workers > 1:
        print(f"scaling efficiency 1 -> {args.workers} workers (remote): "
              f"{remote_one / (args.workers * median(remote_runs)):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
