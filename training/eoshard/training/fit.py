"""``eoshard-train fit``: cross-entropy + Dice with ignore masks, checkpoints, exact resume, early stopping."""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader

from eoshard.training import augmentation, distributed
from eoshard.training.allocator import keep_freed_memory
from eoshard.training.config import TrainConfig
from eoshard.training.data import ShardDataset, Stats, band_stats, make_dataset, split_indices
from eoshard.training.distributed import Runtime
from eoshard.training.errors import ConfigError
from eoshard.training.foundation import resolve_input
from eoshard.training.manifest import Manifest
from eoshard.training.memory_errors import out_of_memory_told
from eoshard.training.models import Discriminator, build_model, forward, gradient_penalty, in_channels, sr_loss
from eoshard.training.normalisation import foundation_stats
from eoshard.training.runs import (
    Stateful,
    clear_run,
    load_states,
    restoring,
    run_start,
    save_checkpoint,
    save_weights,
    states,
)

CHECKPOINT_KEYS = {"model", "opt", "sched", "state", "rng"}  # what `fit` saves and `--resume` restores


@dataclass
class FitResult:
    """What a run ends with: per-epoch mean losses, the validation history and the final weights path."""

    train_loss: list[float]
    val_loss: list[float]
    weights: Path
    stopped_early: bool
    timing: dict[str, float] = field(default_factory=dict)  # samples, seconds waiting on the loader, in the model


