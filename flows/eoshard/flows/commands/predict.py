"""``eoshard predict``: apply a model package to an AOI and period straight from a catalog.

The geo side (this command) makes the model's input stack with the build's catalog and cube code and streams it
into a Zarr scene; the torch side (``eoshard-train predict``, the ``eoshard-training`` distribution) reads it block
by block and writes the COG. torch is never imported here: the training CLI runs in a child process, found as the
``eoshard.training`` module of this Python or as ``eoshard-train`` on the PATH.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from eoshard.flows.app import app, console, say, user_errors
from eoshard.flows.commands.build import progress_bar, progress_callback
from eoshard.flows.commands.select import parse_aoi, parse_period
from eoshard.flows.config import ConfigError
from eoshard.flows.errors import FlowsError
from eoshard.flows.words import counted


class TrainingMissingError(FlowsError, RuntimeError):
    """The torch side (``eoshard-training``) is not installed where this command runs."""


def training_command() -> list[str]:
    """How to start ``eoshard-train``: this Python's module when importable, else the script on the PATH."""
    if importlib.util.find_spec("eoshard.training") is not None:
        return [sys.executable, "-m", "eoshard.training.cli"]
    script = shutil.which("eoshard-train")
    if script is not None:
        return [script]
    raise TrainingMissingError(
        "eoshard predict runs the model with eoshard-train, which is not installed here (no module "
        "eoshard.training, no eoshard-train on the PATH): `pip install ./training` (add '[geotiff]' for COG "
        "output), or pass --scene-only and run `eoshard-train predict PACKAGE SCENE.zarr OUT.tif` where torch is"
    )


@app.command("predict")
def predict_command(
    package: Annotated[Path, typer.Argument(help="model package folder (item.json + model.safetensors)")],
    output: Annotated[Path, typer.Argument(help=".tif for a COG, .zarr for Zarr")],
    source: Annotated[str, typer.Option(help="STAC API root URL or a static catalog / ItemCollection file")],
    aoi: Annotated[str, typer.Option(help="vector file, or minx,miny,maxx,maxy (use --aoi=-1,...)")],
    start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="last day, YYYY-MM-DD")],
    collection: Annotated[str | None, typer.Option(help="only items of this collection")] = None,
    max_cloud: Annotated[float | None, typer.Option(help="highest cloud cover kept, percent")] = None,
    block: Annotated[int, typer.Option(help="tile size, pixels")] = 256,
    overlap: Annotated[int, typer.Option(help="overlap of neighbouring tiles, pixels")] = 64,
    margin: Annotated[int, typer.Option(help="tile border given zero weight (>= receptive radius)")] = 16,
    probabilities: Annotated[bool, typer.Option(help="write class probabilities instead of classes")] = False,
    mask: Annotated[
        str | None,
        typer.Option(help="band-math expression; true pixels become nodata, e.g. '(B03-B08)/(B03+B08) > 0'"),
    ] = None,
    device: Annotated[
        str, typer.Option(help="where the model runs: auto (a GPU when torch sees one), cpu, cuda:N")
    ] = "auto",
    batch_size: Annotated[
        int | None, typer.Option(help="tiles per forward pass (default 1 on the CPU, 8 on a GPU)", min=1)
    ] = None,
    scene: Annotated[Path | None, typer.Option(help="keep the model's input stack in this .zarr")] = None,
    scene_only: Annotated[bool, typer.Option(help="write the input stack (--scene) and stop")] = False,
) -> None:
    """Predict an AOI from a catalog: the package's bands and dates, stacked as the build does, blended tiles."""
    import geopandas as gpd

    from eoshard.flows.aoi import read_aoi
    from eoshard.flows.model_input import ModelInput, check_mask, plan_stack, write_stack

    with user_errors():
        if output.suffix.lower() not in (".tif", ".tiff", ".zarr"):
            raise ConfigError(
                f"the output {output} ends in {output.suffix or 'no suffix'}: give a .tif (a Cloud-Optimized GeoTIFF) "
                "or a .zarr path"
            )
        if not 0 <= 2 * margin <= overlap < block:  # eoshard-train's Tiling rule, told before the input is read
            raise ConfigError(
                f"tiling needs 0 <= 2*margin <= overlap < block, got block={block} overlap={overlap} "
                f"margin={margin}: give --block, --overlap and --margin that fit"
            )
        spec = ModelInput.read(package)
        if mask:
            check_mask(mask, spec)
        first, last = parse_period(start, end)
        area, area_crs = read_aoi(parse_aoi(aoi))
        area_4326 = gpd.GeoSeries([area], crs=area_crs).to_crs(4326).iloc[0]
        if scene_only and scene is None:
            raise ConfigError("--scene-only needs --scene PATH.zarr to write the input stack to")
        run = [] if scene_only else training_command()
        if run and device != "auto":  # a device that is not there is said before the stack is written
            checked = subprocess.run([*run, "device", device], capture_output=True, text=True, check=False)
            if checked.returncode != 0:
                raise ConfigError(f"--device {device}: {checked.stderr.strip().removeprefix('error: ')}")
        plan = plan_stack(
            spec, source, area, area_crs, area_4326, first, last, collection=collection, max_cloud=max_cloud
        )
        t, c, h, w = plan.stack.shape
        console.print(f"{counted(len(plan.products), 'product')}, dates {', '.join(d[:10] for d in plan.dates)}, "
                      f"input {t} x {c} x {h} x {w} in {plan.grid.crs}")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            with progress_bar() as progress:
                path = write_stack(
                    plan,
                    scene or Path(tmp) / "scene.zarr",
                    on_progress=progress_callback(progress, "reading the input"),
                )
            if scene_only:
                say(f"input stack written to {path}")
                return
            args = [*run, "predict", str(package), str(path), str(output), "--block", str(block),
                    "--overlap", str(overlap), "--margin", str(margin), "--device", device]  # fmt: skip
            args += ["--batch-size", str(batch_size)] if batch_size else []
            args += ["--probabilities"] * probabilities + (["--mask", mask] if mask else [])
            # its progress bar and its error go to this terminal; its output (the path written) is kept
            done = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            raise FlowsError(f"eoshard-train predict failed (exit {done.returncode}); its error is above")
        say(f"prediction written to {output}")
