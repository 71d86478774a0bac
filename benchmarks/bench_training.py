"""Training throughput: samples/s of ``fit`` (loader + model) vs the model alone on batches already in memory.

Baseline: the same model's training steps on one batch held in (device) memory, so no loading at all: the ratio
fit / model-only says how much of the model's speed the shard loader keeps. ``fit`` also reports the time spent
waiting on the loader vs in the model. On a GPU the utilisation (nvidia-smi, sampled during fit) is printed.
Usage: python benchmarks/bench_training.py DATASET_DIR [--architecture fcn] [--device cpu] [--workers 0 2]
(DATASET_DIR written by `eoshard build`, e.g. `make demo` or the training tests' fixture.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from eoshard.training.config import TrainConfig
from eoshard.training.fit import _step_loss, datasets, fit, model_for

MODELS: dict[str, dict[str, Any]] = {
    "fcn": {"width": 32, "layers": 3},
    "unet": {"width": 16, "depth": 2},
    "smp": {"decoder": "Unet", "encoder": "resnet18"},
}


def _config(
    dataset: Path, out: Path, arch: str, device: str, workers: int, batch: int, epochs: int
) -> TrainConfig:
    return TrainConfig.from_dict({
        "dataset": str(dataset), "output": str(out), "architecture": arch, "model": MODELS[arch],
        "epochs": epochs, "batch_size": batch, "workers": workers, "device": device, "checkpoint_every": 10**6,
        "precision": "bf16-mixed" if device.startswith("cuda") else "32",
    })  # fmt: skip


def model_only_rate(config: TrainConfig, steps: int) -> float:
    """Training steps on one batch already on the device: the upper bound for fit."""
    manifest, train, _, _ = datasets(config)
    device = torch.device(config.device)
    model = model_for(config, manifest).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = {
        k: v.to(device)
        for k, v in torch.utils.data.default_collate([train[i] for i in range(config.batch_size)]).items()
    }
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision != "32"):
            loss = _step_loss(config, model, batch, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return steps * config.batch_size / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuSampler(threading.Thread):
    """nvidia-smi utilisation every 0.2 s while fit runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, check=False)  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--architecture", default="fcn", choices=sorted(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="model-only steps")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        base_cfg = _config(args.dataset, tmp / "base", args.architecture, args.device, 0, args.batch_size, 1)
        base = model_only_rate(base_cfg, args.steps)
        print(f"{args.architecture} on {args.device}, batch {args.batch_size}, threads {torch.get_num_threads()}")
        print(f"baseline model only (batch in memory): {base:8.1f} samples/s")
        results: dict[str, Any] = {"model_only": base}
        for workers in args.workers:
            config = _config(args.dataset, tmp / f"w{workers}", args.architecture, args.device, workers,
                             args.batch_size, args.epochs)  # fmt: skip
            sampler = GpuSampler() if args.device.startswith("cuda") else None
            if sampler:
                sampler.start()
            t = fit(config).timing
            if sampler:
                sampler.running = False
            rate = t["samples"] / (t["loader_s"] + t["model_s"])
            gpu = (
                f", GPU utilisation mean {sum(sampler.samples) / max(len(sampler.samples), 1):.0f} %"
                if sampler
                else ""
            )
            print(f"fit workers={workers}: {rate:8.1f} samples/s  ratio {rate / base:5.2f}x of model only; "
                  f"loader {t['loader_s']:.2f} s, model {t['model_s']:.2f} s{gpu}")  # fmt: skip
            results[f"fit-{workers}"] = {"samples_per_s": rate, **t}
        print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
