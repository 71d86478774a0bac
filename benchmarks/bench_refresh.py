"""``refresh_dataset`` against its baseline, a full rebuild over the whole season, on one LocalCluster.

    .venv/bin/python benchmarks/bench_refresh.py [--repeat 2] [--workers 2]

A dataset of the demo AOI is built from the first half of the season (3 dates); the catalog file then grows to the
whole season (7 dates). Timed, best of ``--repeat``: the refresh of a fresh copy of the half dataset, the full
rebuild into a fresh folder (baseline), and a refresh with nothing new (search and decision only). Prints the
ratio rebuild / refresh. Both results are checked to hold the same samples and dates.

    .venv/bin/python benchmarks/bench_refresh.py --world DIR [--repeat 1] [--workers 2]

With ``--world``, a tile-scale world written by ``eoshard demo-data DIR --scale S`` instead (its ``build.yaml``):
the dataset is built from its first 6 acquisitions, then refreshed to all 12. Timed beside the refresh: the same
refresh through the lazy cubes' graph (``cube.reads: graph``, the only way refreshes read before they read directly
as builds do) and the full rebuild. Prints rebuild / refresh and graph refresh / refresh; the three datasets are
checked to hold the same bytes (Zarr shards, LMDB values, statistics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lmdb
import pystac
import yaml

from eoshard.flows.cluster import dask_client
from eoshard.flows.config import BuildConfig, parse_config
from eoshard.flows.demo.products import write_demo_data
from eoshard.flows.jobs import build_dataset
from eoshard.flows.refresh.run import refresh_dataset

BANDS = ["B02", "B03", "B04", "B08", "B11"]
CUT = "2024-06-20"


def config_for(demo: Any, items: Path, out: Path) -> BuildConfig:
    return parse_config(
        {
            "name": "bench-refresh",
            "catalog": {"source": str(items), "collection": "sentinel-2-l2a", "max_cloud": 60},
            "aoi": str(demo.aoi),
            "period": {"start": "2024-04-01", "end": "2024-09-30"},
            "bands": BANDS,
            "grid": {"resolution": 10, "chunksize": 256},
            "labels": {"path": str(demo.parcels), "class_column": "class_code", "id_column": "parcel_id"},
            "patches": {"size": 48},
            "output": {"path": str(out), "shard_size": 4},
        },
        out.parent,
    )


def write_items(items: list[pystac.Item], path: Path) -> None:
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))


def season(demo: Any) -> list[pystac.Item]:
    items = list(pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True))
    for item in items:
        item.make_asset_hrefs_absolute()
    return sorted(items, key=lambda i: (i.datetime, i.id))


def tile_config(world: Path, items: Path, out: Path, reads: str = "direct") -> BuildConfig:
    """The world's own build, from the catalog file ``items``, into ``out``."""
    data = yaml.safe_load((world / "build.yaml").read_text())
    data["catalog"]["source"] = str(items)
    data["output"]["path"] = str(out)
    data["cube"] = {"reads": reads}
    return parse_config(data, world)


def shard_bytes(out: Path) -> tuple[Any, ...]:
    """What must be equal between two builds of one dataset: Zarr shard checksums, statistics, LMDB values."""
    manifest = json.loads((out / "dataset.json").read_text())
    values = []
    for part in sorted((out / "data.lmdb").iterdir()):
        env = lmdb.open(str(part), readonly=True, lock=False)
        with env.begin() as txn:
            values += [(bytes(k), hashlib.sha256(v).hexdigest()) for k, v in txn.cursor()]
        env.close()
    return manifest["checksums"], manifest["statistics"], manifest["keys"], manifest["dates"], values


