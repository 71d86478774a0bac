"""Reflectance and indices at tile scale: a build that makes them in its shard tasks from the digital numbers it
reads, beside the same build through the lazy cubes' graph (the baseline, how such builds read before), and the
digital-number build (what the float values cost on top).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_derived.py [--work DIR] [--scale sixteenth] [--workers 2]

The world and config are ``bench_tile.py``'s (all 10 bands, labels, SCL mask, Zarr and LMDB), with
``cube.reflectance: true`` and two indices, one of them from a 20 m band. Each case is one ``eoshard build`` in a
fresh process; the direct and graph outputs are compared file by file and LMDB value by value.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

from benchmarks.bench_tile import CPU_SECONDS, build, config, world
from tests.dataset_bytes import dataset_files, lmdb_contents

INDICES = {"ndvi": "ndvi", "nd11": "(B11 - B08) / (B11 + B08)"}


def with_cube(path: Path, name: str, cube: dict[str, object]) -> Path:
    """``bench_tile.py``'s config at ``path`` with ``cube``, writing to ``NAME/out`` beside its output (the same
    dataset name and folder name in every case, so that the outputs compare file by file)."""
    data = yaml.safe_load(path.read_text())
    out = Path(data["output"]["path"]).parent / name / "out"
    out.parent.mkdir(parents=True, exist_ok=True)
    data.update(name="derived", cube=cube, output={**data["output"], "path": str(out)})
    target = out.parent / "config.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


def same_dataset(a: Path, b: Path) -> bool:
    files = [{k: v for k, v in dataset_files(root).items() if not k.startswith("_build")} for root in (a, b)]
    return files[0] == files[1] and lmdb_contents(a) == lmdb_contents(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/eoshard-bench-tile"))
    parser.add_argument("--scale", default="sixteenth")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = world(args.work, args.scale)
    base = config(root, root / "catalog" / "catalog.json", args.work / f"derived-{args.scale}")
    cases = {
        "digital numbers, direct": with_cube(base, "derived-dn", {}),
        "reflectance + indices, direct": with_cube(
            base, "derived-direct", {"reflectance": True, "indices": INDICES}
        ),
        "reflectance + indices, graph (baseline)": with_cube(
            base, "derived-graph", {"reflectance": True, "indices": INDICES, "reads": "graph"}
        ),
    }
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    seconds = {}
    for name, path in cases.items():
        took, peak = build(path, args.workers)
        seconds[name] = took
        print(f"{name}: {took:.1f} s, {CPU_SECONDS['last']:.0f} CPU s, peak RSS {peak / 2**20:.0f} MiB")
    outs = [Path(yaml.safe_load(p.read_text())["output"]["path"]) for p in cases.values()]
    print(f"direct and graph outputs identical: {same_dataset(outs[1], outs[2])}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    direct, graph, dn = (seconds[k] for k in list(cases)[1:] + list(cases)[:1])
    print(f"ratio graph/direct: {graph / direct:.2f}")
    print(f"ratio direct float/direct digital numbers: {direct / dn:.2f}")


if __name__ == "__main__":
    main()
