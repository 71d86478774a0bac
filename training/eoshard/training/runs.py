"""A training run's output folder (``fit``, ``fit-sr``): its checkpoints and weights, and what keeps them safe.

A folder that holds a run is never trained into again by accident, a checkpoint is written whole or not at all,
and ``--resume`` loads tensors and plain values only (``torch.load(weights_only=True)``: nothing is unpickled).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from eoshard.training.errors import ConfigError, TrainingError

WEIGHTS = ("best.safetensors", "last.safetensors")


def last_checkpoint(out: Path) -> Path | None:
    """The checkpoint a run in ``out`` continues from: ``checkpoints/last.pt``, else the latest step checkpoint."""
    last = out / "checkpoints" / "last.pt"
    steps = sorted((out / "checkpoints").glob("step-*.pt"))
    return last if last.exists() else (steps[-1] if steps else None)


def refuse_existing_run(out: Path) -> None:
    """Raise when ``out`` already holds a run's checkpoints or weights (a new run would overwrite them)."""
    last = last_checkpoint(out)
    weights = [name for name in WEIGHTS if (out / name).exists()]
    if last is None and not weights:
        return
    held = f"checkpoint {last}" if last is not None else f"weights {weights}"
    resume = f"continue it with `--resume {last}`, or " if last is not None else ""
    raise ConfigError(
        f"output folder {out} already holds a run ({held}): {resume}start over into another output folder "
        "or with --overwrite"
    )


def run_start(
    out: Path, resume: str | Path | None, overwrite: bool, command: str, keys: set[str]
) -> tuple[Path, dict[str, Any]] | None:
    """Before a run starts in ``out``: the checkpoint ``resume`` names, read and checked (``read_checkpoint``), or
    None for a new run, which ``out`` must not hold already unless ``overwrite``."""
    if resume is None:
        if not overwrite:
            refuse_existing_run(out)
        return None
    return Path(resume), read_checkpoint(Path(resume), command, keys)


def clear_run(out: Path) -> None:
    """Remove the checkpoints and weights of the run a new one (``--overwrite``) replaces."""
    for path in [*(out / "checkpoints").glob("*.pt"), *(out / name for name in WEIGHTS)]:
        path.unlink(missing_ok=True)


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Write ``path`` whole or not at all: a run killed while saving keeps its previous checkpoint."""
    partial = path.with_name(f"{path.name}.partial")
    try:
        torch.save(checkpoint, partial)
        partial.replace(path)
    except (OSError, RuntimeError) as err:  # torch says a full disk as a RuntimeError of its zip writer
        partial.unlink(missing_ok=True)
        kept = "the previous one stays: continue from it with --resume once" if path.exists() else "once"
        raise TrainingError(
            f"could not write the checkpoint {path} ({err}); {kept} the cause (e.g. a full disk) is fixed"
        ) from err


def read_checkpoint(path: Path, command: str, keys: set[str]) -> dict[str, Any]:
    """The checkpoint ``--resume`` names, refused unless it is tensors and plain values holding ``keys`` and,
    where it says which command wrote it, written by ``command``."""
    folder = f"checkpoints/last.pt of a {command} output folder"
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError as err:
        raise TrainingError(f"--resume {path} does not exist: pass {folder}") from err
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainingError(
            f"--resume {path} is not a checkpoint written by `eoshard-train {command}` ({first[:200]}); objects "
            f"other than tensors are never unpickled. Pass {folder}"
        ) from err
    if not isinstance(checkpoint, dict):
        checkpoint = {}
    writer = checkpoint.get("command", "fit")  # checkpoints from before fit-sr had any say nothing: fit's
    if checkpoint and writer != command:
        raise TrainingError(
            f"--resume {path} was written by `eoshard-train {writer}`, not `{command}`: pass {folder}"
        )
    missing = sorted(keys - set(checkpoint))
    if missing:
        raise TrainingError(
            f"--resume {path} is not a checkpoint written by `eoshard-train {command}`: it lacks {missing} "
            f"(weights alone, e.g. best.safetensors, cannot resume a run). Pass {folder}"
        )
    return checkpoint


class Stateful(Protocol):
    """What a checkpoint holds the state of: a module, an optimiser, a schedule."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any, /) -> Any: ...


def states(parts: Mapping[str, Stateful | None]) -> dict[str, Any]:
    """The states of a run's parts by name, for its checkpoint; parts the run lacks (None) left out."""
    return {name: part.state_dict() for name, part in parts.items() if part is not None}


def load_states(checkpoint: Mapping[str, Any], parts: Mapping[str, Stateful | None]) -> None:
    """Load each part the run has (not None) from the checkpoint's state of its name."""
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(checkpoint[name])


@contextmanager
def restoring(path: str | Path) -> Iterator[None]:
    """Around loading a checkpoint into a run: one that does not fit its model and optimisers is the config's error."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()[:300]
        raise ConfigError(
            f"checkpoint {path} does not fit the model and optimiser of this config ({first}): resume with the "
            "config of the run that wrote it"
        ) from err


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
