"""``eoshard-train``: fit, evaluate, export and predict."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eoshard.training.errors import TrainingError


def _fit(args: argparse.Namespace) -> None:
    from eoshard.training.config import TrainConfig
    from eoshard.training.fit import fit

    config = TrainConfig.load(args.config)
    with _resume_hint("fit", args.config, Path(config.output)):
        result = fit(config, resume=args.resume, overwrite=args.overwrite)
    print(
        json.dumps({"train_loss": result.train_loss, "val_loss": result.val_loss, "weights": str(result.weights)})
    )


@contextmanager
def _resume_hint(command: str, config: Path, out: Path) -> Iterator[None]:
    """Ctrl-C names the checkpoint to continue from."""
    from eoshard.training.runs import last_checkpoint

    try:
        yield
    except KeyboardInterrupt:
        last = last_checkpoint(out)
        hint = f"; continue with `eoshard-train {command} {config} --resume {last}`" if last else ""
        raise KeyboardInterrupt(f"{command} stopped{hint}") from None


def _run_dir(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        return json.loads((run / "config.json").read_text()), json.loads((run / "stats.json").read_text())
    except FileNotFoundError as err:
        raise TrainingError(f"{run} is not a fit output folder: {err.filename} is missing") from err


def _export(args: argparse.Namespace) -> None:
    from eoshard.training.bandmath import parse_mask
    from eoshard.training.manifest import Manifest
    from eoshard.training.package import export
    from eoshard.training.sr import sr_output_facts

    config, stats = _run_dir(args.run)
    manifest = Manifest.read(config["dataset"])
    common = manifest.common_names()
    if args.mask:
        parse_mask(args.mask, stats["bands"], common)  # as predict checks it
    weights = args.weights or args.run / "best.safetensors"
    facts = input_facts(manifest, args.mask)
    if config.get("hr_bands") is not None:  # a `fit-sr` run: one date in, the HR bands out
        export(
            weights, config, stats, {}, 1, manifest.patch_size, args.output, args.name, input_facts=facts,
            output_facts=sr_output_facts(manifest, config["hr_bands"]), common_names=common,
        )  # fmt: skip
    else:
        export(
            weights, config, stats, manifest.classes, len(manifest.dates), manifest.patch_size, args.output,
            args.name, n_classes=manifest.n_classes, background=manifest.background, input_facts=facts,
            common_names=common,
        )  # fmt: skip
    print(args.output)


def input_facts(manifest: Any, mask: str | None) -> dict[str, Any]:
    """What ``eoshard predict`` needs to rebuild the input: dates, grid resolution, reflectance, mask."""
    groups = manifest.raw.get("groups") or {}
    floats = any(g.get("dtype") == "float32" for name, g in groups.items() if name != "indices")
    facts: dict[str, Any] = {"eoshard:dates": manifest.dates, "eoshard:reflectance": floats}
    if manifest.raw.get("resolution") is not None:
        facts["eoshard:resolution"] = float(manifest.raw["resolution"])
    return facts | ({"eoshard:mask": mask} if mask else {})


def _evaluate(args: argparse.Namespace) -> None:
    from eoshard.training.data import Stats, make_dataset, split_indices
    from eoshard.training.evaluate import evaluate
    from eoshard.training.manifest import Manifest
    from eoshard.training.package import load

    package = load(args.package)
    manifest = Manifest.read(args.dataset)
    import numpy as np

    stats = Stats(np.array(package.mean, "f4"), np.array(package.std, "f4"))
    indices = split_indices(manifest, args.split)
    if not indices:
        raise TrainingError(f"split {args.split!r} of {args.dataset} holds no samples: evaluate another split")
    data = make_dataset(manifest, args.format, bands=package.bands, normalise=stats, indices=indices)
    n_classes = int(package.item["properties"]["mlm:output"][0]["result"]["shape"][1])
    report = evaluate(
        package.model, package.architecture, data, n_classes, args.output, manifest.classes, manifest.background
    )
    print(json.dumps({"overall_accuracy": report["overall_accuracy"], "output": str(args.output)}))


def _fit_sr(args: argparse.Namespace) -> None:
    from eoshard.training.sr import SRConfig
    from eoshard.training.sr_fit import fit_pairs

    config = SRConfig.load(args.config)
    with _resume_hint("fit-sr", args.config, Path(config.output)):
        package = fit_pairs(config, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps({"package": str(package)}))


def _evaluate_sr(args: argparse.Namespace) -> None:
    from eoshard.training.sr import evaluate_pairs

    print(json.dumps(evaluate_pairs(args.package, args.dataset, args.split)))


def _predict(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from eoshard.training.package import load
    from eoshard.training.predict import Tiling
    from eoshard.training.scene import predict

    tiling = Tiling(args.block, args.overlap, args.margin)
    package = load(args.package)
    console = Console(stderr=True)  # stdout: the output's path
    with Progress(transient=True, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("predicting tiles", total=None)
        predict(
            package, args.input, args.output, tiling, args.probabilities, args.band_index, args.pad, args.mask,
            on_tile=lambda done, total: progress.update(task, completed=done, total=total), device=args.device,
            batch_size=args.batch_size,
        )  # fmt: skip
    print(args.output)


def _device(args: argparse.Namespace) -> None:
    from eoshard.training.distributed import pick_device

    print(pick_device(args.device))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eoshard-train", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="train a model from a YAML/JSON config")
    f.add_argument("config", type=Path)
    f.add_argument("--resume", type=Path, help="checkpoint to continue from (checkpoints/last.pt)")
    f.add_argument(
        "--overwrite", action="store_true", help="start over in an output folder that already holds a run"
    )
    f.set_defaults(func=_fit)
    e = sub.add_parser("export", help="package a fit output folder: safetensors + STAC MLM item + config")
    e.add_argument("run", type=Path)
    e.add_argument("output", type=Path)
    e.add_argument("--weights", type=Path)
    e.add_argument("--name", default="eoshard-model")
    e.add_argument(
        "--mask", help="band-math mask predict applies by default, e.g. '(B03 - B08) / (B03 + B08) > 0'"
    )
    e.set_defaults(func=_export)
    v = sub.add_parser("evaluate", help="metrics report (JSON) and plots (PNG) of a package on a dataset split")
    v.add_argument("package", type=Path)
    v.add_argument("dataset", type=Path)
    v.add_argument("output", type=Path)
    v.add_argument("--split", default="val")
    v.add_argument("--format", default="lmdb", choices=["lmdb", "zarr"])
    v.set_defaults(func=_evaluate)
    s = sub.add_parser("fit-sr", help="super-resolution on real pairs (the dataset's hr layers); writes a package")
    s.add_argument("config", type=Path)
    s.add_argument("--resume", type=Path, help="checkpoint to continue from (checkpoints/last.pt)")
    s.add_argument(
        "--overwrite", action="store_true", help="start over in an output folder that already holds a run"
    )
    s.set_defaults(func=_fit_sr)
    q = sub.add_parser(
        "evaluate-sr", help="PSNR/SSIM of an SR package and of bicubic upsampling on held-back pairs"
    )
    q.add_argument("package", type=Path)
    q.add_argument("dataset", type=Path)
    q.add_argument("--split", default="val")
    q.set_defaults(func=_evaluate_sr)
    r = sub.add_parser("predict", help="apply a package to a GeoTIFF/COG or Zarr scene")
    r.add_argument("package", type=Path)
    r.add_argument("input", type=Path)
    r.add_argument("output", type=Path, help=".tif for a COG, .zarr for Zarr")
    r.add_argument("--block", type=int, default=256)
    r.add_argument("--overlap", type=int, default=64)
    r.add_argument("--margin", type=int, default=16, help="tile border given zero weight (>= receptive radius)")
    r.add_argument(
        "--probabilities", action="store_true", help="write class probabilities instead of the class map"
    )
    r.add_argument("--band-index", type=int, nargs="+", help="1-based input bands instead of names")
    r.add_argument("--pad", default="edge", help="numpy.pad mode beyond the scene edges")
    r.add_argument("--mask", help="band-math expression over band names; true pixels become nodata")
    r.add_argument("--device", default="auto", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N")
    r.add_argument("--batch-size", type=int, help="tiles per forward pass (default 1 on the CPU, 8 on a GPU)")
    r.set_defaults(func=_predict)
    d = sub.add_parser("device", help="the torch device a --device value gives here (an error if there is none)")
    d.add_argument("device", nargs="?", default="auto")
    d.set_defaults(func=_device)
    return p


def _warning_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # one line each, as errors are (restored for a caller in the process)
            warnings.showwarning = _warning_line
            args.func(args)
    except TrainingError as err:
        print(f"error: {message(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C: one line, the shell's exit status for SIGINT
        print(f"interrupted{f': {err}' if str(err) else ''}", file=sys.stderr)
        return 130
    return 0


def message(err: BaseException) -> str:
    """The error's message; for an error re-raised from a DataLoader worker (whose text torch fills with the
    worker's traceback), only the original message."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    name = f"{type(err).__module__}.{type(err).__qualname__}: "
    return last.removeprefix(name)


if __name__ == "__main__":
    sys.exit(main())
