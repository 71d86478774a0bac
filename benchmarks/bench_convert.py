"""Convert BigEarthNet-like input to LMDB, beside merely reading the same TIFFs with rasterio (the floor).

Input: the real BigEarthNet S1 and S2 sample patches of ../shared/data/rico-hdl, replicated N times under new
patch names. Run: .venv/bin/python benchmarks/bench_convert.py [N] [WORKERS]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import rasterio
from distributed import Client, LocalCluster

from eoshard.flows.commands.convert import Format, run_conversion

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "rico-hdl" / "BigEarthNet"


def replicate(root: Path, n: int) -> None:
    for part in ("BigEarthNet-S1", "BigEarthNet-S2"):
        (patch,) = [p for p in (SAMPLE / part).rglob("*") if p.is_dir() and p.parent.parent == SAMPLE / part]
        for i in range(n):
            name = f"{patch.name.rsplit('_', 2)[0]}_{i // 100}_{i % 100}"
            target = root / part / patch.parent.name / name
            target.mkdir(parents=True)
            for tif in patch.glob("*.tif"):
                shutil.copyfile(tif, target / tif.name.replace(patch.name, name))


def read_all(root: Path) -> int:
    n = 0
    for tif in sorted(root.rglob("*.tif")):
        with rasterio.open(tif) as src:
            src.read(1)
        n += 1
    return n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ben"
        replicate(root, n)
        patches = 2 * n
        read_all(root)  # warm the page cache for both runs alike
        start = time.perf_counter()
        files = read_all(root)
        floor = time.perf_counter() - start
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            start = time.perf_counter()
            roots = {"s1": root / "BigEarthNet-S1", "s2": root / "BigEarthNet-S2", "reference-maps": None}
            run_conversion("bigearthnet", roots, Path(tmp) / "lmdb", Format.lmdb, client)
            convert = time.perf_counter() - start
    print(f"patches: {patches} ({files} TIFFs), workers: {workers}")
    print(
        f"baseline, read every TIFF with rasterio in one process: {floor:.2f} s = {patches / floor:.0f} patches/s"
    )
    print(f"eoshard convert bigearthnet -> LMDB: {convert:.2f} s = {patches / convert:.0f} patches/s")
    print(f"ratio convert / read floor: {convert / floor:.2f}x")


if __name__ == "__main__":
    main()
