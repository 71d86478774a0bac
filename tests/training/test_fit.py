"""Reading real shards, training, exact resume, export and evaluation on the demo dataset built by `eoshard build`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eoshard.training.cli import main
from eoshard.training.config import TrainConfig
from eoshard.training.data import make_dataset, split_indices
from eoshard.training.fit import fit, majority_accuracy
from eoshard.training.manifest import Manifest

from .helpers import raising

pytestmark = pytest.mark.needs_build


def _config(shards: Path, out: Path, **kw) -> TrainConfig:
    raw = {
        "dataset": str(shards), "output": str(out), "architecture": "fcn", "model": {"width": 16, "layers": 2},
        "epochs": 3, "batch_size": 16, "lr": 3e-3, "checkpoint_every": 5, "seed": 7,
    }  # fmt: skip
    return TrainConfig.from_dict(raw | kw)


def test_lmdb_and_zarr_give_identical_samples_with_shared_augmentation(shards: Path) -> None:
    import zarr

    m = Manifest.read(shards)
    lm = make_dataset(m, "lmdb", normalise=False, bands=["B08", "B04"])
    zr = make_dataset(m, "zarr", normalise=False, bands=["nir", "red"])  # common names, as Earth Search's keys
    raw = zarr.open_group(str(shards / "data.zarr"), mode="r")
    for i in (0, 17, len(lm) - 1):
        a, b = lm[i], zr[i]
        for k in a:
            assert torch.equal(a[k], b[k]), k
        slot = m.slots[i]  # format 1.0: the Zarr time axis holds every dataset date, the sample keeps its own
        kept = np.flatnonzero(raw["time_mask"][slot])
        np.testing.assert_array_equal(
            a["image"][: kept.size].numpy(), raw["s2_10m"][slot][kept][:, [3, 2]].astype("f4")
        )
        assert not a["pad"][: kept.size].any() and a["pad"][kept.size :].all()
        np.testing.assert_array_equal(a["label"].numpy(), raw["class"][slot])
    aug = make_dataset(m, "lmdb", normalise=False, augment=True, seed=1)
    plain = make_dataset(m, "lmdb", normalise=False)
    s, p = aug[5], plain[5]
    # the same spatial transform was applied to image and label: find it from the image, check the label
    found = [
        (k, f) for k in range(4) for f in (False, True)
        if torch.equal(s["image"], _tf(p["image"], k, f))
    ]  # fmt: skip
    assert found and all(torch.equal(s["label"], _tf(p["label"], k, f)) for k, f in found)


def _tf(x: torch.Tensor, k: int, transpose: bool) -> torch.Tensor:
    x = torch.rot90(x, k, (-2, -1))
    return x.transpose(-2, -1) if transpose else x


def test_fit_lowers_loss_and_beats_majority_then_package_evaluates(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(shards, tmp_path / "run")
    result = fit(config)
    assert result.train_loss[-1] < result.train_loss[0]
    assert (tmp_path / "run" / "tensorboard").is_dir()
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in progress] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert f"val loss {result.val_loss[-1]:.4f}" in progress[-1]
    assert (tmp_path / "run" / "training_curve.png").stat().st_size > 10_000
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "pkg")]) == 0
    assert main(["evaluate", str(tmp_path / "pkg"), str(shards), str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    m = Manifest.read(shards)
    val = make_dataset(m, "lmdb", normalise=False, indices=split_indices(m, "val"))
    labels = np.stack([val[i]["label"].numpy() for i in range(len(val))])
    ignored = np.stack([val[i]["ignore"].numpy() for i in range(len(val))])  # double_partial / double_full
    assert ignored.any() and not ignored.all()
    baseline = majority_accuracy(labels, ignored)
    assert report["overall_accuracy"] > baseline + 0.05, (report["overall_accuracy"], baseline)
    assert np.array(report["confusion_matrix"]).sum() == int((~ignored).sum())
    assert {p.name for p in (tmp_path / "eval").glob("*.png")} == {"confusion_matrix.png", "roc.png", "pr.png"}


def test_resume_continues_to_the_same_result(shards: Path, tmp_path: Path) -> None:
    full = fit(_config(shards, tmp_path / "full", epochs=2))
    part = _config(shards, tmp_path / "part", epochs=2)
    fit(part, stop_after_steps=13)  # mid-epoch
    resumed = fit(part, resume=tmp_path / "part" / "checkpoints" / "last.pt")
    assert resumed.train_loss == full.train_loss and resumed.val_loss == full.val_loss
    from safetensors.torch import load_file

    a, b = (
        load_file(str(tmp_path / "full" / "last.safetensors")),
        load_file(str(tmp_path / "part" / "last.safetensors")),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lmdb_workers_reopen_after_fork(shards: Path) -> None:
    from torch.utils.data import DataLoader

    data = make_dataset(Manifest.read(shards), "lmdb", normalise=False, indices=list(range(8)))
    first = data[0]["image"]  # the parent opens the environment before the workers fork
    batches = list(DataLoader(data, batch_size=4, num_workers=2))
    assert torch.equal(batches[0]["image"][0], first) and sum(len(b["image"]) for b in batches) == 8


def test_early_stopping_when_validation_stops_improving(shards: Path, tmp_path: Path) -> None:
    # lr 0: validation loss stays exactly the same, so with patience 1 the run stops after its second epoch
    result = fit(_config(shards, tmp_path / "es", epochs=5, lr=0.0, patience=1, checkpoint_every=1000))
    assert result.stopped_early and len(result.val_loss) == 2
    assert result.val_loss[0] == result.val_loss[1]


def test_temporal_smp_model_trains_exports_and_reloads(shards: Path, tmp_path: Path) -> None:
    from eoshard.training.package import load

    model = {"decoder": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}
    config = _config(shards, tmp_path / "run", architecture="smp-temporal", model=model, epochs=1, batch_size=4,
                     class_weights=None, augmentation={"rotate": 20, "noise": 0.05})  # fmt: skip
    fit(config, stop_after_steps=2)
    from safetensors.torch import save_file

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    save_file(ckpt["model"], str(tmp_path / "run" / "best.safetensors"))
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "pkg")]) == 0
    package = load(tmp_path / "pkg")
    item = json.loads((tmp_path / "pkg" / "item.json").read_text())["properties"]
    assert item["mlm:input"][0]["input"]["dim_order"] == ["batch", "time", "channel", "height", "width"]
    m = Manifest.read(shards)
    assert item["mlm:output"][0]["result"]["shape"][1] == m.n_classes
    sample = make_dataset(m, "lmdb", indices=[0])[0]
    with torch.no_grad():
        out = package.model(sample["image"][None], sample["pad"][None], sample["dates"][None])
    assert out.shape == (1, m.n_classes, 32, 32) and torch.isfinite(out).all()


def test_a_folder_holding_a_run_is_refused_and_a_failed_fit_leaves_it_as_it_was(
    shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    run = tmp_path / "run"
    raw = {"dataset": str(shards), "output": str(run), "architecture": "fcn", "model": {"width": 4, "layers": 1},
           "epochs": 1, "batch_size": 16, "checkpoint_every": 2, "class_weights": None}  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["fit", str(config)]) == 0
    capsys.readouterr()
    last = run / "checkpoints" / "last.pt"
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and "tensorboard" not in p.parts}
    assert {p.name for p in before} >= {
        "config.json",
        "stats.json",
        "best.safetensors",
        "last.pt",
        "step-000002.pt",
    }

    def unchanged() -> bool:
        return all(p.read_bytes() == data for p, data in before.items())

    assert main(["fit", str(config)]) == 1  # a rerun would start over at epoch 1 and overwrite the checkpoints
    assert capsys.readouterr().err == (
        f"error: output folder {run} already holds a run (checkpoint {last}): continue it with `--resume {last}`, "
        "or start over into another output folder or with --overwrite\n"
    )
    assert unchanged()
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw | {"model": {"widht": 8}}))
    assert main(["fit", str(tmp_path / "bad.yaml"), "--resume", str(last)]) == 1
    assert "model options {'widht': 8} do not fit architecture 'fcn'" in capsys.readouterr().err
    assert unchanged()
    (tmp_path / "wider.yaml").write_text(yaml.safe_dump(raw | {"model": {"width": 8, "layers": 1}}))
    assert main(["fit", str(tmp_path / "wider.yaml"), "--resume", str(last)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {last} does not fit the model and optimiser of this config (size ")
    assert err.endswith("resume with the config of the run that wrote it\n")
    assert unchanged()
    assert main(["export", str(run), str(tmp_path / "pkg")]) == 0  # the finished run still exports

    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw | {"epochs": 2, "checkpoint_every": 1000}))
    assert main(["fit", str(tmp_path / "two.yaml"), "--overwrite"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert len(printed["train_loss"]) == 2  # started over: epochs 1 and 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # the old step checkpoints went
    assert json.loads((run / "config.json").read_text())["epochs"] == 2


def test_a_batch_too_big_for_the_memory_says_to_lower_batch_size(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU's out-of-memory in the first step was torch's traceback."""
    import eoshard.training.fit as fit_module
    from eoshard.training.errors import ConfigError

    no_room = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (GPU 0; 79.1 GiB total)")
    monkeypatch.setattr(fit_module, "forward", raising(no_room))
    with pytest.raises(ConfigError) as told:
        fit(_config(shards, tmp_path / "run", epochs=1, batch_size=4096))
    assert str(told.value) == (
        "a batch of 4096 samples needs more memory than the device (cpu) has (CUDA out of memory. Tried to allocate "
        "9.00 GiB (GPU 0; 79.1 GiB total)): lower batch_size in the config, then fit again (--overwrite starts the "
        "run over)"
    )
