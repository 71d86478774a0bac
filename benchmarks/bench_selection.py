"""Search and selection over 10,000 products: real Planetary Computer items replicated in time and space.

Runs a real STAC API (pgSTAC, as the tests do), loads the replicas, and times in one run:
- the API search (server-side bbox/datetime/cloud filters, pages of 1,000) beside the baseline of reading the same
  items from a static FeatureCollection file and filtering them in process;
- ``select`` (duplicates, AOI overlap, greedy cover, evenly spread dates by exact max-gap DP) over what was found,
  beside the naive baseline of "every n-th date", comparing the largest gap between chosen dates.
Run: PYTHONPATH=. .venv/bin/python benchmarks/bench_selection.py
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import shapely
from shapely import affinity

from eoshard.catalog import search, select
from eoshard.catalog.stac_api import ApiOptions, search_api
from tests.conftest import SHARED_DATA
from tests.services.pgstac import running_pgstac

N_PRODUCTS = 10_000
START, END = date(2024, 1, 1), date(2024, 12, 31)
DATES = 12


def replicas(n: int, centre: shapely.Point) -> list[dict[str, Any]]:
    """``n`` copies of the real items, moved to within 0.5 degrees of ``centre`` and spread over 2024."""
    rng = random.Random(0)
    templates = json.loads((SHARED_DATA / "stac" / "planetarycomputer__sentinel-2-l2a.json").read_text())[
        "features"
    ]
    out = []
    for k in range(n):
        item = json.loads(json.dumps(templates[k % len(templates)]))
        geom = shapely.geometry.shape(item["geometry"])
        here = geom.centroid
        dx, dy = centre.x - here.x + rng.uniform(-0.5, 0.5), centre.y - here.y + rng.uniform(-0.5, 0.5)
        moved = affinity.translate(geom, dx, dy)
        when = datetime(2024, 1, 1, 10, 30, tzinfo=UTC) + timedelta(days=rng.randrange(366), seconds=k)
        item["id"] = f"{item['id']}-r{k:05d}"
        item["geometry"] = shapely.geometry.mapping(moved)
        item["bbox"] = list(moved.bounds)
        item["properties"]["datetime"] = when.isoformat().replace("+00:00", "Z")
        item["properties"]["s2:datatake_id"] = f"replica-{k}"
        item["collection"] = "bench-sentinel-2-l2a"
        item["links"] = []
        out.append(item)
    return out


def largest_gap(days: list[date]) -> int:
    points = [START, *sorted(days), END]
    return max((b - a).days for a, b in pairwise(points))


def main() -> None:
    centre = shapely.Point(11.0, 48.0)
    area = centre.buffer(0.2)
    items = replicas(N_PRODUCTS, centre)
    with running_pgstac() as api, tempfile.TemporaryDirectory() as tmp:
        static = Path(tmp) / "items.json"
        static.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        api.load(items)
        query: dict[str, Any] = dict(
            area=area, start=START, end=END, collection="bench-sentinel-2-l2a", max_cloud=40
        )

        t0 = time.perf_counter()
        result = search_api(api.url, **query, options=ApiOptions(page_size=1000))
        t_api = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_file = search(static, **query)
        t_file = time.perf_counter() - t0
        assert sorted(i.id for i in result.items) == sorted(i.id for i in from_file)

        t0 = time.perf_counter()
        chosen = select(list(result.items), area, START, END, max_cloud=40, dates=DATES)
        t_select = time.perf_counter() - t0
    ours = sorted({i.datetime.date() for i in chosen.items if i.datetime})
    available = sorted({i.datetime.date() for i in result.items if i.datetime})
    step = len(available) / DATES
    naive = [available[int(step * k + step / 2)] for k in range(DATES)]
    print(f"{N_PRODUCTS} products loaded; the search finds {len(result.items)} (AOI, 2024, cloud <= 40 %)")
    print(f"API search: {t_api:.2f} s in {result.pages} pages of 1000 ({result.cloud_filter} cloud filter)")
    print(
        f"baseline, static file read + in-process filter: {t_file:.2f} s -> API / static = {t_api / t_file:.2f}x"
    )
    print(f"select over {len(result.items)} products, {DATES} dates: {t_select:.2f} s")
    print(f"largest gap between chosen dates: eoshard {largest_gap(ours)} d, naive every-n-th date "
          f"{largest_gap(naive)} d (lower is better)")  # fmt: skip


if __name__ == "__main__":
    main()
