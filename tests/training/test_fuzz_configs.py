"""Fuzzing the training config users write for ``eoshard-train fit`` (a YAML file edited by hand): a working config
mutated a field at a time. Whatever comes, fit ends in one ``error:`` line and exit 1, or trains and writes its
weights: never an unhandled exception."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from eoshard.training.cli import main
from tests.fuzzing import fuzz_settings, mutated, note_changes

pytestmark = [pytest.mark.slow, pytest.mark.needs_build]

BASE: dict[str, Any] = {
    "architecture": "fcn", "model": {"width": 8, "layers": 2}, "bands": ["B02", "B03"], "epochs": 1,
    "batch_size": 32, "lr": 1e-3, "class_weights": "auto", "ignore_layers": ["double_partial", "double_full"],
    "augmentation": {"rotate": 10.0, "p": 0.5}, "val_fraction": 0.2, "checkpoint_every": 50, "seed": 1,
    "device": "cpu", "format": "lmdb",
}  # fmt: skip


def _bounded(config: Any) -> Any:
    """The mutated config with its cost kept to one short epoch in this process, writing only into its own folder:
    the fuzz is after how a value is read, not after a run that a large epoch count or worker count would make long,
    or an output of ``..`` or ``/``."""
    if isinstance(config, dict):
        if isinstance(config.get("output"), str):
            config["output"] = "run"
        for field, most in (("epochs", 1), ("workers", 0)):
            value = config.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value > most:
                config[field] = most
    return config


@fuzz_settings(15, slow_examples=True)
@given(data=st.data())
def test_a_training_config_never_ends_in_a_traceback(data: st.DataObject, shards: Path) -> None:
    base = BASE | {"dataset": str(shards), "output": "run"}
    config = _bounded(data.draw(mutated(base)))
    note_changes(base, config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.yaml"
        path.write_text(yaml.safe_dump(config))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["fit", str(path)])  # an exception fails the test
        event(f"fit exit {code}")
        if code == 0:
            assert (Path(tmp) / "run" / "last.safetensors").is_file()
        else:
            lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
            assert code == 1 and lines, err.getvalue()
