"""Model packages: safetensors weights + a STAC Item with the MLM extension + the training config. No pickle."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from eoshard.training.errors import PackageError
from eoshard.training.models import TEMPORAL, build_model, in_channels

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.6.0/schema.json"  # as stac-model 0.7 writes
CLASSIFICATION_SCHEMA = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
EO_SCHEMA = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"  # eo:common_name in STAC 1.1 bands
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
    out_bands: list[str] | None = None  # super-resolution on real pairs: the HR bands it writes
    out_mean: list[float] | None = None  # and their z-score (the output is de-normalised with these)
    out_std: list[float] | None = None
    common_names: dict[str, str] = field(default_factory=dict)  # input band -> its common name, where recorded


def export(
    weights: Path, config: dict[str, Any], stats: dict[str, Any], classes: dict[int, str], n_dates: int,
    patch_size: int, out: Path, name: str = "eoshard-model", n_classes: int | None = None, background: int = 0,
    input_facts: dict[str, Any] | None = None, output_facts: dict[str, Any] | None = None,
    common_names: dict[str, str] | None = None,
) -> Path:  # fmt: skip
    """Write ``out/`` with the weights, ``item.json`` (STAC + MLM, written through stac-model) and the training
    config; return ``out``. ``n_classes`` (default: highest class code + 1) must be the model's output channels.

    ``input_facts`` go into ``mlm:input`` beside ``eoshard:n_dates``: ``eoshard:dates`` (the dataset's dates),
    ``eoshard:resolution`` (metres), ``eoshard:reflectance`` (float reflectance input) and ``eoshard:mask`` (a
    band-math mask applied by predict), so ``eoshard predict`` can make the input from a catalog. ``output_facts``
    go into ``mlm:output`` (super-resolution on real pairs: ``eoshard:bands`` and ``eoshard:value_scaling`` of the
    HR bands). ``common_names`` (input band -> common name, the dataset's ``band_metadata``) go into the Item's
    ``bands`` (``eo:common_name``): masks and GeoTIFF band descriptions may then name the bands by them.
    """
    _check_safetensors(weights)
    arch = config["architecture"]
    sr = arch == "sr4"
    if sr:  # x4 of the input bands, or of the paired HR bands (real pairs: ``output_facts``)
        n_out = len((output_facts or {}).get("eoshard:bands", stats["bands"]))
    else:
        n_out = n_classes or max([background, *classes]) + 1
    _check_outputs(weights, config, len(stats["bands"]), n_dates, n_out)
    item = mlm_item(
        config, stats, classes, n_dates, patch_size, name, n_out, background, input_facts, output_facts,
        common_names,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS).write_bytes(weights.read_bytes())
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    (out / ITEM).write_text(json.dumps(item, indent=2))
    return out


def _rebuilt(config: dict[str, Any]) -> dict[str, Any]:
    """The model options a package rebuilds with: the training's, less its starting ``weights`` (the package's
    own weights replace them all, and the pretrained file need not travel with the package)."""
    return {k: v for k, v in config.get("model", {}).items() if k != "weights"}


def _check_outputs(weights: Path, config: dict[str, Any], n_bands: int, n_dates: int, n_out: int) -> None:
    """The weights must fit the architecture with ``n_out`` output channels (the class list of the item)."""
    arch = config["architecture"]
    model = build_model(arch, in_channels(arch, n_bands, n_dates), n_out, **_rebuilt(config))
    try:
        model.load_state_dict(read_weights(weights))
    except RuntimeError as err:
        raise PackageError(
            f"{weights} does not fit {arch!r} with {n_bands} bands x {n_dates} dates in and {n_out} channels out "
            f"(the class list of the item): {str(err).splitlines()[-1].strip()}; export the weights of this run"
        ) from err


def mlm_item(
    config: dict[str, Any], stats: dict[str, Any], classes: dict[int, str], n_dates: int, patch_size: int,
    name: str, n_out: int, background: int = 0, input_facts: dict[str, Any] | None = None,
    output_facts: dict[str, Any] | None = None, common_names: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The STAC Item of a package. The MLM fields are built and validated by stac-model (extra ``mlm``) when it is
    installed, else written as the same JSON (tested equal); the output's ``classification:classes``
    (classification extension) lists exactly the model's ``n_out`` channels, the background named as such."""
    arch, bands = config["architecture"], stats["bands"]
    temporal, sr = arch in TEMPORAL, arch == "sr4"
    size = [patch_size, patch_size]
    names = [classes.get(c, "background" if c == background else f"class {c}") for c in range(n_out)]
    task = "super-resolution" if sr else "semantic-segmentation"
    dims = ["batch", "channel", "height", "width"]
    props: dict[str, Any] = {
        "mlm:framework": "pytorch", "mlm:framework_version": torch.__version__.split("+")[0],
        "mlm:accelerator": "amd64", "mlm:accelerator_constrained": False, "mlm:name": name,
        "mlm:architecture": arch, "mlm:tasks": [task],
        "mlm:input": [{
            "bands": bands, "variables": [], "name": "timeseries" if temporal else "bands",
            "input": {
                "shape": [-1, n_dates, len(bands), *size] if temporal else [-1, in_channels(arch, len(bands), n_dates), *size],
                "dim_order": ["batch", "time", "channel", "height", "width"] if temporal else dims,
                "data_type": "float32",
            },
            "value_scaling": [{"type": "z-score", "mean": m, "stddev": s} for m, s in zip(stats["mean"], stats["std"], strict=True)],
            "pre_processing_function": None,
        }],
        "mlm:output": [{
            "bands": [], "variables": [], "name": "super-resolution x4" if sr else "classification", "tasks": [task],
            "result": {"shape": [-1, n_out, -1, -1], "dim_order": dims, "data_type": "float32"},
            **({} if sr else {"classification:classes": [{"value": c, "name": n, "description": n} for c, n in enumerate(names)]}),
            "post_processing_function": None,
        }],
        **({"mlm:hyperparameters": config["model"]} if config.get("model") else {}),
        "mlm:pretrained": bool(config.get("model", {}).get("weights")),
    }  # fmt: skip
    extensions = [MLM_SCHEMA]
    with contextlib.suppress(ImportError):  # without stac-model (the base install): the same JSON, directly
        extensions, props = _through_stac_model(props)
    props["mlm:input"][0]["eoshard:n_dates"] = n_dates
    props["mlm:input"][0].update(input_facts or {})
    props["mlm:output"][0].update(output_facts or {})
    common = {b: c for b, c in (common_names or {}).items() if b in bands and c}
    if common:  # STAC 1.1 band metadata of the input bands
        props["bands"] = [{"name": b, **({"eo:common_name": common[b]} if b in common else {})} for b in bands]
    props["datetime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Feature", "stac_version": "1.1.0",
        "stac_extensions": extensions + ([] if sr else [CLASSIFICATION_SCHEMA]) + ([EO_SCHEMA] if common else []),
        "id": name, "geometry": None, "properties": props, "links": [],
        "assets": {
            "weights": {"href": f"./{WEIGHTS}", "type": "application/octet-stream; application=safetensors",
                        "mlm:artifact_type": "safetensors", "roles": ["mlm:model", "mlm:weights"]},
            "training-config": {"href": f"./{CONFIG}", "type": "application/json", "roles": ["mlm:training-runtime"]},
        },
    }  # fmt: skip


def _through_stac_model(props: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The MLM fields parsed by stac-model's pydantic models (an error names the field) and serialised by it, as
    its ``MLModelExtension.apply`` does (without pystac, which training does not import)."""
    from pydantic import ValidationError
    from stac_model.schema import SCHEMA_URI, MLModelProperties

    try:
        properties = MLModelProperties.model_validate({k.removeprefix("mlm:"): v for k, v in props.items()})
    except ValidationError as err:
        raise PackageError(f"the model package's MLM fields are not valid for stac-model: {err}") from err
    written = json.loads(properties.model_dump_json(by_alias=True))
    return [SCHEMA_URI], {k: v for k, v in written.items() if v is not None}


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or damaged one is a ``PackageError``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise PackageError(f"{path} is damaged ({err}): copy or export the weights again") from err


def _check_safetensors(path: Path) -> None:
    """Refuse anything but a safetensors file (8-byte header length + JSON header); name pickles as such."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else 0
            header = f.read(size) if 0 < size < 100_000_000 else b""
    except FileNotFoundError as err:
        raise PackageError(
            f"the weights file {path} does not exist: pass a safetensors file, or export the package again"
        ) from err
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


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise PackageError(f"{folder} is not a model package: {err.filename} is missing") from err
    except (OSError, ValueError) as err:  # a folder, unreadable, truncated, not JSON
        raise PackageError(
            f"{path} is not valid JSON ({err}): export the package again with `eoshard-train export`"
        ) from err
    if not isinstance(value, dict):
        raise PackageError(f"{path} holds a {type(value).__name__}, not a JSON object: export the package again")
    return value


Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]  # an int or a float, finite; not a bool
Spread = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]


