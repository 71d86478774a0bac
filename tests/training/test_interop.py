"""eoshard shards in the tools people train with: TorchGeo's sample convention and a Lightning DataModule that a
Lightning Trainer trains from."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

pytestmark = [
    pytest.mark.needs_build,
    # lightning 2.6.6 on torch 2.13: torch's pytree deprecation, inside lightning
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
]


def test_torchgeo_samples_and_lightning_datamodule_train(shards: Path) -> None:
    from eoshard.training.interop import ShardDataModule
    from eoshard.training.models import build_model

    lightning = importlib.import_module("lightning")  # after eoshard.training, which makes torchvision importable

    dm = ShardDataModule(str(shards), batch_size=8, ignore_index=255)
    dm.setup("fit")
    sample = dm.splits["val"][0]
    plain = dm.splits["val"].data[0]
    assert sample["image"].shape == (dm.in_channels, 32, 32) == (7 * 4, 32, 32)
    assert torch.equal(sample["image"], plain["image"].flatten(0, 1))
    assert torch.equal(sample["mask"] == 255, plain["ignore"])  # ignored pixels carry the task's ignore_index
    assert torch.equal(sample["mask"][~plain["ignore"]], plain["label"][~plain["ignore"]])

    class Segmenter(lightning.LightningModule):  # what TorchGeo's SemanticSegmentationTask does, in short
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model("fcn", dm.in_channels, dm.num_classes, width=8, layers=2)
            self.losses: list[float] = []
            self.val_batches = 0

        def training_step(self, batch: dict[str, torch.Tensor], i: int) -> torch.Tensor:
            loss = F.cross_entropy(self.net(batch["image"]), batch["mask"], ignore_index=255)
            self.losses.append(float(loss.detach()))
            return loss

        def validation_step(self, batch: dict[str, torch.Tensor], i: int) -> None:
            self.val_batches += 1
            assert (batch["mask"] == 255).any()  # the validation split has ignored pixels too

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    torch.manual_seed(0)
    model = Segmenter()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = lightning.Trainer(
        max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=2, val_check_interval=3, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert model.val_batches == 4  # validated after steps 3 and 6, two batches each
    assert len(model.losses) == 6 and all(torch.isfinite(torch.tensor(model.losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert sum(model.losses[-2:]) < sum(model.losses[:2])


def test_torchgeo_semantic_segmentation_task_trains_on_shards(shards: Path) -> None:
    from eoshard.training.interop import ShardDataModule
    from eoshard.training.torchgeo_task import segmentation_task

    lightning = importlib.import_module("lightning")
    from torchgeo.trainers import SemanticSegmentationTask

    dm = ShardDataModule(str(shards), batch_size=4, ignore_index=255, augment=False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    plain = dm.splits["train"].data
    assert batch["image"].shape == (4, 28, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 32, 32) and batch["mask"].dtype == torch.int64
    labels = torch.cat([plain[i]["label"][~plain[i]["ignore"]] for i in range(len(plain))]).unique()
    assert set(batch["mask"].unique().tolist()) <= set(labels.tolist()) | {255}
    assert labels.max() < dm.num_classes == 7
    val = next(iter(dm.val_dataloader()))  # in order: the first four validation samples of the shards
    for i in range(4):
        s = dm.splits["val"].data[i]
        assert torch.equal(val["image"][i], s["image"].flatten(0, 1))  # dates stacked as channels
        assert torch.equal(val["mask"][i], s["label"].masked_fill(s["ignore"], 255))

    torch.manual_seed(0)
    task = segmentation_task(dm, model="unet", backbone="resnet18", lr=1e-3)
    assert isinstance(task, SemanticSegmentationTask)
    assert task.model.encoder.conv1.in_channels == 28 and task.model.segmentation_head[0].out_channels == 7
    before = [p.detach().clone() for p in task.parameters()]
    losses: list[float] = []

    class Losses(lightning.Callback):  # the task's own loss, as it returns it from training_step
        def on_train_batch_end(
            self, trainer: object, module: object, outputs: dict, batch: object, i: int
        ) -> None:
            losses.append(float(outputs["loss"]))

    trainer = lightning.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[Losses()],
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert len(losses) == 3 and all(0 < x < 10 for x in losses)  # finite cross-entropy over 7 classes
    changed = [not torch.equal(a, b) for a, b in zip(before, task.parameters(), strict=True)]
    assert all(changed[:3]) and sum(changed) > len(changed) // 2


def test_torchgeo_task_refuses_weights_it_would_download(shards: Path) -> None:
    from eoshard.training.errors import ConfigError
    from eoshard.training.interop import ShardDataModule
    from eoshard.training.torchgeo_task import segmentation_task

    with pytest.raises(ConfigError, match="never downloads"):
        segmentation_task(ShardDataModule(str(shards)), weights="ResNet18_Weights.SENTINEL2_ALL_MOCO")
