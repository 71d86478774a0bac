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