def seg_loss(
    logits: torch.Tensor, label: torch.Tensor, ignore: torch.Tensor, weights: torch.Tensor | None, dice: float,
    runtime: Runtime | None = None,
) -> torch.Tensor:  # fmt: skip
    """Weighted cross-entropy plus soft Dice, both over pixels not ignored.

    With a ``runtime`` of several processes, the cross-entropy is divided by the global weight of the kept pixels
    and Dice uses global sums, scaled so that DDP's gradient average gives the one-process gradient exactly."""
    target = label.masked_fill(ignore, -100)
    keep = ~ignore
    ce_sum = F.cross_entropy(logits, target, weight=weights, ignore_index=-100, reduction="sum")
    counted = weights.to(logits.device)[label[keep]].sum() if weights is not None else keep.sum()
    world = runtime.world if runtime is not None else 1
    total = runtime.sum(counted.float()) if runtime is not None else counted.float()
    ce = ce_sum / total.clamp(min=1e-12) * world
    if dice <= 0:
        return ce
    probs = logits.float().softmax(1)
    onehot = F.one_hot(label.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float()
    mask = keep.unsqueeze(1).float()
    inter = (probs * onehot * mask).sum((0, 2, 3))
    denom = ((probs + onehot) * mask).sum((0, 2, 3))
    if runtime is not None:
        inter, denom = runtime.sum_with_grad(inter), runtime.sum_with_grad(denom)
    return ce + dice * (1 - ((2 * inter + 1) / (denom + 1)).mean())


def datasets(config: TrainConfig) -> tuple[Manifest, ShardDataset, ShardDataset, Stats]:
    manifest = Manifest.read(config.dataset)
    bands = config.bands or manifest.sensor_bands()
    stats = (
        band_stats(manifest, bands)
        if config.normalisation is None
        else Stats(*foundation_stats(config.normalisation, manifest, bands))
    )
    common: dict[str, Any] = {
        "bands": bands, "normalise": stats, "ignore_layers": config.ignore_layers,
        "ignore_background": config.ignore_background, "seed": config.seed,
    }  # fmt: skip
    train_idx = split_indices(manifest, "train", config.val_fraction)
    val_idx = split_indices(manifest, "val", config.val_fraction)
    if not train_idx or not val_idx:
        empty = "train" if not train_idx else "val"
        remedy = (
            f"its index.parquet puts no sample in {empty!r}: rebuild it with a smaller splits.block_size (the "
            "patches of one block share a split) or a wider AOI, or with other splits.fractions"
            if manifest.splits() is not None
            else f"no sample key falls in {empty!r}: set val_fraction (now {config.val_fraction}) in the config"
        )
        raise ConfigError(
            f"empty split: the dataset {manifest.root} has {len(train_idx)} train and {len(val_idx)} validation "
            f"samples, and fit needs both; {remedy}"
        )
    train = make_dataset(manifest, config.format, indices=train_idx, augment=config.augment, **common)
    val = make_dataset(manifest, config.format, indices=val_idx, augment=False, **common)
    return manifest, train, val, stats


def class_weights(config: TrainConfig, manifest: Manifest, train: ShardDataset) -> torch.Tensor | None:
    if config.class_weights is None:
        return None
    if isinstance(config.class_weights, list):
        return torch.tensor(config.class_weights, dtype=torch.float32)
    counts = torch.zeros(manifest.n_classes)
    for i in range(len(train)):
        s = train[i]
        counts += torch.bincount(s["label"][~s["ignore"]].flatten(), minlength=manifest.n_classes)[
            : manifest.n_classes
        ]
    freq = counts / counts.sum().clamp(min=1)
    return torch.where(counts > 0, 1 / (freq * manifest.n_classes).clamp(min=1e-6).sqrt(), torch.zeros_like(freq))


def model_for(config: TrainConfig, manifest: Manifest) -> nn.Module:
    bands = config.bands or manifest.sensor_bands()
    channels = (
        len(bands) if config.task == "sr4" else in_channels(config.architecture, len(bands), len(manifest.dates))
    )
    return build_model(config.architecture, channels, manifest.n_classes, **config.model)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _step_loss(
    config: TrainConfig, model: nn.Module, batch: dict[str, torch.Tensor], weights: Any,
    runtime: Runtime | None = None,
) -> torch.Tensor:  # fmt: skip
    if config.task == "sr4":
        hr = batch["image"][:, 0]
        return sr_loss(model(F.avg_pool2d(hr, 4)), hr, config.sr_l1, config.sr_l2)
    logits = forward(model, config.architecture, batch["image"], batch["pad"], batch["dates"])
    return seg_loss(logits.float(), batch["label"], batch["ignore"], weights, config.dice_weight, runtime)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def validate(
    config: TrainConfig, model: nn.Module, val: ShardDataset, weights: Any, device: torch.device | None = None
) -> float:
    """Mean validation loss (every process computes it over the whole validation split)."""
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in DataLoader(val, batch_size=config.batch_size, num_workers=config.workers):
            batch = _to(batch, device or torch.device("cpu"))
            losses.append(float(_step_loss(config, model, batch, weights)) * len(batch["image"]))
    model.train()
    return sum(losses) / len(val)


def fit(
    config: TrainConfig, resume: str | Path | None = None, stop_after_steps: int | None = None,
    overwrite: bool = False,
) -> FitResult:  # fmt: skip
    """Train; ``resume`` continues a checkpoint exactly; ``stop_after_steps`` interrupts (to test resume).

    An output folder that already holds a run is refused unless ``resume`` continues it or ``overwrite`` starts it
    over. Nothing is written there before the dataset, the model and the checkpoint to resume have loaded.
    Under ``torchrun`` each process trains on its share of every global batch (see ``distributed``); process 0
    writes the outputs."""
    checkpoint = run_start(Path(config.output), resume, overwrite, "fit", CHECKPOINT_KEYS)
    keep_freed_memory()
    config = resolve_input(config, Manifest.read(config.dataset))  # a foundation model's bands, normalisation
    runtime = distributed.start(config.device)
    before, warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        with out_of_memory_told(
            lambda said: (
                f"a batch of {config.batch_size} samples needs more memory than the device "
                f"({runtime.device}) has ({said}): lower batch_size in the config, then fit again (--overwrite starts "
                "the run over)"
            )
        ):
            return _Run(config, runtime, checkpoint).train(stop_after_steps)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn)
        distributed.stop(runtime)


