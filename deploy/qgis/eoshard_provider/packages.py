"""Model packages as plain JSON (no torch, no QGIS): find them, read what the dialog needs, build the command."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackageInfo:
    folder: Path
    id: str
    title: str
    bands: list[str]
    n_dates: int
    task: str
    classes: dict[int, str]
    mask: str | None
    common_names: dict[str, str]  # band -> its common name, where the package records it

    def band_label(self, band: str) -> str:
        """``B03 (green)``: a band as the dialog shows it."""
        common = self.common_names.get(band)
        return f"{band} ({common})" if common and common != band else band


def read_package(folder: Path) -> PackageInfo:
    item = json.loads((folder / "item.json").read_text())
    props = item["properties"]
    spec, output = props["mlm:input"][0], props["mlm:output"][0]
    classes = {int(c["value"]): str(c["name"]) for c in output.get("classification:classes", [])}
    common = {str(b["name"]): str(b["eo:common_name"]) for b in props.get("bands", []) if b.get("eo:common_name")}
    return PackageInfo(
        folder, str(item["id"]), str(props.get("mlm:name", item["id"])), [str(b) for b in spec["bands"]],
        int(spec.get("eoshard:n_dates", 1)), str(props["mlm:tasks"][0]), classes, spec.get("eoshard:mask"), common,
    )  # fmt: skip


def find_packages(root: Path) -> list[PackageInfo]:
    """Every folder under ``root`` (itself included) holding an ``item.json`` with an MLM input."""
    found = []
    for item in sorted(root.rglob("item.json")) if root.is_dir() else []:
        try:
            found.append(read_package(item.parent))
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            continue  # a STAC item that is not a model package
    return found


def models_folder(setting: str | None) -> Path | None:
    folder = setting or os.environ.get("EOSHARD_MODELS")
    return Path(folder) if folder else None


def train_command() -> list[str]:
    """``EOSHARD_TRAIN`` (a command line) or ``eoshard-train`` on the PATH."""
    configured = os.environ.get("EOSHARD_TRAIN")
    if configured:
        return shlex.split(configured)
    found = shutil.which("eoshard-train")
    if found is None:
        raise FileNotFoundError(
            "eoshard-train was not found: install eoshard-training[geotiff] in a Python environment and set "
            "EOSHARD_TRAIN to its eoshard-train script (or put it on the PATH)"
        )
    return [found]


def predict_args(
    package: Path, source: str, output: str, band_index: list[int], mask: str | None, block: int, overlap: int,
    margin: int, probabilities: bool,
) -> list[str]:  # fmt: skip
    args = [*train_command(), "predict", str(package), source, output, "--block", str(block), "--overlap",
            str(overlap), "--margin", str(margin), "--band-index", *(str(i) for i in band_index)]  # fmt: skip
    if mask:
        args += ["--mask", mask]
    return args + (["--probabilities"] if probabilities else [])
