"""The input stack of ``eoshard predict`` at tile scale: read straight from the files (as the build reads), beside
the lazy stack computed window by window (the path before, the baseline), in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_predict.py [--work DIR] [--scale quarter] [--small sixteenth]
        [--repeat 3]

The stack is what a model package of 6 dates and 5 bands (B02 B03 B04 B08 at 10 m, B11 at 20 m, digital numbers)
asks of the tile world (``eoshard demo-data --scale``) over its season, streamed into a Zarr scene of 256 px
chunks. Each case runs in a fresh process (its peak RSS is its own): the direct stack at ``--scale`` (median of
``--repeat``) and at ``--small`` (4x less area: memory should not follow the area), the lazy stack at ``--scale``
once; both scenes are compared value for value. Ends with one line per ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_tile import world

BANDS = ["B02", "B03", "B04", "B08", "B11"]
N_DATES = 6
PERIOD = (date(2024, 4, 1), date(2024, 10, 31))


def case(root: str, out: str, graph: bool) -> None:
    """Plan and write one stack; print its figures as JSON (run in a fresh process by ``run_case``)."""
    import geopandas as gpd

    from eoshard.flows.aoi import read_aoi
    from eoshard.flows.model_input import ModelInput, plan_stack, write_stack

    area, crs = read_aoi(Path(root) / "aoi.geojson")
    area_4326 = gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]
    spec = ModelInput(BANDS, N_DATES, 10.0, False)
    start = time.perf_counter()
    plan = plan_stack(spec, str(Path(root) / "catalog" / "catalog.json"), area, crs, area_4326, *PERIOD)
    planned = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    write_stack(plan, Path(out), graph=graph)
    figures = {
        "plan_s": planned, "write_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "shape": list(plan.stack.shape),
    }  # fmt: skip
    print(json.dumps(figures))


def run_case(root: Path, out: Path, graph: bool) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    code = f"import bench_predict as b; b.case({str(root)!r}, {str(out)!r}, {graph})"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_values(a: Path, b: Path) -> bool:
    import numpy as np
    import zarr

    x, y = zarr.open_array(str(a), mode="r"), zarr.open_array(str(b), mode="r")
    return x.shape == y.shape and all(np.array_equal(x[t], y[t], equal_nan=True) for t in range(x.shape[0]))


def show(name: str, f: dict) -> None:
    t, c, h, w = f["shape"]
    print(f"{name}: {t} x {c} x {h} x {w}, planned in {f['plan_s']:.1f} s, written in {f['write_s']:.1f} s "
          f"({f['cpu_s']:.1f} CPU s), peak RSS {f['peak_mib']:.0f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/eoshard-bench-tile"))
    parser.add_argument("--scale", default="quarter")
    parser.add_argument("--small", default="sixteenth")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    big, small = world(args.work, args.scale), world(args.work, args.small)
    scenes = args.work / "predict-scenes"
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")

    runs = [run_case(big, scenes / "direct.zarr", graph=False) for _ in range(args.repeat)]
    for n, f in enumerate(runs, 1):
        show(f"direct, {args.scale} (run {n})", f)
    direct = statistics.median(f["write_s"] for f in runs)
    little = run_case(small, scenes / "small.zarr", graph=False)
    show(f"direct, {args.small}", little)
    lazy = run_case(big, scenes / "lazy.zarr", graph=True)
    show(f"lazy stack window by window (baseline), {args.scale}", lazy)
    equal = same_values(scenes / "direct.zarr", scenes / "lazy.zarr")
    print(f"the two scenes hold the same values: {equal}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print(f"ratio lazy/direct: {lazy['write_s'] / direct:.2f}")
    print(f"ratio lazy/direct in CPU seconds: {lazy['cpu_s'] / statistics.median(f['cpu_s'] for f in runs):.2f}")
    peak = statistics.median(f["peak_mib"] for f in runs)
    print(f"ratio peak RSS {args.scale}/{args.small} (direct): {peak / little['peak_mib']:.2f}")
    if not equal:
        raise SystemExit("the direct and the lazy stack differ")


if __name__ == "__main__":
    main()
