"""``eoshard inspect``: a summary table, the class histogram and a PNG grid of sample quicklooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from eoshard.flows.app import app, console, user_errors


@app.command()
def inspect(
    dataset: Annotated[Path, typer.Argument(help="dataset folder (holds dataset.json)")],
    out: Annotated[Path | None, typer.Option(help="PNG of quicklooks (default: DATASET/quicklooks.png)")] = None,
    samples: Annotated[int, typer.Option(help="samples in the quicklook grid")] = 8,
) -> None:
    """Summarise a dataset and draw quicklooks of some samples with their labels."""
    from eoshard.flows.commands.build import print_summary
    from eoshard.flows.verify import read_manifest

    with user_errors():
        manifest = read_manifest(dataset)
        from eoshard.flows.quicklooks import draw_quicklooks  # matplotlib, once the folder is a dataset

        print_summary(dataset, manifest)
        labels = manifest["labels"]
        if labels:
            table = Table(title="classes (pixels over all samples)")
            for column in ("code", "name", "pixels", "share"):
                table.add_column(column, justify="right" if column != "name" else "left")
            background = str(labels.get("background", 0))
            total = max(sum(labels["class_counts"].values()), 1)
            for code, count in labels["class_counts"].items():
                name = labels["classes"].get(code, "background" if code == background else "")
                table.add_row(code, name, f"{count:,}", f"{100 * count / total:.1f} %")
            console.print(table)
        target = out or dataset / "quicklooks.png"
        shown = draw_quicklooks(dataset, manifest, target, samples)
        console.print(f"quicklooks of {shown} samples: {target}")