class _Run:
    """One training run's state: model, optimiser, schedule, counters; checkpoints restore all of it."""

    def __init__(self, config: TrainConfig, runtime: Runtime, resume: tuple[Path, dict[str, Any]] | None) -> None:
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        self.config, self.runtime, self.out = config, runtime, Path(config.output)
        self.manifest, self.train_set, self.val_set, stats = datasets(config)
        self.model = model_for(config, self.manifest).to(runtime.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(config.epochs, 1))
        adversarial = config.task == "sr4" and config.sr_adversarial > 0
        self.disc = Discriminator(len(self.train_set.bands)).to(runtime.device) if adversarial else None
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=config.lr) if self.disc else None
        weights = class_weights(config, self.manifest, self.train_set) if config.task == "segmentation" else None
        self.weights = weights.to(runtime.device) if weights is not None else None
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=config.precision == "16-mixed" and runtime.device.type == "cuda"
        )
        self.augment = augmentation.build(config.augmentation)
        self.state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "train_loss": [], "val_loss": [],
                                      "best": float("inf"), "bad_epochs": 0, "epoch_sum": 0.0}  # fmt: skip
        if resume is not None:
            self._restore(*resume)
        if runtime.main:  # only now: a run that fails to start leaves the folder's files as they were
            self._write_start(stats, fresh=resume is None)
        self.net = distributed.wrap(self.model, runtime)
        self.timing = {"samples": 0.0, "loader_s": 0.0, "model_s": 0.0}

    def _write_start(self, stats: Stats, fresh: bool) -> None:
        """``config.json``, ``stats.json`` and ``checkpoints/``; a ``fresh`` run (one started over with
        ``overwrite``) first removes the checkpoints and weights of the run it replaces."""
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        if fresh:
            clear_run(self.out)
        (self.out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        (self.out / "stats.json").write_text(
            json.dumps({"bands": self.train_set.bands, "mean": stats.mean.tolist(), "std": stats.std.tolist()})
        )

    def _restore(self, path: Path, ckpt: dict[str, Any]) -> None:
        with restoring(path):
            load_states(ckpt, self._parts())
            self.state = json.loads(ckpt["state"])
            torch.set_rng_state(ckpt["rng"].cpu())

    def checkpoint(self, name: str) -> None:
        if not self.runtime.main:
            return
        ckpt = {
            "command": "fit",
            **states(self._parts()),
            "state": json.dumps(self.state),
            "rng": torch.get_rng_state(),
        }
        save_checkpoint(ckpt, self.out / "checkpoints" / name)

    def _parts(self) -> dict[str, Stateful | None]:
        """What a checkpoint holds the state of (the critic and its optimiser with an adversarial term only)."""
        return {"model": self.model, "opt": self.opt, "sched": self.sched, "disc": self.disc,
                "disc_opt": self.disc_opt}  # fmt: skip

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimiser step on this process's part of a global batch; the loss of the global batch."""
        config = self.config
        if config.task == "segmentation":
            batch = augmentation.apply(self.augment, config.augmentation, batch)
        with distributed.precision(self.runtime, config.precision):
            loss = _step_loss(config, self.net, batch, self.weights, self.runtime)
            if self.disc is not None and self.disc_opt is not None:
                loss = loss + _adversarial(config, self.net, self.disc, self.disc_opt, batch)
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(self.runtime.sum(loss.detach()).item()) / self.runtime.world

    def epoch_batches(self) -> list[list[int]]:
        batches = _batches(len(self.train_set), self.config.batch_size, self.config.seed, self.state["epoch"])
        if self.runtime.world > 1:  # every process needs a share of every global batch
            batches = [b for b in batches if len(b) >= self.runtime.world]
        return batches

    def train(self, stop_after_steps: int | None) -> FitResult:
        from torch.utils.tensorboard import SummaryWriter

        config, state, out = self.config, self.state, self.out
        writer = SummaryWriter(str(out / "tensorboard")) if self.runtime.main else None
        stopped = False
        self.net.train()
        with Progress(transient=True, disable=not self.runtime.main) as progress:
            task = progress.add_task("fit", total=config.epochs * len(self.epoch_batches()))
            progress.update(task, completed=state["step"])
            while state["epoch"] < config.epochs and not stopped:
                self.train_set.epoch = state["epoch"]
                batches = self.epoch_batches()[state["batch"] :]
                loader = DataLoader(
                    self.train_set, batch_sampler=[self.runtime.shard(b) for b in batches],
                    num_workers=config.workers, pin_memory=self.runtime.device.type == "cuda",
                )  # fmt: skip
                began = time.perf_counter()
                for global_batch, batch in zip(batches, loader, strict=True):
                    loaded = time.perf_counter()
                    value = self.step(_to(batch, self.runtime.device))
                    done = time.perf_counter()
                    self.timing["loader_s"] += loaded - began
                    self.timing["model_s"] += done - loaded
                    self.timing["samples"] += len(global_batch)
                    began = done
                    state["batch"] += 1
                    state["step"] += 1
                    state["epoch_sum"] += value * len(global_batch)
                    if writer is not None:
                        writer.add_scalar("loss/train_step", value, state["step"])
                    progress.advance(task)
                    if state["step"] % config.checkpoint_every == 0:
                        self.checkpoint(f"step-{state['step']:06d}.pt")
                    if stop_after_steps is not None and state["step"] >= stop_after_steps:
                        self.checkpoint("last.pt")
                        if writer is not None:
                            writer.close()
                        return FitResult(state["train_loss"], state["val_loss"], out / "checkpoints" / "last.pt",
                                         False, self.timing)  # fmt: skip
                stopped = self.end_epoch(writer)
        if writer is not None:
            writer.close()
        if self.runtime.main:
            save_weights(self.model, out / "last.safetensors")
        return FitResult(state["train_loss"], state["val_loss"], out / "best.safetensors", stopped, self.timing)

    def end_epoch(self, writer: Any) -> bool:
        """Validation, schedule, best weights, early stopping, curve and one progress line; True to stop."""
        config, state = self.config, self.state
        n_train = sum(len(b) for b in self.epoch_batches())
        state["train_loss"].append(state["epoch_sum"] / n_train)
        state["val_loss"].append(validate(config, self.model, self.val_set, self.weights, self.runtime.device))
        if writer is not None:
            writer.add_scalars(
                "loss", {"train": state["train_loss"][-1], "val": state["val_loss"][-1]}, state["epoch"]
            )
            _preview(writer, config, self.model, self.val_set, state["epoch"], self.runtime.device)
        with warnings.catch_warnings():
            # a run resumed right at an epoch's end steps the schedule before any optimizer step in this
            # process; the restored schedule state is exact, so PyTorch's order warning does not apply
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before")
            self.sched.step()
        state |= {"epoch": state["epoch"] + 1, "batch": 0, "epoch_sum": 0.0}
        stop = False
        if state["val_loss"][-1] < state["best"]:
            state |= {"best": state["val_loss"][-1], "bad_epochs": 0}
            if self.runtime.main:
                save_weights(self.model, self.out / "best.safetensors")
        else:
            state["bad_epochs"] += 1
            stop = config.patience > 0 and state["bad_epochs"] >= config.patience
        self.checkpoint("last.pt")
        if self.runtime.main:
            from eoshard.training.plots import training_curve

            training_curve(state["train_loss"], state["val_loss"], self.out / "training_curve.png")
            rate = self.timing["samples"] / max(self.timing["loader_s"] + self.timing["model_s"], 1e-9)
            print(
                f"epoch {state['epoch']}/{config.epochs}: train loss {state['train_loss'][-1]:.4f}, "
                f"val loss {state['val_loss'][-1]:.4f}, {rate:.1f} samples/s", file=sys.stderr,
            )  # fmt: skip
        return stop


def _adversarial(
    config: TrainConfig,
    model: nn.Module,
    disc: nn.Module,
    disc_opt: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
) -> torch.Tensor:
    """One critic step (WGAN-GP) and the generator's adversarial term."""
    hr = batch["image"][:, 0]
    fake = model(F.avg_pool2d(hr, 4))
    d_loss = (
        disc(fake.detach()).mean() - disc(hr).mean() + config.sr_gp * gradient_penalty(disc, hr, fake.detach())
    )
    disc_opt.zero_grad()
    d_loss.backward()
    disc_opt.step()
    return -config.sr_adversarial * disc(fake).mean()


def _preview(
    writer: Any, config: TrainConfig, model: nn.Module, val: ShardDataset, epoch: int, device: torch.device
) -> None:
    if config.task != "segmentation":
        return
    sample = {k: v[None].to(device) for k, v in val[0].items()}
    model.eval()
    with torch.no_grad():
        pred = (
            forward(model, config.architecture, sample["image"], sample["pad"], sample["dates"]).argmax(1)[0].cpu()
        )
        sample = {k: v[0].cpu() for k, v in sample.items()}
    model.train()
    scale = max(int(sample["label"].max()), int(pred.max()), 1)
    writer.add_image(
        "preview/label_prediction", torch.cat([sample["label"], pred], 1)[None].float() / scale, epoch
    )


def majority_accuracy(labels: np.ndarray, ignore: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class (the baseline to beat)."""
    valid = labels[~ignore]
    return float(np.bincount(valid).max() / valid.size)
