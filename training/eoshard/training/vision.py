"""Import torchvision (needed by timm and segmentation-models-pytorch) beside a CPU-only torch.

PyPI's Linux torchvision wheels link their C++ ops (``torchvision._C``) against CUDA torch libraries. Beside the
CPU torch wheel that library cannot load; torchvision then skips its ops, except two fake-kernel registrations
(``torchvision::nms``, ``torchvision::qnms``) which fail with "operator torchvision::nms does not exist", so
``import torchvision`` (and with it timm and smp) fails. When, and only when, ``_C`` cannot load, this module
declares those two operator schemas first: torchvision then imports, its models and transforms (pure Python)
work, and calling a detection op raises torchvision's own "Couldn't load custom C++ ops" error. With a matching
torchvision (a CUDA machine, a CPU build) nothing is declared.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: list[Any] = []  # the torch.library.Library must live as long as the process


def _ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # not installed: the import below names what is missing
    libs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, RuntimeError):
        return False
    return True


def guard_torchvision() -> None:
    """Make a later ``import torchvision`` (by timm, smp, torchmetrics, ...) work beside a CPU torch."""
    if not _LIBRARY and not _ops_load():
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for name, schema in _SCHEMAS.items():
            if not torch._C._dispatch_has_kernel(f"torchvision::{name}") and not _has_schema(name):
                lib.define(schema)
        _LIBRARY.append(lib)


def import_torchvision() -> ModuleType:
    """``torchvision``, made importable beside a CPU torch (see the module docstring)."""
    guard_torchvision()
    import torchvision

    return torchvision


def _has_schema(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True
