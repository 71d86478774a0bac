"""Model packages: safetensors weights + a STAC Item with the MLM extension + the training config. No pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eoshard.training.errors import PackageError
from eoshard.training.models import build_model

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
WEIGHTS = "model.safetensors"
ITEM = "item.json"
CONFIG = "training-config.json"


@dataclass(frozen=True)
class ModelPackage:
    """A loaded package: the model in eval mode and the facts predict needs from the MLM item."""

    model: nn.Module
    architecture: str
    bands: list[str]
    n_dates: int
    mean: list[float]
    std: list[float]
    classes: dict[int, str]
    scale: int
    item: dict[str, Any]


def export(
    weights: Path, config: dict[str, Any], stats: dict[str, Any], classes: dict[int, str], n_dates: int,
    patch_size: int, out: Path, name: str = "eoshard-model",
) -> Path:  # fmt: skip
    """Write ``out/`` with the weights, ``item.json`` (STAC + MLM) and the training config; return ``out``."""
    _check_safetensors(weights)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS).write_bytes(weights.read_bytes())
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    arch = config["architecture"]
    bands = stats["bands"]
    temporal = arch == "convgru"
    sr = arch == "sr4"
    shape = (
        [-1, n_dates, len(bands), patch_size, patch_size]
        if temporal
        else [-1, n_dates * len(bands), patch_size, patch_size]
    )
    dims = ["batch", "time", "channel", "height", "width"] if temporal else ["batch", "channel", "height", "width"]
    output: dict[str, Any] = {
        "name": "super-resolution x4" if sr else "classification",
        "tasks": ["super-resolution"] if sr else ["semantic-segmentation"],
        "result": {"shape": [-1, len(bands) if sr else len(classes) + 1, -1, -1], "dim_order": ["batch", "channel", "height", "width"], "data_type": "float32"},
        "classification:classes": [] if sr else [{"value": c, "name": n} for c, n in sorted(classes.items())],
        "post_processing_function": None,
    }  # fmt: skip
    item = {
        "type": "Feature", "stac_version": "1.1.0", "stac_extensions": [MLM_SCHEMA], "id": name,
        "geometry": None, "bbox": None, "links": [],
        "properties": {
            "datetime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mlm:name": name, "mlm:architecture": arch, "mlm:framework": "pytorch",
            "mlm:framework_version": torch.__version__.split("+")[0],
            "mlm:tasks": output["tasks"], "mlm:accelerator": "amd64", "mlm:accelerator_constrained": False,
            "mlm:input": [{
                "name": "bands" if not temporal else "timeseries", "bands": bands,
                "input": {"shape": shape, "dim_order": dims, "data_type": "float32"},
                "value_scaling": [{"type": "z-score", "mean": m, "stddev": s} for m, s in zip(stats["mean"], stats["std"], strict=True)],
                "pre_processing_function": None,
                "eoshard:n_dates": n_dates,
            }],
            "mlm:output": [output],
            "mlm:hyperparameters": config.get("model", {}),
        },
        "assets": {
            "weights": {"href": f"./{WEIGHTS}", "type": "application/octet-stream; application=safetensors",
                        "roles": ["mlm:model", "mlm:weights"], "mlm:artifact_type": "safetensors"},
            "training-config": {"href": f"./{CONFIG}", "type": "application/json", "roles": ["mlm:training-runtime"]},
        },
    }  # fmt: skip
    (out / ITEM).write_text(json.dumps(item, indent=2))
    return out


def _check_safetensors(path: Path) -> None:
    """Refuse anything but a safetensors file (8-byte header length + JSON header); name pickles as such."""
    with path.open("rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        header = f.read(size) if 0 < size < 100_000_000 else b""
    try:
        json.loads(header)
    except ValueError as err:
        if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05"):
            raise PackageError(
                f"{path} holds pickled weights (torch.save/pickle format) and eoshard never unpickles; convert "
                "them with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') and re-export"
            ) from err
        raise PackageError(
            f"{path} is not a safetensors file (its header is not JSON); export weights with safetensors"
        ) from err


def _inside(folder: Path, href: str) -> Path:
    """The file ``href`` names, which must lie inside the package ``folder`` (no URL, no absolute path, no ``..``)."""
    path = (folder / href).resolve()
    if "://" in href or not path.is_relative_to(folder.resolve()):
        raise PackageError(
            f"{folder / ITEM}: the weights href {href!r} points outside the package; a package names its files "
            "relative to its folder (./weights.safetensors): export it again with `eoshard-train export`"
        )
    return path


def load(folder: str | Path) -> ModelPackage:
    """Load a package written by :func:`export`; pickled weights are refused."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        item = json.loads((folder / ITEM).read_text())
        config = json.loads((folder / CONFIG).read_text())
    except FileNotFoundError as err:
        raise PackageError(f"{folder} is not a model package: {err.filename} is missing") from err
    weight_assets = [a for a in item["assets"].values() if "mlm:model" in a.get("roles", [])]
    if not weight_assets:
        raise PackageError(f"{folder / ITEM} has no asset with role mlm:model")
    weights = _inside(folder, str(weight_assets[0]["href"]))
    _check_safetensors(weights)
    props = item["properties"]
    inp = props["mlm:input"][0]
    arch = props["mlm:architecture"]
    classes = {c["value"]: c["name"] for c in props["mlm:output"][0]["classification:classes"]}
    bands, n_dates = inp["bands"], int(inp["eoshard:n_dates"])
    n_classes = props["mlm:output"][0]["result"]["shape"][1]
    channels = len(bands) if arch in ("convgru", "sr4") else len(bands) * n_dates
    model = build_model(arch, channels, n_classes, **config.get("model", {}))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    scaling = inp["value_scaling"]
    return ModelPackage(
        model, arch, bands, n_dates, [s["mean"] for s in scaling], [s["stddev"] for s in scaling], classes,
        4 if arch == "sr4" else 1, item,
    )  # fmt: skip
