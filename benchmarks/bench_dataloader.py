"""DataLoader samples/s from LMDB and Zarr shards vs reading the same samples from the source GeoTIFFs.

Baseline: the usual approach, rasterio opening each source COG and reading the patch window, per band and date.
A second comparison prices the readers' checksum checks (issue #15): each format read with ``verify=True``
(every LMDB value's SHA-256, every Zarr shard file's SHA-256 once per worker) against ``verify=False``.
Usage: python benchmarks/bench_dataloader.py DATASET_DIR CATALOG_JSON [--baseline-samples 20] [--epochs 3]
(DATASET_DIR written by `eoshard build` from the demo catalog CATALOG_JSON, e.g. `make demo`;
``--baseline-samples 0`` skips the GeoTIFF baseline and measures only the checks).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pystac
import rasterio
from rasterio.windows import from_bounds
from torch.utils.data import DataLoader

from eoshard.training.data import make_dataset
from eoshard.training.manifest import Manifest


def _items_by_date(catalog: Path) -> dict[str, list[pystac.Item]]:
    items: dict[str, list[pystac.Item]] = {}
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), []).append(item)
    return items


def geotiff_rate(manifest: Manifest, catalog: Path, n: int) -> float:
    by_date = _items_by_date(catalog)
    size = manifest.patch_size
    start = time.perf_counter()
    for key in manifest.keys[:n]:
        epsg, res, x0, y0 = (float(v) for v in key.split("_"))
        bounds = (x0, y0 - size * res, x0 + size * res, y0)
        for date in manifest.dates:
            native = [i for i in by_date[date] if i.properties.get("proj:code") == f"EPSG:{int(epsg)}"]
            item = sorted(native, key=lambda i: i.id)[-1]
            for band in manifest.bands:
                with rasterio.open(item.assets[band].get_absolute_href()) as src:
                    src.read(1, window=from_bounds(*bounds, transform=src.transform), boundless=True, fill_value=0)
    return n / (time.perf_counter() - start)


def loader_rate(
    manifest: Manifest, fmt: str, workers: int, batch_size: int = 16, verify: bool = True, epochs: int = 1
) -> float:
    """Samples/s over ``epochs`` passes of one DataLoader (workers persist, as in training)."""
    data = make_dataset(manifest, fmt, normalise=False, verify=verify)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    start = time.perf_counter()
    seen = sum(len(batch["image"]) for _ in range(epochs) for batch in loader)
    return seen / (time.perf_counter() - start)


def reader_rate(manifest: Manifest, fmt: str, verify: bool, passes: int) -> float:
    """Best samples/s of ``passes`` in-process passes, each by a fresh reader (Zarr shards are verified anew):
    steadier than the DataLoader figures on a shared machine."""
    best = 0.0
    for _ in range(passes):
        data = make_dataset(manifest, fmt, normalise=False, verify=verify)
        start = time.perf_counter()
        for i in range(len(data)):
            data[i]
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--baseline-samples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    manifest = Manifest.read(args.dataset)
    print(f"{len(manifest.keys)} samples of {len(manifest.dates)} dates x {len(manifest.bands)} bands x "
          f"{manifest.patch_size} px")  # fmt: skip
    results: dict[str, float] = {}
    if args.baseline_samples > 0:
        base = results["geotiff"] = geotiff_rate(manifest, args.catalog, args.baseline_samples)
        print(f"baseline GeoTIFF (rasterio per band): {base:8.1f} samples/s")
    for fmt in ("lmdb", "zarr"):
        for workers in (0, 1, 2):
            plain = loader_rate(manifest, fmt, workers, verify=False, epochs=args.epochs)
            checked = loader_rate(manifest, fmt, workers, verify=True, epochs=args.epochs)
            results[f"{fmt}-{workers}"], results[f"{fmt}-{workers}-unchecked"] = checked, plain
            vs_base = f"  ratio {checked / results['geotiff']:6.1f}x GeoTIFF" if "geotiff" in results else ""
            print(f"{fmt:5s} DataLoader workers={workers}: {checked:8.1f} samples/s checked, {plain:8.1f} unchecked:"
                  f" checks cost {100 * (1 - checked / plain):5.1f} %{vs_base}")  # fmt: skip
    for fmt in ("lmdb", "zarr"):
        plain, checked = (reader_rate(manifest, fmt, verify, args.epochs) for verify in (False, True))
        results[f"{fmt}-reader"], results[f"{fmt}-reader-unchecked"] = checked, plain
        print(f"{fmt:5s} reader in process, best of {args.epochs}: {checked:8.1f} samples/s checked, {plain:8.1f} "
              f"unchecked: checks cost {100 * (1 - checked / plain):5.1f} %")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
