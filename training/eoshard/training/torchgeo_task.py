"""TorchGeo's ``SemanticSegmentationTask`` on eoshard shards (extra ``torchgeo``).

:class:`~eoshard.training.interop.ShardDataModule` yields TorchGeo's samples (``image``, ``mask``);
:func:`segmentation_task` builds the task with the channel count, class count and ``ignore_index`` the datamodule
says, so ``lightning.Trainer().fit(segmentation_task(dm), datamodule=dm)`` trains. Nothing downloads: ``weights``
is ``None`` (random) or a local Lightning checkpoint of a TorchGeo task, as TorchGeo reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eoshard.training.errors import ConfigError
from eoshard.training.interop import ShardDataModule
from eoshard.training.vision import import_torchvision


def segmentation_task(
    datamodule: ShardDataModule, model: str = "unet", backbone: str = "resnet18", weights: str | None = None,
    **options: Any,
) -> Any:  # fmt: skip
    """A ``torchgeo.trainers.SemanticSegmentationTask`` sized for ``datamodule`` (``options``: the task's own,
    e.g. ``lr``, ``loss``, ``class_weights``)."""
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(
            f"weights {weights!r} is not a local file: give a TorchGeo task checkpoint on disk or None "
            "(TorchGeo would download a named weight; eoshard never downloads at run time)"
        )
    import_torchvision()
    try:
        from torchgeo.trainers import SemanticSegmentationTask
    except ImportError as err:
        raise ConfigError(
            f"TorchGeo is not installed ({err}): install it with pip install 'eoshard-training[torchgeo]'"
        ) from err
    task: Any = SemanticSegmentationTask
    return task(
        model=model, backbone=backbone, weights=weights, in_channels=datamodule.in_channels,
        num_classes=datamodule.num_classes, ignore_index=datamodule.ignore_index, **options,
    )  # fmt: skip
