"""Class balance per split: the labelled pixels of each class code in train, val and test, counted from the Zarr
store a shard at a time, and drawn as grouped bars."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from eoshard.flows.quicklooks import ClassColours  # sets matplotlib's Agg backend
from eoshard.pipeline.shards.xarray_view import open_dataset

SPLIT_ORDER = ("train", "val", "test")
_SPLIT_GREYS = ("0.2", "0.5", "0.75", "0.9")  # the classes keep the colours (on their names); the splits are greys


def split_class_counts(dataset: Path) -> dict[str, Counter[int]]:
    """Pixels per class code of each split's kept samples (memory: one Zarr shard's class layer at a time)."""
    ds = open_dataset(dataset)
    layer, splits = ds["class"], ds["split"].values
    counts: dict[str, Counter[int]] = {}
    start = 0
    for size in layer.chunks[0] if layer.chunks else (layer.sizes["sample"],):
        block, in_block = layer.isel(sample=slice(start, start + size)).values, splits[start : start + size]
        for split in np.unique(in_block):
            codes, n = np.unique(block[in_block == split], return_counts=True)
            counts.setdefault(str(split), Counter()).update(dict(zip(codes.tolist(), n.tolist(), strict=True)))
        start += size
    return dict(sorted(counts.items(), key=lambda kv: (_split_rank(kv[0]), kv[0])))


def _split_rank(split: str) -> int:
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)


def shares(counts: Counter[int]) -> dict[int, float]:
    """Each code's percentage of the split's pixels."""
    total = max(sum(counts.values()), 1)
    return {code: 100 * n / total for code, n in counts.items()}


def draw_class_histogram(colours: ClassColours, counts: dict[str, Counter[int]], out: Path) -> None:
    """Grouped horizontal bars: for each class code (named), its share of each split's pixels."""
    codes = [int(c) for c in colours.codes]
    height = 0.8 / max(len(counts), 1)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * len(codes) * max(len(counts), 1) ** 0.5), layout="constrained")
    for i, (split, split_counts) in enumerate(counts.items()):
        by_code = shares(split_counts)
        ys = np.arange(len(codes)) + (i - (len(counts) - 1) / 2) * height
        ax.barh(
            ys,
            [by_code.get(c, 0.0) for c in codes],
            height=height,
            color=_SPLIT_GREYS[min(i, 3)],
            label=f"{split} ({sum(split_counts.values()):,} px)",
        )
    ax.set_yticks(range(len(codes)), [f"{c} {colours.names[c]}".rstrip() for c in codes])
    for tick, colour in zip(ax.get_yticklabels(), colours.colours, strict=True):
        tick.set_bbox({"facecolor": colour, "edgecolor": "none", "alpha": 0.35, "pad": 1})
    ax.invert_yaxis()
    ax.set_xlabel("share of the split's labelled pixels (%)")
    ax.set_title("classes per split", fontsize=10)
    fig.legend(loc="outside lower center", ncols=len(counts), fontsize=8, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
