"""Two CPU processes (gloo, started by torchrun as a user would) take the same steps as one process with the same
global batch: the final weights agree within float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.needs_build


def _config(shards: Path, out: Path) -> Path:
    from eoshard.training.data import split_indices
    from eoshard.training.manifest import Manifest

    n_train = len(split_indices(Manifest.read(shards), "train"))
    batch = 16 if n_train % 16 != 1 else 15  # a last global batch of 1 sample cannot be shared by 2 processes
    # an FCN (no BatchNorm: on CPU BatchNorm statistics are per process); Dice and class weights on, the
    # per-sample augmentation on (drawn from the sample, not the process); global batches of 16 samples
    raw = {
        "dataset": str(shards), "output": str(out), "architecture": "fcn", "model": {"width": 8, "layers": 2},
        "epochs": 1, "batch_size": batch, "lr": 3e-3, "seed": 3, "dice_weight": 0.5, "device": "cpu",
    }  # fmt: skip
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(raw))
    return path


def _fit(config: Path, processes: int) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", "eoshard.training.cli", "fit", str(config)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_two_gloo_processes_match_one_process(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from eoshard.training.config import TrainConfig
    from eoshard.training.fit import fit

    one = fit(TrainConfig.load(_config(shards, tmp_path / "one")))  # one process: this one
    progress = capsys.readouterr().err
    two = _fit(_config(shards, tmp_path / "two"), 2)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_file(str(tmp_path / "one" / "last.safetensors"))
    b = load_file(str(tmp_path / "two" / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    reported = json.loads(two.stdout.strip().splitlines()[-1])  # the CLI's summary (both processes print it)
    assert reported["train_loss"] == pytest.approx(one.train_loss, rel=1e-5)
    assert reported["val_loss"] == pytest.approx(one.val_loss, rel=1e-5)
    assert "epoch 1/1" in progress and two.stderr.count("epoch 1/1") == 1  # one progress line: process 0