def tile(world: Path, repeat: int, workers: int) -> None:
    items = sorted(pystac.Catalog.from_file(str(world / "catalog" / "catalog.json")).get_items(recursive=True),
                   key=lambda i: (i.datetime, i.id))  # fmt: skip
    for item in items:
        item.make_asset_hrefs_absolute()
    with tempfile.TemporaryDirectory(dir=world.parent) as tmp, dask_client(None, workers) as client:
        root = Path(tmp)
        catalog = root / "items.json"
        write_items(items[: len(items) // 2], catalog)
        half = root / "half"
        start = time.perf_counter()
        build_dataset(tile_config(world, catalog, half), client)
        print(f"build of the first {len(items) // 2} acquisitions: {time.perf_counter() - start:.1f} s")
        write_items(items, catalog)
        connect = lambda: nullcontext(client)  # noqa: E731  (the same cluster for all)
        times: dict[str, list[float]] = {"refresh": [], "refresh through the graph": [], "full rebuild": []}
        for r in range(repeat):
            outs = {}
            for name, reads in (("refresh", "direct"), ("refresh through the graph", "graph")):
                outs[name] = copy = root / f"{reads}-{r}"
                shutil.copytree(half, copy)
                start = time.perf_counter()
                refresh_dataset(tile_config(world, catalog, copy, reads), connect)
                times[name].append(time.perf_counter() - start)
            outs["full rebuild"] = root / f"rebuilt-{r}"
            start = time.perf_counter()
            build_dataset(tile_config(world, catalog, outs["full rebuild"]), client)
            times["full rebuild"].append(time.perf_counter() - start)
            expected = shard_bytes(outs["full rebuild"])
            assert all(shard_bytes(out) == expected for out in outs.values()), "the datasets differ"
            for out in outs.values():
                shutil.rmtree(out)
        manifest = json.loads((half / "dataset.json").read_text())
        print(f"{manifest['n_samples']} samples, {len(items) // 2} held + {len(items) - len(items) // 2} new "
              f"acquisitions, {workers} workers; the three datasets hold the same bytes")  # fmt: skip
        for name, runs in times.items():
            print(f"{name}: " + ", ".join(f"{t:.1f} s" for t in runs) + f" (best {min(runs):.1f} s)")
        best = {name: min(runs) for name, runs in times.items()}
        print(f"ratio rebuild/refresh: {best['full rebuild'] / best['refresh']:.2f}")
        print(f"ratio graph refresh/refresh: {best['refresh through the graph'] / best['refresh']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--world", type=Path, help="a tile world (eoshard demo-data DIR --scale S)")
    args = parser.parse_args()
    if args.world is not None:
        tile(args.world, args.repeat, args.workers)
        return
    warnings.filterwarnings("ignore", message=".*label geometries were invalid")
    with tempfile.TemporaryDirectory() as tmp, dask_client(None, args.workers) as client:
        root = Path(tmp)
        demo = write_demo_data(root / "demo")
        items, catalog = season(demo), root / "items.json"
        write_items([i for i in items if i.datetime is not None and i.datetime.isoformat() < CUT], catalog)
        half = root / "half"
        build_dataset(config_for(demo, catalog, half), client)
        write_items(items, catalog)
        connect = lambda: nullcontext(client)  # noqa: E731  (the same cluster for both)
        refresh_times, rebuild_times, noop_times = [], [], []
        for r in range(args.repeat):
            copy = root / f"refreshed-{r}"
            shutil.copytree(half, copy)
            start = time.perf_counter()
            refreshed = refresh_dataset(config_for(demo, catalog, copy), connect)
            refresh_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert refresh_dataset(config_for(demo, catalog, copy), connect).up_to_date
            noop_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            rebuilt = build_dataset(config_for(demo, catalog, root / f"rebuilt-{r}"), client)
            rebuild_times.append(time.perf_counter() - start)
            assert refreshed.manifest is not None
            assert refreshed.manifest["keys"] == rebuilt.manifest["keys"]
            assert refreshed.manifest["dates"] == rebuilt.manifest["dates"]
            assert refreshed.manifest["n_samples"] == rebuilt.n_samples
        manifest = refreshed.manifest
        print(
            f"{manifest['n_samples']} samples, dates {len(manifest['dates'])} (3 held + 4 new), {args.workers} workers"
        )
        for name, runs in (("refresh", refresh_times), ("full rebuild", rebuild_times), ("no-op", noop_times)):
            print(f"{name}: " + ", ".join(f"{t:.2f} s" for t in runs) + f" (best {min(runs):.2f} s)")
        print(f"rebuild / refresh: {min(rebuild_times) / min(refresh_times):.2f}x")


if __name__ == "__main__":
    main()
