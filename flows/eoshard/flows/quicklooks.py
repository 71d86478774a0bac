"""Quicklook grids of samples: a true-colour (or first band) image beside its class labels, with a legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib as mpl
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from eoshard.pipeline.shards.layout import LabelLayout
from eoshard.pipeline.shards.reader import ShardedDataset, open_shards
from eoshard.pipeline.shards.samples import time_mask_of

mpl.use("Agg")
import matplotlib.pyplot as plt


def _rgb(sample: dict[str, np.ndarray], bands: list[str]) -> np.ndarray:
    names = [b for b in ("B04", "B03", "B02") if b in sample] if "B04" in sample else [bands[0]] * 3
    t = int(np.argmax(sample["valid_fraction"])) if len(sample["valid_fraction"]) else 0
    image = np.stack([sample[b][t].astype(np.float32) for b in names], axis=-1)
    lo, hi = np.percentile(image[image > 0], (2, 98)) if (image > 0).any() else (0.0, 1.0)
    return np.clip((image - lo) / max(hi - lo, 1.0), 0, 1)


_BACKGROUND_COLOUR = (0.86, 0.86, 0.86)  # light grey: the pixels no parcel claims recede behind the classes


class ClassColours:
    """One colour per class code of the dataset (grey for the background), the same in every panel."""

    def __init__(self, labels: dict[str, Any]) -> None:
        background = int(labels.get("background", 0))
        self.codes = np.array(LabelLayout({}, labels["classes"], labels["class_counts"], background).codes())
        palette = [
            mpl.colors.to_rgb(c) for c in mpl.color_sequences["tab10" if len(self.codes) <= 11 else "tab20"]
        ]
        others = iter(palette * (len(self.codes) // len(palette) + 1))
        self.colours = [_BACKGROUND_COLOUR if c == background else next(others) for c in self.codes]
        self.names = {
            int(c): labels["classes"].get(str(c), "background" if c == background else "") for c in self.codes
        }
        self.cmap = ListedColormap(self.colours)

    def indices(self, layer: np.ndarray) -> np.ndarray:
        """``layer``'s codes as positions in the palette (a code the counts do not know is drawn as the nearest)."""
        return np.searchsorted(self.codes, layer).clip(0, len(self.codes) - 1)

    def legend(self) -> list[Patch]:
        return [
            Patch(facecolor=colour, edgecolor="none", label=f"{code} {self.names[int(code)]}".rstrip())
            for code, colour in zip(self.codes, self.colours, strict=True)
        ]


def _sample(shards: ShardedDataset, row: Any) -> dict[str, np.ndarray]:
    """Index ``row``'s sample as LMDB holds it (each band's kept dates, their valid fractions, the label layers):
    from LMDB, or from the Zarr store where the dataset was built without LMDB."""
    if shards.layout.lmdb is not None:
        return shards.read_sample(str(row.key), str(row.lmdb_part))
    slot = int(row.zarr_index)
    kept = shards.read_slot("time_mask", slot)
    sample = {"valid_fraction": shards.read_slot("valid_fraction", slot)[kept]}
    masks = {"time_mask": kept}  # each sensor keeps dates of its own (format 1.1)
    for name, group in shards.layout.groups.items():
        which = time_mask_of(name)
        if which not in masks:
            masks[which] = shards.read_slot(which, slot)
        values = shards.read_slot(name, slot)[masks[which]]
        sample |= {band: values[:, i] for i, band in enumerate(group.bands)}
    if shards.layout.labels is not None:
        sample["class"] = shards.read_slot("class", slot)
    return sample


def spread_over_the_aoi(index: gpd.GeoDataFrame, count: int) -> gpd.GeoDataFrame:
    """``count`` samples spread over the AOI, in the index's order: the samples nearest the centres of ``count``
    equal runs of the samples along a Hilbert curve through their footprints. Evenly spaced in the index's order
    (row by row), a count close to a divisor of the row length picked one column of the AOI; the middles of the
    runs lay on the edges between the runs, often in one line."""
    if len(index) <= count:
        return index
    along = np.argsort(index.geometry.hilbert_distance().to_numpy(), kind="stable")
    centres = index.geometry.centroid
    xy = np.column_stack([centres.x.to_numpy(), centres.y.to_numpy()])
    picks = [
        run[np.argmin(((xy[run] - xy[run].mean(axis=0)) ** 2).sum(axis=1))] for run in np.array_split(along, count)
    ]
    return index.iloc[np.sort(picks)]


def draw_quicklooks(dataset: Path, manifest: dict[str, Any], out: Path, count: int) -> int:
    """Save a grid of ``count`` samples (image and labels) as a PNG; returns how many were drawn."""
    with open_shards(dataset) as shards:
        index = shards.index()
        rows = spread_over_the_aoi(index, count)
        with_labels = bool(manifest["labels"])
        colours = ClassColours(manifest["labels"]) if with_labels else None
        cols = 2 if with_labels else 1
        fig, axes = plt.subplots(
            len(rows), cols, figsize=(3 * cols, 3 * max(len(rows), 1) + 0.4), squeeze=False, layout="constrained"
        )
        for ax_row, row in zip(axes, rows.itertuples(), strict=False):
            sample = _sample(shards, row)
            ax_row[0].imshow(_rgb(sample, manifest["bands"]))
            ax_row[0].set_title(f"{row.key}\n{row.split}, {row.n_dates} dates", fontsize=7)
            if colours is not None:
                ax_row[1].imshow(
                    colours.indices(sample["class"]), cmap=colours.cmap, interpolation="nearest",
                    vmin=-0.5, vmax=len(colours.codes) - 0.5,
                )  # fmt: skip
                ax_row[1].set_title("class", fontsize=7)
            for ax in ax_row:
                ax.set_axis_off()
    if colours is not None:  # below the grid, as many columns as fit its width
        handles = colours.legend()
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=7, frameon=False
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return len(rows)
