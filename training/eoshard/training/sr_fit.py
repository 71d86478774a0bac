"""``eoshard-train fit-sr``: the ``sr4`` generator on a dataset's real pairs (see ``sr``), the weights of the best
validation L1 kept, a checkpoint after every epoch, an exact ``--resume`` and a model package at the end."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from torch import nn

from eoshard.training.manifest import Manifest
from eoshard.training.memory_errors import out_of_memory_told
from eoshard.training.models import Discriminator, build_model, gradient_penalty
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
from eoshard.training.sr import SCALE, FeatureNet, Pairs, SRConfig, read_pairs, sr_output_facts

if TYPE_CHECKING:
    from rich.console import Console

CHECKPOINT_KEYS = {"model", "opt", "state", "rng", "order"}  # what `fit-sr` saves and `--resume` restores


def fit_pairs(
    config: SRConfig, resume: str | Path | None = None, overwrite: bool = False,
    stop_after_epochs: int | None = None,
) -> Path:  # fmt: skip
    """Train on the train split, keep the weights of the best validation L1; write a model package.

    Output folder: ``best.safetensors``, ``checkpoints/last.pt`` (after each epoch), ``training_curve.png`` (train
    and validation L1 per epoch), ``tensorboard/`` (losses and LR-bicubic / SR / HR previews), then
    ``config.json``, ``stats.json`` and ``package/`` (``eoshard-train predict`` writes the x4 COG from it).
    ``resume`` continues a checkpoint to the same weights as an uninterrupted run; an output folder that holds a
    run is refused unless ``resume`` continues it or ``overwrite`` starts it over. ``stop_after_epochs`` stops
    there (to test resume) and returns the checkpoint instead of the package."""
    checkpoint = run_start(Path(config.output), resume, overwrite, "fit-sr", CHECKPOINT_KEYS)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with out_of_memory_told(
            lambda said: (
                f"a batch of {config.batch_size} pairs needs more memory than there is ({said}): lower "
                "batch_size in the config, then fit-sr again (--overwrite starts the run over)"
            )
        ):
            return _SRRun(config, checkpoint).train(stop_after_epochs)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


class _SRRun:
    """The pairs, the generator (and critic), the optimisers, the batch order and the per-epoch history."""

    def __init__(self, config: SRConfig, resume: tuple[Path, dict[str, Any]] | None) -> None:
        from eoshard.training.data import split_indices

        torch.use_deterministic_algorithms(True, warn_only=True)
        self.manifest = Manifest.read(config.dataset)
        config = replace(config, bands=self.manifest.band_names(config.bands))  # red -> B04
        self.config, self.out = config, Path(config.output)
        self.train_pairs, self.val_pairs = (
            read_pairs(self.manifest, config.bands, config.hr_bands, split_indices(self.manifest, split))
            for split in ("train", "val")
        )
        torch.manual_seed(config.seed)
        self.model = build_model("sr4", len(config.bands), 0, **config.model)
        self.disc = Discriminator(len(config.bands)) if config.adversarial > 0 else None
        self.feats = (
            FeatureNet(config.perceptual_weights, config.perceptual_layers)
            if config.perceptual > 0 and config.perceptual_weights
            else None
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.d_opt = (
            torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=(0.0, 0.9)) if self.disc else None
        )
        self.order = torch.Generator().manual_seed(config.seed)
        self.state: dict[str, Any] = {"epoch": 0, "best": math.inf, "train_l1": [], "val_l1": []}
        if resume is not None:
            self._restore(*resume)
        # only now: a run that fails to start leaves the folder's files as they were
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        if resume is None:
            clear_run(self.out)

    def _restore(self, path: Path, checkpoint: dict[str, Any]) -> None:
        with restoring(path):
            load_states(checkpoint, self._parts())
            self.state = json.loads(checkpoint["state"])
            torch.set_rng_state(checkpoint["rng"])
            self.order.set_state(checkpoint["order"])

    def _checkpoint(self) -> None:
        checkpoint = {
            "command": "fit-sr", **states(self._parts()), "state": json.dumps(self.state),
            "rng": torch.get_rng_state(), "order": self.order.get_state(),
        }  # fmt: skip
        save_checkpoint(checkpoint, self.out / "checkpoints" / "last.pt")

    def _parts(self) -> dict[str, Stateful | None]:
        """What a checkpoint holds the state of (the critic and its optimiser with an adversarial term only)."""
        return {"model": self.model, "opt": self.opt, "disc": self.disc, "disc_opt": self.d_opt}

    def train(self, stop_after_epochs: int | None) -> Path:
        from rich.console import Console
        from rich.progress import Progress
        from torch.utils.tensorboard import SummaryWriter

        config, state = self.config, self.state
        batches = math.ceil(len(self.train_pairs.lr) / config.batch_size)
        writer = SummaryWriter(str(self.out / "tensorboard"))
        try:
            with Progress(transient=True, console=Console(stderr=True)) as progress:  # stdout: the command's JSON
                task = progress.add_task(
                    "fit-sr", total=config.epochs * batches, completed=state["epoch"] * batches
                )
                while state["epoch"] < config.epochs:
                    if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
                        return self.out / "checkpoints" / "last.pt"
                    self._epoch(writer, lambda: progress.advance(task), progress.console)
        finally:
            writer.close()
        return _package(config, self.manifest, self.train_pairs, self.out)

    def _epoch(self, writer: Any, advance: Callable[[], object], console: Console) -> None:
        """One pass over the train pairs, then validation, the best weights, the checkpoint, the curve and a line."""
        from eoshard.training.plots import training_curve

        config, state, train = self.config, self.state, self.train_pairs
        began, l1_sum, loss = time.perf_counter(), 0.0, math.nan
        self.model.train()
        for batch in torch.randperm(len(train.lr), generator=self.order).split(config.batch_size):
            loss, l1 = _step(config, self.model, self.opt, self.disc, self.d_opt, self.feats,
                             train.lr[batch], train.hr[batch])  # fmt: skip
            l1_sum += l1 * len(batch)
            advance()
        val_l1 = _val_l1(self.model, self.val_pairs)
        writer.add_scalar("loss/train", loss, state["epoch"])
        writer.add_scalar("loss/val_l1", val_l1, state["epoch"])
        _preview(writer, self.model, self.val_pairs, state["epoch"])
        if val_l1 < state["best"]:
            state["best"] = val_l1
            save_weights(self.model, self.out / "best.safetensors")
        state["train_l1"].append(l1_sum / len(train.lr))
        state["val_l1"].append(val_l1)
        state["epoch"] += 1
        self._checkpoint()
        training_curve(
            state["train_l1"], state["val_l1"], self.out / "training_curve.png", ylabel="L1 (normalised HR)"
        )
        rate = len(train.lr) / max(time.perf_counter() - began, 1e-9)
        console.print(
            f"epoch {state['epoch']}/{config.epochs}: train L1 {state['train_l1'][-1]:.4f}, val L1 {val_l1:.4f}, "
            f"{rate:.1f} pairs/s", highlight=False,
        )  # fmt: skip


def _step(
    config: SRConfig,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    disc: nn.Module | None,
    d_opt: torch.optim.Optimizer | None,
    feats: nn.Module | None,
    lr: torch.Tensor,
    hr: torch.Tensor,
) -> tuple[float, float]:
    """One critic step (with an adversarial term) and one generator step: the generator's loss and its L1."""
    fake = model(lr)
    if disc is not None and d_opt is not None:
        d_loss = (
            disc(fake.detach()).mean() - disc(hr).mean() + config.gp * gradient_penalty(disc, hr, fake.detach())
        )
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
    l1 = F.l1_loss(fake, hr)
    loss = config.l1 * l1
    if disc is not None:
        loss = loss - config.adversarial * disc(fake).mean()
    if feats is not None:
        loss = loss + config.perceptual * F.l1_loss(feats(fake), feats(hr))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach()), float(l1.detach())


