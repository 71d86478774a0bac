"""Small helpers shared by the training tests: a packaged FCN with random weights, peaks measured in a fresh
interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import torch
from safetensors.torch import save_file

from eoshard.training.models import build_model
from eoshard.training.package import export, load

BANDS = ["B02", "B03", "B04", "B08"]
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir"}  # as band_metadata says


def random_package(tmp: Path, architecture: str = "fcn", n_dates: int = 1, model: dict | None = None):
    tmp.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    options = model if model is not None else {"width": 8, "layers": 2}
    channels = len(BANDS) if architecture == "sr4" else len(BANDS) * n_dates
    net = build_model(architecture, channels, 7, **options)
    weights = tmp / "w.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    stats = {"bands": BANDS, "mean": [1000.0, 1100.0, 1200.0, 2000.0], "std": [300.0, 310.0, 320.0, 500.0]}
    config = {"architecture": architecture, "model": options, "dataset": "-", "output": "-"}
    classes = {i: f"c{i}" for i in range(1, 7)}
    out = export(weights, config, stats, classes, n_dates, 32, tmp / "pkg", common_names=COMMON)
    return load(out)


ROOT = Path(__file__).resolve().parents[2]


def peak_in_fresh_interpreter(module: str, function: str, *args: object) -> int:
    """``module.function(*args)`` (an integer: a peak in bytes, a count of page faults) run in a new Python process
    from the repository root.

    tracemalloc counts every thread of its process: a fresh one keeps threads and caches left by other tests in the
    pytest process out of the peak."""
    code = f"import json, sys; from {module} import {function} as f; print(f(*json.loads(sys.argv[1])))"
    run = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return int(run.stdout.split()[-1])


HR = ["red", "green", "blue"]


def fake_dataset(folder: Path, formats: dict | None = None) -> Path:
    """A ``dataset.json`` (format 0.x: no index, no shards) with statistics for :data:`BANDS` and the HR bands,
    two dates and classes 1..6: enough for everything that reads only the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = {b: {"mean": 1000.0 + i, "std": 300.0 + i, "max": 4000.0} for i, b in enumerate(BANDS)}
    stats |= {f"hr_{b}": {"mean": 80.0 + i, "std": 20.0 + i, "max": 255.0} for i, b in enumerate(HR)}
    raw = {
        "format_version": "0.3", "keys": [f"s{i:02d}" for i in range(20)], "dates": ["2024-05-01", "2024-06-01"],
        "groups": {"s2_10m": {"bands": BANDS, "dtype": "uint16"}}, "patch_size": 32, "statistics": stats,
        "labels": {"layer": "class", "classes": {str(i): f"c{i}" for i in range(1, 7)}},
        "formats": formats or {"zarr": {"path": "data.zarr"}, "lmdb": {"path": "data.lmdb"}},
        "band_metadata": {b: {"common_name": c} for b, c in COMMON.items()},
    }  # fmt: skip
    (folder / "dataset.json").write_text(json.dumps(raw))
    return folder


def fake_run(tmp: Path, sr: bool = False) -> Path:
    """A finished ``fit`` run folder (``fit-sr`` with ``sr``) over :func:`fake_dataset`, with random weights."""
    run = tmp / "run"
    run.mkdir(parents=True)
    dataset = fake_dataset(tmp / "dataset")
    torch.manual_seed(3)
    net = build_model("sr4", 3, 0, width=8, blocks=1) if sr else build_model("fcn", 8, 7, width=8, layers=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(run / "best.safetensors"))
    bands = ["B04", "B03", "B02"] if sr else BANDS
    config: dict = {"architecture": "sr4" if sr else "fcn", "dataset": str(dataset), "output": str(run)}
    config |= (
        {"bands": bands, "hr_bands": HR, "model": {"width": 8, "blocks": 1}}
        if sr
        else {"model": {"width": 8, "layers": 2}}
    )
    stats = {"bands": bands, "mean": [1000.0] * len(bands), "std": [300.0] * len(bands)}
    (run / "config.json").write_text(json.dumps(config))
    (run / "stats.json").write_text(json.dumps(stats))
    return run


def raising(error: BaseException) -> Callable[..., NoReturn]:
    """A stand-in for a model step or forward pass that fails with ``error`` (an out-of-memory, say)."""

    def fail(*args: object, **kwargs: object) -> NoReturn:
        raise error

    return fail
