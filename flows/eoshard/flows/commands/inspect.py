"""``eoshard inspect``: a summary table, the class histogram and a PNG grid of sample quicklooks."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from eoshard.flows.app import app, console, say, user_errors
from eoshard.flows.errors import FlowsError
from eoshard.flows.figure_files import figure_path
from eoshard.flows.words import counted

if TYPE_CHECKING:
    from eoshard.flows.quicklooks import ClassColours


@app.command()
def inspect(
    dataset: Annotated[Path, typer.Argument(help="dataset folder (holds dataset.json)")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="PNG of quicklooks (default: DATASET/quicklooks.png); the class chart goes beside it, as "
            "OUT's name with -classes (default: DATASET/classes.png)"
        ),
    ] = None,
    samples: Annotated[
        # one row each: 64 make a PNG 15,000 px tall, and all of a dataset's took minutes
        int, typer.Option(min=1, max=64, help="samples in the quicklook grid, one row each")
    ] = 8,
) -> None:
    """Summarise a dataset and draw quicklooks of some samples with their labels."""
    from eoshard.flows.commands.build import print_summary
    from eoshard.flows.verify import read_manifest

    with user_errors():
        if out is not None:
            out = figure_path(out, "--out")
        manifest = read_manifest(dataset)
        if out is None and not os.access(dataset, os.W_OK):
            raise FlowsError(
                f"{dataset} cannot be written to (read-only), and inspect draws its PNGs into the dataset by "
                "default: give --out PNG (a path you can write to)"
            )
        from eoshard.flows.quicklooks import ClassColours, draw_quicklooks  # matplotlib, once it is a dataset

        print_summary(dataset, manifest)
        target = out or dataset / "quicklooks.png"
        chart = dataset / "classes.png" if out is None else out.with_name(f"{out.stem}-classes{out.suffix}")
        if manifest["labels"]:
            _classes(dataset, manifest, ClassColours(manifest["labels"]), chart)
        shown = draw_quicklooks(dataset, manifest, target, samples)
        say(f"quicklooks of {counted(shown, 'sample')}: {target}")


def _classes(dataset: Path, manifest: dict[str, Any], colours: ClassColours, png: Path) -> None:
    """The class table (all samples, and each split's share where the dataset has Zarr) and its bar chart."""
    from eoshard.flows.class_histogram import draw_class_histogram, shares, split_class_counts

    labels = manifest["labels"]
    per_split = {}
    if "zarr" in manifest["formats"]:
        verify = f"`eoshard verify {escape(str(dataset))}` tells what is damaged"
        try:
            per_split = split_class_counts(dataset)
        except (OSError, ValueError, KeyError, RuntimeError) as err:  # inspect still shows what it can read
            problem = f"could not count the classes per split from the Zarr store ({type(err).__name__}: {err})"
            console.print(f"[yellow]warning:[/] {escape(problem[:400])}; {verify}", soft_wrap=True)
        # a shard rewritten with other labels reads fine (open_dataset refuses a missing one): check the sum
        if per_split and dict(sum(per_split.values(), Counter[int]())) != {
            int(k): v for k, v in labels["class_counts"].items() if v
        }:
            console.print(
                "[yellow]warning:[/] the Zarr store's class layer does not add up to the class counts of "
                f"dataset.json (a shard file was changed), so the shares per split are left out; {verify}",
                soft_wrap=True,
            )
            per_split = {}
    title = "classes (pixels over all samples" + ("; share of each split's pixels)" if per_split else ")")
    table = Table(title=title)
    for column in ("code", "name", "pixels", "share", *per_split):
        table.add_column(column, justify="right" if column != "name" else "left")
    total = max(sum(labels["class_counts"].values()), 1)
    split_shares = {split: shares(counts) for split, counts in per_split.items()}
    for code, count in labels["class_counts"].items():
        in_splits = [f"{split_shares[s].get(int(code), 0.0):.1f} %" for s in per_split]
        table.add_row(code, colours.names[int(code)], f"{count:,}", f"{100 * count / total:.1f} %", *in_splits)
    console.print(table)
    if per_split:
        draw_class_histogram(colours, per_split, png)
        say(f"classes per split: {png}")