def _val_l1(model: nn.Module, pairs: Pairs) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.l1_loss(model(pairs.lr), pairs.hr))


def _preview(writer: Any, model: nn.Module, pairs: Pairs, epoch: int) -> None:
    """One validation pair: bicubic | SR | HR side by side (first three bands, min-max stretched)."""
    lr, hr = pairs.lr[:1], pairs.hr[:1]
    with torch.no_grad():
        row = torch.cat([F.interpolate(lr, scale_factor=SCALE, mode="bicubic"), model(lr), hr], dim=3)[0, :3]
    row = (row - row.min()) / (row.max() - row.min() + 1e-6)
    writer.add_image("preview/bicubic_sr_hr", row, epoch)


def _package(config: SRConfig, manifest: Manifest, pairs: Pairs, out: Path) -> Path:
    from eoshard.training.cli import input_facts
    from eoshard.training.package import export

    stats = {"bands": config.bands, "mean": pairs.lr_stats[0], "std": pairs.lr_stats[1]}
    raw = {"architecture": "sr4", **asdict(config)}
    (out / "config.json").write_text(json.dumps(raw, indent=2))
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    facts = input_facts(manifest, None) | {"eoshard:n_dates": 1}
    return export(
        out / "best.safetensors", raw, stats, {}, 1, manifest.patch_size, out / "package", "eoshard-sr4",
        input_facts=facts, output_facts=sr_output_facts(manifest, config.hr_bands),
        common_names=manifest.common_names(),
    )  # fmt: skip
