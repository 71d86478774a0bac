"""``eoshard-train fit``: cross-entropy + Dice with ignore masks, checkpoints, exact resume, early stopping."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader

from eoshard.training.config import TrainConfig
from eoshard.training.data import ShardDataset, Stats, band_stats, make_dataset, split_indices
from eoshard.training.errors import ConfigError
from eoshard.training.manifest import Manifest
from eoshard.training.models import Discriminator, build_model, forward, gradient_penalty, sr_loss
from eoshard.training.normalisation import foundation_stats


@dataclass
class FitResult:
    """What a run ends with: per-epoch mean losses, the validation history and the final weights path."""

    train_loss: list[float]
    val_loss: list[float]
    weights: Path
    stopped_early: bool


def seg_loss(
    logits: torch.Tensor, label: torch.Tensor, ignore: torch.Tensor, weights: torch.Tensor | None, dice: float
) -> torch.Tensor:
    """Weighted cross-entropy plus soft Dice, both over pixels not ignored."""
    target = label.masked_fill(ignore, -100)
    ce = F.cross_entropy(logits, target, weight=weights, ignore_index=-100)
    if dice <= 0:
        return ce
    probs = logits.softmax(1)
    onehot = F.one_hot(label.clamp(0, logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2).float()
    keep = (~ignore).unsqueeze(1).float()
    inter = (probs * onehot * keep).sum((0, 2, 3))
    denom = ((probs + onehot) * keep).sum((0, 2, 3))
    return ce + dice * (1 - ((2 * inter + 1) / (denom + 1)).mean())


def datasets(config: TrainConfig) -> tuple[Manifest, ShardDataset, ShardDataset, Stats]:
    manifest = Manifest.read(config.dataset)
    bands = config.bands or manifest.bands
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
        raise ConfigError(f"empty split: {len(train_idx)} train and {len(val_idx)} validation samples")
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
    bands = config.bands or manifest.bands
    channels = len(bands) if config.architecture == "convgru" else len(bands) * len(manifest.dates)
    if config.task == "sr4":
        channels = len(bands)
    return build_model(config.architecture, channels, manifest.n_classes, **config.model)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _step_loss(
    config: TrainConfig, model: nn.Module, batch: dict[str, torch.Tensor], weights: Any
) -> torch.Tensor:
    if config.task == "sr4":
        hr = batch["image"][:, 0]
        return sr_loss(model(F.avg_pool2d(hr, 4)), hr, config.sr_l1, config.sr_l2)
    logits = forward(model, config.architecture, batch["image"], batch["pad"])
    return seg_loss(logits, batch["label"], batch["ignore"], weights, config.dice_weight)


def validate(config: TrainConfig, model: nn.Module, val: ShardDataset, weights: Any) -> float:
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in DataLoader(val, batch_size=config.batch_size, num_workers=config.workers):
            losses.append(float(_step_loss(config, model, batch, weights)) * len(batch["image"]))
    model.train()
    return sum(losses) / len(val)


def fit(config: TrainConfig, resume: str | Path | None = None, stop_after_steps: int | None = None) -> FitResult:
    """Train; ``resume`` continues a checkpoint exactly; ``stop_after_steps`` interrupts (to test resume)."""
    from torch.utils.tensorboard import SummaryWriter

    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(config.output)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    manifest, train, val, stats = datasets(config)
    (out / "stats.json").write_text(
        json.dumps({"bands": train.bands, "mean": stats.mean.tolist(), "std": stats.std.tolist()})
    )
    model = model_for(config, manifest)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1))
    disc = Discriminator(len(train.bands)) if config.task == "sr4" and config.sr_adversarial > 0 else None
    disc_opt = torch.optim.Adam(disc.parameters(), lr=config.lr) if disc else None
    weights = class_weights(config, manifest, train) if config.task == "segmentation" else None
    state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "train_loss": [], "val_loss": [], "best": float("inf"),
                             "bad_epochs": 0, "epoch_sum": 0.0}  # fmt: skip
    if resume is not None:
        ckpt = torch.load(resume, weights_only=True)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        sched.load_state_dict(ckpt["sched"])
        if disc is not None and disc_opt is not None:
            disc.load_state_dict(ckpt["disc"])
            disc_opt.load_state_dict(ckpt["disc_opt"])
        state = json.loads(ckpt["state"])
        torch.set_rng_state(ckpt["rng"])
    writer = SummaryWriter(str(out / "tensorboard"))

    def checkpoint(name: str) -> Path:
        path = out / "checkpoints" / name
        ckpt = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "state": json.dumps(state), "rng": torch.get_rng_state()}  # fmt: skip
        if disc is not None and disc_opt is not None:
            ckpt |= {"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()}
        torch.save(ckpt, path)
        return path

    stopped = False
    model.train()
    with Progress(transient=True) as progress:
        task = progress.add_task("fit", total=config.epochs * len(_batches(len(train), config.batch_size, 0, 0)))
        progress.update(task, completed=state["step"])
        while state["epoch"] < config.epochs and not stopped:
            train.epoch = state["epoch"]
            batches = _batches(len(train), config.batch_size, config.seed, state["epoch"])
            loader = DataLoader(train, batch_sampler=batches[state["batch"] :], num_workers=config.workers)
            for batch in loader:
                loss = _step_loss(config, model, batch, weights)
                if disc is not None and disc_opt is not None:
                    loss = loss + _adversarial(config, model, disc, disc_opt, batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                value = loss.detach().item()
                state["batch"] += 1
                state["step"] += 1
                state["epoch_sum"] += value * len(batch["image"])
                writer.add_scalar("loss/train_step", value, state["step"])
                progress.advance(task)
                if state["step"] % config.checkpoint_every == 0:
                    checkpoint(f"step-{state['step']:06d}.pt")
                if stop_after_steps is not None and state["step"] >= stop_after_steps:
                    checkpoint("last.pt")
                    writer.close()
                    return FitResult(
                        state["train_loss"], state["val_loss"], out / "checkpoints" / "last.pt", False
                    )
            state["train_loss"].append(state["epoch_sum"] / len(train))
            state["val_loss"].append(validate(config, model, val, weights))
            writer.add_scalars(
                "loss", {"train": state["train_loss"][-1], "val": state["val_loss"][-1]}, state["epoch"]
            )
            _preview(writer, config, model, val, state["epoch"])
            with warnings.catch_warnings():
                # a run resumed right at an epoch's end steps the schedule before any optimizer step in this
                # process; the restored schedule state is exact, so PyTorch's order warning does not apply
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)` before")
                sched.step()
            state |= {"epoch": state["epoch"] + 1, "batch": 0, "epoch_sum": 0.0}
            if state["val_loss"][-1] < state["best"]:
                state |= {"best": state["val_loss"][-1], "bad_epochs": 0}
                save_weights(model, out / "best.safetensors")
            else:
                state["bad_epochs"] += 1
                stopped = config.patience > 0 and state["bad_epochs"] >= config.patience
            checkpoint("last.pt")
    writer.close()
    save_weights(model, out / "last.safetensors")
    return FitResult(state["train_loss"], state["val_loss"], out / "best.safetensors", stopped)


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


def _preview(writer: Any, config: TrainConfig, model: nn.Module, val: ShardDataset, epoch: int) -> None:
    if config.task != "segmentation":
        return
    sample = val[0]
    model.eval()
    with torch.no_grad():
        pred = forward(model, config.architecture, sample["image"][None], sample["pad"][None]).argmax(1)[0]
    model.train()
    scale = max(int(sample["label"].max()), int(pred.max()), 1)
    writer.add_image(
        "preview/label_prediction", torch.cat([sample["label"], pred], 1)[None].float() / scale, epoch
    )


def save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def majority_accuracy(labels: np.ndarray, ignore: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class (the baseline to beat)."""
    valid = labels[~ignore]
    return float(np.bincount(valid).max() / valid.size)
