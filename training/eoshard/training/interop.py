"""Meeting the tools people train with: eoshard samples in TorchGeo's sample convention and a Lightning
``LightningDataModule`` over eoshard shards (extra ``lightning``).

TorchGeo's segmentation datasets return ``{"image": (C, H, W) float, "mask": (H, W) int64}`` and its
``SemanticSegmentationTask`` (and TerraTorch's) read exactly those keys; pixels to leave out carry the task's
``ignore_index``. :class:`TorchGeoSamples` gives eoshard samples that way: the dates stacked as channels (or kept as
(T, C, H, W) with ``time_series=True``, plus ``dates`` as day of year and ``pad``), ignored pixels set to
``ignore_index``. :class:`TerraTorchSamples` gives them as TerraTorch's Prithvi tasks take them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, RandomSampler

from eoshard.training.data import ShardDataset, Stats, band_stats, make_dataset, split_indices
from eoshard.training.manifest import Manifest
from eoshard.training.normalisation import foundation_stats

Sample = dict[str, torch.Tensor]


class TorchGeoSamples(Dataset[Sample]):
    """An eoshard dataset in TorchGeo's sample convention (``image``, ``mask``; see the module docstring)."""

    def __init__(self, data: ShardDataset, ignore_index: int = -100, time_series: bool = False) -> None:
        self.data, self.ignore_index, self.time_series = data, ignore_index, time_series

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Sample:
        s = self.data[i]
        image = s["image"] if self.time_series else s["image"].flatten(0, 1)
        out = {"image": image, "mask": s["label"].masked_fill(s["ignore"], self.ignore_index)}
        if self.time_series:
            out |= {"dates": s["dates"], "pad": s["pad"]}
        return out


class TerraTorchSamples(TorchGeoSamples):
    """Samples for TerraTorch's tasks, which pass every key but ``image`` and ``mask`` to the model: ``image``
    (C, T, H, W) as Prithvi takes it, ``mask``, and ``temporal_coords`` (T, 2) = (``year``, day of year)."""

    def __init__(self, data: ShardDataset, year: int, ignore_index: int = -100) -> None:
        super().__init__(data, ignore_index, time_series=True)
        self.year = year

    def __getitem__(self, i: int) -> Sample:
        s = super().__getitem__(i)
        coords = torch.stack([torch.full_like(s["dates"], self.year), s["dates"]], -1).float()
        return {"image": s["image"].transpose(0, 1), "mask": s["mask"], "temporal_coords": coords}


class _EpochSampler(RandomSampler):
    """Shuffles, and passes Lightning's ``set_epoch`` to the reader: the augmentation is drawn anew each epoch."""

    def __init__(self, samples: TorchGeoSamples) -> None:
        super().__init__(samples)
        self.samples = samples

    def set_epoch(self, epoch: int) -> None:
        self.samples.data.epoch = epoch


class ShardDataModule(LightningDataModule):
    """Train and validation splits of an eoshard dataset (``index.parquet`` ``split`` column, else the stable key
    hash), normalised with the dataset's statistics (or a foundation model's, ``normalisation``), as
    :class:`TorchGeoSamples` batches (``layout="terratorch"``: :class:`TerraTorchSamples`)."""

    def __init__(
        self, dataset: str, format: str = "lmdb", bands: list[str] | None = None, batch_size: int = 8,
        workers: int = 0, val_fraction: float = 0.2, augment: bool = True, ignore_index: int = -100,
        time_series: bool = False, seed: int = 0, layout: Literal["torchgeo", "terratorch"] = "torchgeo",
        normalisation: str | None = None, **reader: Any,
    ) -> None:  # fmt: skip
        super().__init__()
        self.manifest = Manifest.read(dataset)
        self.format, self.batch_size, self.workers = format, batch_size, workers
        self.bands = self.manifest.band_names(bands) if bands else self.manifest.sensor_bands()
        self.val_fraction, self.augment, self.seed, self.reader = val_fraction, augment, seed, reader
        self.ignore_index, self.layout, self.normalisation = ignore_index, layout, normalisation
        self.time_series = time_series or layout == "terratorch"
        self.splits: dict[str, TorchGeoSamples] = {}

    @property
    def in_channels(self) -> int:
        return len(self.bands) * (1 if self.time_series else len(self.manifest.dates))

    @property
    def n_dates(self) -> int:
        return len(self.manifest.dates)

    @property
    def num_classes(self) -> int:
        return self.manifest.n_classes

    def setup(self, stage: str | None = None) -> None:
        stats = (
            band_stats(self.manifest, self.bands)
            if self.normalisation is None
            else Stats(*foundation_stats(self.normalisation, self.manifest, self.bands))
        )
        first = self.manifest.dates[0] if self.manifest.dates else "2000-01-01"
        for split in ("train", "val"):
            data = make_dataset(
                self.manifest, self.format, bands=self.bands, normalise=stats, seed=self.seed,
                indices=split_indices(self.manifest, split, self.val_fraction),
                augment=self.augment and split == "train", **self.reader,
            )  # fmt: skip
            self.splits[split] = (
                TerraTorchSamples(data, datetime.fromisoformat(first).year, self.ignore_index)
                if self.layout == "terratorch"
                else TorchGeoSamples(data, self.ignore_index, self.time_series)
            )

    def train_dataloader(self) -> DataLoader[Sample]:
        train = self.splits["train"]
        return DataLoader(
            train, batch_size=self.batch_size, sampler=_EpochSampler(train), num_workers=self.workers
        )

    def val_dataloader(self) -> DataLoader[Sample]:
        return DataLoader(self.splits["val"], batch_size=self.batch_size, num_workers=self.workers)
