"""A run folder's checkpoints: written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eoshard.training.errors import TrainingError
from eoshard.training.runs import save_checkpoint


def test_a_checkpoint_that_cannot_be_written_whole_leaves_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"state": '{"epoch": 1}', "rng": torch.arange(3)}, path)

    def full_disk(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"PK\x03\x04 the first bytes of a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(TrainingError) as told:
        save_checkpoint({"state": '{"epoch": 2}', "rng": torch.arange(3)}, path)
    assert str(told.value) == (
        f"could not write the checkpoint {path} ([Errno 28] No space left on device); the previous one stays: "
        "continue from it with --resume once the cause (e.g. a full disk) is fixed"
    )
    kept = torch.load(path, weights_only=True)
    assert kept["state"] == '{"epoch": 1}' and kept["rng"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
