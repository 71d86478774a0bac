"""Read eoshard shards with torch, train, evaluate, package and apply models."""

from eoshard.training.vision import guard_torchvision

# timm, smp and torchmetrics import torchvision: make that work beside a CPU torch before any of them is imported
guard_torchvision()
