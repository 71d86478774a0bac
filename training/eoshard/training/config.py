"""The training config: a frozen pydantic model read from YAML or JSON, written back beside checkpoints and packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eoshard.training.errors import ConfigError


class Augmentation(BaseModel):
    """Batch augmentation with kornia, on the training device, after the per-sample rot90/flip/transpose."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rotate: float = Field(0.0, ge=0, le=180, description="random rotation up to this many degrees (bilinear)")
    brightness: float = Field(0.0, ge=0, description="add a per-sample, per-band offset up to this (std units)")
    contrast: float = Field(0.0, ge=0, lt=1, description="multiply each sample by 1 +- up to this")
    noise: float = Field(0.0, ge=0, description="Gaussian noise of this standard deviation (std units)")
    p: float = Field(0.5, ge=0, le=1, description="probability of each transform")


class TrainConfig(BaseModel):
    """Everything ``eoshard-train fit`` needs; relative paths are relative to the config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str
    output: str
    format: Literal["lmdb", "zarr"] = "lmdb"
    bands: list[str] | None = None
    architecture: str = "unet"
    model: dict[str, Any] = Field(default_factory=dict)
    task: Literal["segmentation", "sr4"] = "segmentation"  # sr4: LR made from the patch by 4x4 averaging
    epochs: int = Field(5, ge=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    class_weights: Literal["auto"] | list[float] | None = "auto"
    dice_weight: float = Field(0.5, ge=0)
    ignore_background: bool = False
    ignore_layers: list[str] = Field(default_factory=lambda: ["double_partial", "double_full"])
    augment: bool = True
    augmentation: Augmentation = Field(default_factory=Augmentation)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    checkpoint_every: int = Field(50, ge=1)
    patience: int = Field(0, ge=0)  # early stopping after this many epochs without val improvement; 0 = off
    workers: int = Field(0, ge=0)
    device: str = "auto"  # auto: cuda when available (one per process under torchrun), else cpu
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"  # mixed precision on GPU only
    sr_l1: float = 1.0
    sr_l2: float = 0.0
    sr_adversarial: float = 0.0
    sr_gp: float = 10.0
    # a foundation model's published statistics (normalisation.py, e.g. "prithvi-eo-2"); None: the dataset's own
    normalisation: str | None = None

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "auto":
            raise ValueError(f"class_weights {value!r}: expected 'auto', a list of weights or null")
        return value

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        config = cls.from_dict(read_config(path, "training"))
        base = path.parent
        return config.model_copy(
            update={
                "dataset": str((base / config.dataset).resolve()),
                "output": str((base / config.output).resolve()),
            }
        )

    @classmethod
    def from_dict(cls, raw: Any) -> TrainConfig:
        if not isinstance(raw, dict):
            raise ConfigError(f"a training config is a mapping, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields are {sorted(cls.model_fields)}")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(f"invalid training config: {_explain(err)}") from err

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_config(path: Path, kind: str) -> Any:
    """The parsed text of a YAML (``.yaml``/``.yml``) or JSON config file; a missing, unreadable or malformed
    file is a ``ConfigError`` naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise ConfigError(f"config {path} does not exist: pass a YAML or JSON {kind} config") from err
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"config {path} cannot be read as text ({err}): pass a YAML or JSON {kind} config file"
        ) from err
    if path.suffix not in (".yaml", ".yml"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"config {path} is not valid JSON ({err}): fix it, or name a YAML file .yaml"
            ) from err
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None) or type(err).__name__
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config {path} is not valid YAML ({problem}{where}): fix the syntax") from err


def _explain(err: ValidationError) -> str:
    """One line per problem: the field, what was expected, what came; 'dataset' and 'output' are required."""
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "config"
        if e["type"] == "missing":
            parts.append(f"{where} is required ('dataset' and 'output' are required)")
        elif e["type"] == "literal_error" and e["loc"]:
            parts.append(f"{where} {e['input']!r} unknown: {e['msg'].lower()}")
        else:
            parts.append(f"{where}: {e['msg']} (got {e['input']!r})")
    return "; ".join(parts)
