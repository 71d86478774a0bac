"""Small helpers shared by the training tests: a packaged FCN with random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from eoshard.training.models import build_model
from eoshard.training.package import export, load

BANDS = ["B02", "B03", "B04", "B08"]


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
    out = export(weights, config, stats, classes, n_dates, 32, tmp / "pkg")
    return load(out)