class _Facts(BaseModel):
    """What ``load`` needs from the MLM item, each as it must be (a z-score per band, positive spreads)."""

    model_config = ConfigDict(strict=True, frozen=True)

    weights: str | None = Field(min_length=1)  # the href of the first asset with role mlm:model (None: none)
    arch: str
    bands: list[str] = Field(min_length=1)
    n_dates: int = Field(ge=1)
    n_classes: int = Field(ge=1)
    classes: dict[int, str]
    mean: list[Number]
    std: list[Spread]
    out_bands: list[str] | None
    out_mean: list[Number] | None
    out_std: list[Spread] | None
    common_names: dict[str, str]

    @model_validator(mode="after")
    def _one_per_band(self) -> _Facts:
        out_bands = self.out_bands if self.out_bands is not None else self.bands
        for name, values, bands in (("mean", self.mean, self.bands), ("std", self.std, self.bands),
                                    ("out_mean", self.out_mean, out_bands), ("out_std", self.out_std, out_bands)):  # fmt: skip
            if values is not None and len(values) != len(bands):
                raise ValueError(
                    f"{_WHERE[name].split('[i]')[0]} has {len(values)} entries for {len(bands)} bands"
                )
        return self


# where each fact is in the item, for the messages ("[i]": the entry)
_WHERE = {
    "weights": "assets.<mlm:model>.href", "arch": "properties.mlm:architecture", "bands": "mlm:input[0].bands",
    "n_dates": "mlm:input[0].eoshard:n_dates", "n_classes": "mlm:output[0].result.shape[1]",
    "classes": "mlm:output[0].classification:classes", "mean": "mlm:input[0].value_scaling[i].mean",
    "std": "mlm:input[0].value_scaling[i].stddev", "out_bands": "mlm:output[0].eoshard:bands",
    "out_mean": "mlm:output[0].eoshard:value_scaling[i].mean",
    "out_std": "mlm:output[0].eoshard:value_scaling[i].stddev", "common_names": "properties.bands[i].eo:common_name",
}  # fmt: skip


