"""The training config: a frozen dataclass read from YAML or JSON, written back beside checkpoints and packages."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eoshard.training.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``eoshard-train fit`` needs; relative paths are relative to the config file."""

    dataset: str
    output: str
    format: str = "lmdb"
    bands: list[str] | None = None
    architecture: str = "unet"
    model: dict[str, Any] = field(default_factory=dict)
    task: str = "segmentation"  # or "sr4": LR made from the patch by 4x4 averaging
    epochs: int = 5
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    class_weights: str | list[float] | None = "auto"
    dice_weight: float = 0.5
    ignore_background: bool = False
    ignore_layers: list[str] = field(default_factory=lambda: ["double_partial", "double_full"])
    augment: bool = True
    val_fraction: float = 0.2
    checkpoint_every: int = 50
    patience: int = 0  # early stopping after this many epochs without val improvement; 0 = off
    workers: int = 0
    sr_l1: float = 1.0
    sr_l2: float = 0.0
    sr_adversarial: float = 0.0
    sr_gp: float = 10.0
    # a foundation model's published statistics (normalisation.py, e.g. "prithvi-eo-2"); None: the dataset's own
    normalisation: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError as err:
            raise ConfigError(f"config {path} does not exist: pass a YAML or JSON training config") from err
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
        config = cls.from_dict(raw)
        base = path.parent
        return dataclasses.replace(
            config, dataset=str((base / config.dataset).resolve()), output=str((base / config.output).resolve())
        )

    @classmethod
    def from_dict(cls, raw: Any) -> TrainConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"a training config is a mapping, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields are {sorted(known)}")
        try:
            config = cls(**raw)
        except TypeError as err:
            raise ConfigError(f"config is incomplete: {err}; 'dataset' and 'output' are required") from err
        if config.format not in ("lmdb", "zarr"):
            raise ConfigError(f"format {config.format!r} unknown: expected 'lmdb' or 'zarr'")
        if config.task not in ("segmentation", "sr4"):
            raise ConfigError(f"task {config.task!r} unknown: expected 'segmentation' or 'sr4'")
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
