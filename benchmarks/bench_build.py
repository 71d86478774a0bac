"""Build throughput (samples/s) of `eoshard build` beside a naive per-patch, per-file rasterio reader, and the
build's peak memory at two AOI sizes (it must not grow with the AOI).

    .venv/bin/python benchmarks/bench_build.py [WORKDIR]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import lmdb
import numpy as np
import psutil
import pystac
import rasterio
from rasterio.windows import from_bounds
from safetensors.numpy import save

sys.path.insert(0, str(Path(__file__).parent))
from _demo import BANDS, demo_world, write_config

SMALL_AOI = [11.96, 48.005, 11.985, 48.02]


def run_build(config: Path) -> tuple[float, int]:
    """Wall time and peak RSS (driver + scheduler + workers, summed) of one `eoshard build` process tree."""
    command = [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "build", str(config)]
    start = time.perf_counter()
    process = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        parent = psutil.Process(process.pid)
        while not done.is_set():
            try:
                procs = [parent, *parent.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    thread = threading.Thread(target=sample)
    thread.start()
    process.wait()
    done.set()
    thread.join()
    assert process.returncode == 0, "build failed"
    return time.perf_counter() - start, peak


def naive_build(demo, manifest: dict, out: Path) -> tuple[float, int]:
    """The older tools' approach: for each patch, date and band open the source file and read the window."""
    items: dict[str, pystac.Item] = {}
    for item in pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True):
        if item.properties["proj:code"] == manifest["crs"] and item.properties.get("eo:cloud_cover", 0) <= 60:
            items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), item)
    dates = [d for d in manifest["dates"] if d in items]
    env = lmdb.open(str(out), map_size=2**30)
    start = time.perf_counter()
    count = 0
    with env.begin(write=True) as txn:
        for key in manifest["keys"]:
            _, res, x0, y0 = (float(v) for v in key.split("_"))
            size = manifest["patch"]["size"] * res
            bounds = (x0, y0 - size, x0 + size, y0)
            tensors = {}
            for band in BANDS:
                stack = []
                for date in dates:
                    with rasterio.open(items[date].assets[band].get_absolute_href()) as src:
                        window = from_bounds(*bounds, transform=src.transform)
                        stack.append(src.read(1, window=window, boundless=True, fill_value=0))
                tensors[band] = np.stack(stack)
            txn.put(key.encode(), save(tensors))
            count += 1
    env.close()
    return time.perf_counter() - start, count


def threaded_build(config: Path) -> tuple[float, int]:
    """The same job on an in-process cluster (2 threads, no inter-process transfer); planning excluded."""
    import warnings

    from distributed import Client, LocalCluster

    from eoshard.flows.build import plan_build, run_build
    from eoshard.flows.config import load_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_build(load_config(config))
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter()
        result = run_build(plan, client)
        return time.perf_counter() - start, result.n_samples


def main() -> None:
    import json

    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-build-"))
    demo = demo_world(work / "demo")
    results = {}
    for name, aoi in (("small", SMALL_AOI), ("full", str(demo.aoi))):
        out = work / f"out-{name}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        seconds, peak = run_build(write_config(demo, out, aoi))
        manifest = json.loads((out / "dataset.json").read_text())
        results[name] = (seconds, peak, manifest)
        print(
            f"eoshard build, {name} AOI {manifest['shape'][0]} x {manifest['shape'][1]} px: "
            f"{manifest['n_samples']} samples in {seconds:.1f} s = {manifest['n_samples'] / seconds:.2f} samples/s "
            f"(incl. cluster start-up), peak RSS {peak / 2**20:.0f} MiB"
        )
    seconds, _, manifest = results["full"]
    naive_s, naive_n = naive_build(demo, manifest, work / "naive.lmdb")
    print(
        f"naive rasterio per patch/file, full AOI: {naive_n} samples in {naive_s:.1f} s = {naive_n / naive_s:.2f} samples/s"
    )
    print(f"ratio eoshard / naive throughput: {(manifest['n_samples'] / seconds) / (naive_n / naive_s):.2f}")
    out = work / "out-threads"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    threaded_s, threaded_n = threaded_build(write_config(demo, out, str(demo.aoi)))
    print(
        f"eoshard run_build in-process (1 worker, 2 threads), full AOI: {threaded_n} samples in {threaded_s:.1f} s"
        f" = {threaded_n / threaded_s:.2f} samples/s; ratio to naive {(threaded_n / threaded_s) / (naive_n / naive_s):.2f}"
    )
    small, full = results["small"], results["full"]
    area = (full[2]["shape"][0] * full[2]["shape"][1]) / (small[2]["shape"][0] * small[2]["shape"][1])
    print(f"peak RSS full / small AOI: {full[1] / small[1]:.2f} for {area:.1f}x the area")


if __name__ == "__main__":
    main()
