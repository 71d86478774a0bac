"""Paired HR layers: build throughput with ``hr:`` beside the same build without it, and the HR extraction beside a
naive reader that opens the HR files and reads each patch's window with rasterio (newest product on top).

    .venv/bin/python benchmarks/bench_hr.py [WORKDIR]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.windows import from_bounds

sys.path.insert(0, str(Path(__file__).parent))
from _demo import demo_world, write_config
from bench_build import threaded_build

from eoshard.flows.demo.hr import HR_BANDS, write_hr
from eoshard.flows.demo.world import make_world


def naive_hr(items_json: Path, manifest: dict) -> tuple[float, int]:
    """For each sample and band: open every HR file, read the patch window, keep the newest valid pixel."""
    items = sorted(json.loads(items_json.read_text())["features"], key=lambda i: i["properties"]["datetime"])
    factor, size = manifest["hr"]["factor"], manifest["patch"]["size"]
    start = time.perf_counter()
    for key in manifest["keys"]:
        _, res, x0, y0 = (float(v) for v in key.split("_"))
        bounds = (x0, y0 - size * res, x0 + size * res, y0)
        for band in HR_BANDS:
            out = np.zeros((size * factor, size * factor), dtype="uint8")
            for item in items:
                with rasterio.open(item["assets"][band]["href"]) as src:
                    window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
                    values = src.read(1, window=window, boundless=True, fill_value=0)
                out = np.where(values != 0, values, out)
    return time.perf_counter() - start, len(manifest["keys"])


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-hr-"))
    demo = demo_world(work / "demo")
    hr = work / "demo" / "hr" / "items.json"
    if not hr.exists():
        write_hr(hr.parent, make_world())
    runs = {}
    for name in ("without-hr", "with-hr"):
        out = work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        config = write_config(demo, out, str(demo.aoi))
        if name == "with-hr":
            data = yaml.safe_load(config.read_text())
            data["hr"] = {"source": str(hr), "bands": list(HR_BANDS), "resolution": 2.5}
            config.write_text(yaml.safe_dump(data))
        seconds, n = threaded_build(config)
        runs[name] = (seconds, n)
        print(
            f"run_build {name} (1 worker, 2 threads), full demo AOI: {n} samples in {seconds:.1f} s = {n / seconds:.2f} samples/s"
        )
    (base_s, n), (hr_s, _) = runs["without-hr"], runs["with-hr"]
    print(f"ratio with / without hr throughput: {(n / hr_s) / (n / base_s):.2f}")
    manifest = json.loads((work / "out-with-hr" / "dataset.json").read_text())
    naive_s, naive_n = naive_hr(hr, manifest)
    print(
        f"naive rasterio HR windows (2 files x 3 bands per patch), no writing: {naive_n} patches in {naive_s:.1f} s = {naive_n / naive_s:.2f} patches/s"
    )
    print(
        f"added build time per sample for hr: {(hr_s - base_s) / n * 1000:.1f} ms; naive HR read per patch: {naive_s / naive_n * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