def _facts(folder: Path, item: dict[str, Any]) -> dict[str, Any]:
    """What ``load`` needs from the MLM item; a missing or malformed field is a ``PackageError`` naming it."""
    try:
        props = item["properties"]
        inp, output = props["mlm:input"][0], props["mlm:output"][0]
        weight_assets = [a for a in item["assets"].values() if "mlm:model" in a.get("roles", [])]
        scaling, out_scaling = inp["value_scaling"], output.get("eoshard:value_scaling")
        raw = {
            "weights": weight_assets[0].get("href", "") if weight_assets else None,
            "arch": props["mlm:architecture"], "bands": inp["bands"],
            "n_dates": inp["eoshard:n_dates"], "n_classes": output["result"]["shape"][1],
            "classes": {c["value"]: c["name"] for c in output.get("classification:classes", [])},
            "mean": [s["mean"] for s in scaling], "std": [s["stddev"] for s in scaling],
            "out_bands": output.get("eoshard:bands"),
            "out_mean": [s["mean"] for s in out_scaling] if out_scaling else None,
            "out_std": [s["stddev"] for s in out_scaling] if out_scaling else None,
            "common_names": {b["name"]: b["eo:common_name"] for b in props.get("bands", []) if b.get("eo:common_name")},
        }  # fmt: skip
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise PackageError(
            f"{folder / ITEM} lacks or misstates a field ({type(err).__name__} {err}): expected the MLM item `eoshard-train "
            "export` writes (mlm:architecture, mlm:input with bands, eoshard:n_dates and value_scaling, mlm:output "
            "with result.shape); export the package again"
        ) from err
    try:
        return _Facts.model_validate(raw).model_dump()
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        msg = first["msg"].removeprefix("Value error, ")
        if loc:  # a field: where it is in the item, what it says and what came
            where = _WHERE.get(loc[0], loc[0])
            where = where.replace("[i]", f"[{loc[1]}]") if len(loc) > 1 and "[i]" in where else where
            msg = f"{where}: {msg}, got {first['input']!r}"
        raise PackageError(
            f"{folder / ITEM} misstates {msg}; expected the MLM item `eoshard-train export` writes; export the "
            "package again"
        ) from None


def load(folder: str | Path) -> ModelPackage:
    """Load a package written by :func:`export`; pickled weights are refused."""
    folder = Path(folder)
    item, config = _read_json(folder, ITEM), _read_json(folder, CONFIG)
    facts = _facts(folder, item)
    if facts["weights"] is None:
        raise PackageError(f"{folder / ITEM} has no asset with role mlm:model")
    weights = _inside(folder, facts["weights"])
    _check_safetensors(weights)
    arch, bands, n_dates = facts["arch"], facts["bands"], facts["n_dates"]
    model = build_model(arch, in_channels(arch, len(bands), n_dates), facts["n_classes"], **_rebuilt(config))
    try:
        model.load_state_dict(read_weights(weights))
    except RuntimeError as err:
        raise PackageError(
            f"{weights} does not fit the model {folder / ITEM} describes ({str(err).splitlines()[-1].strip()}): "
            "export the package again"
        ) from err
    model.eval()
    return ModelPackage(
        model, arch, bands, n_dates, facts["mean"], facts["std"], facts["classes"], 4 if arch == "sr4" else 1,
        item, facts["out_bands"], facts["out_mean"], facts["out_std"], facts["common_names"],
    )  # fmt: skip
