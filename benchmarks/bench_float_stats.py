"""Per-sample statistics of one band: float32 reflectance (float64 moments + 11-bit float32 bins) beside the
exact integer histogram of the same pixels as uint16 digital numbers (the baseline, what DN builds do).

    .venv/bin/python benchmarks/bench_float_stats.py

Synthetic pixels (Sentinel-2-like DN, gamma distributed around 1000..4000, 5 % nodata) in samples of 12 dates of
48 x 48 px, as one shard task sees them; also the merged partials' size over many samples (bounded bins).
"""

from __future__ import annotations

import json
import time

import numpy as np

from eoshard.pipeline.shards import stats

N_SAMPLES = 200
SHAPE = (12, 48, 48)


def _samples(rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(N_SAMPLES):
        dn = (1000 + rng.gamma(2.0, 600.0, size=SHAPE)).astype(np.uint16)
        dn[rng.random(SHAPE) < 0.05] = 0
        out.append(dn)
    return out


def _reflectance(dn: np.ndarray) -> np.ndarray:
    return np.where(dn == 0, np.float32(np.nan), (dn.astype(np.float32) - np.float32(1000)) / np.float32(10000))


def _time(parts: list[np.ndarray]) -> tuple[float, list[stats.Partial]]:
    start = time.perf_counter()
    out = [stats.collect(p) for p in parts]
    return time.perf_counter() - start, out


def main() -> None:
    rng = np.random.default_rng(0)
    dns = _samples(rng)
    floats = [_reflectance(d) for d in dns]
    t_int, ints = _time(dns)
    t_float, fls = _time(floats)
    start = time.perf_counter()
    merged_int = stats.combine(ints)
    t_merge_int = time.perf_counter() - start
    start = time.perf_counter()
    merged_float = stats.combine(fls)
    t_merge_float = time.perf_counter() - start
    assert isinstance(merged_float, stats.FloatStats) and not isinstance(merged_int, stats.FloatStats)
    px = N_SAMPLES * int(np.prod(SHAPE))
    print(f"{N_SAMPLES} samples of {SHAPE}, {px / 1e6:.2f} Mpx")
    print(f"baseline integer histogram (uint16 DN): {t_int:.3f} s ({px / t_int / 1e6:.1f} Mpx/s)")
    print(f"float statistics (float32 reflectance): {t_float:.3f} s ({px / t_float / 1e6:.1f} Mpx/s)")
    print(f"ratio float / integer: {t_float / t_int:.2f}x")
    print(f"merge of {N_SAMPLES} partials: integer {t_merge_int:.3f} s, float {t_merge_float:.3f} s")
    print(
        f"merged size: integer {len(merged_int)} values ({len(json.dumps(stats.dump(merged_int)))} B JSON), "
        f"float {len(merged_float.bins)} bins ({len(json.dumps(stats.dump(merged_float)))} B JSON)"
    )


if __name__ == "__main__":
    main()
