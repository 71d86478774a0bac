"""Quicklook grids of samples: a true-colour (or first band) image beside its class labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np

from eoshard.pipeline.shards.reader import open_shards

mpl.use("Agg")
import matplotlib.pyplot as plt


def _rgb(sample: dict[str, np.ndarray], bands: list[str]) -> np.ndarray:
    names = [b for b in ("B04", "B03", "B02") if b in sample] if "B04" in sample else [bands[0]] * 3
    t = int(np.argmax(sample["valid_fraction"])) if len(sample["valid_fraction"]) else 0
    image = np.stack([sample[b][t].astype(np.float32) for b in names], axis=-1)
    lo, hi = np.percentile(image[image > 0], (2, 98)) if (image > 0).any() else (0.0, 1.0)
    return np.clip((image - lo) / max(hi - lo, 1.0), 0, 1)


def draw_quicklooks(dataset: Path, manifest: dict[str, Any], out: Path, count: int) -> int:
    """Save a grid of ``count`` samples (image and labels) as a PNG; returns how many were drawn."""
    with open_shards(dataset) as shards:
        index = shards.index()
        rows = (
            index.iloc[np.linspace(0, len(index) - 1, min(count, len(index))).astype(int)] if len(index) else index
        )
        with_labels = bool(manifest["labels"])
        cols = 2 if with_labels else 1
        fig, axes = plt.subplots(len(rows), cols, figsize=(3 * cols, 3 * max(len(rows), 1)), squeeze=False)
        for ax_row, row in zip(axes, rows.itertuples(), strict=False):
            sample = shards.read_sample(str(row.key), str(row.lmdb_part))
            ax_row[0].imshow(_rgb(sample, manifest["bands"]))
            ax_row[0].set_title(f"{row.key}\n{row.split}, {row.n_dates} dates", fontsize=7)
            if with_labels:
                ax_row[1].imshow(sample["class"], cmap="tab10", interpolation="nearest", vmin=0, vmax=9)
                ax_row[1].set_title("class", fontsize=7)
            for ax in ax_row:
                ax.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return len(rows)
