"""Prithvi-EO-2.0 (IBM/NASA) fine-tuned on eoshard shards through TerraTorch (extra ``terratorch``).

Architecture ``prithvi``: TerraTorch's ``EncoderDecoderFactory`` builds the Prithvi ViT backbone (``variant``, a
name of TerraTorch's backbone registry such as ``prithvi_eo_v2_300_tl``) with random weights, a neck that turns
the last layer's tokens into a (T x E, h, w) image, and a decoder (``FCNDecoder`` by default) and head. Weights
come from a local safetensors file (``weights``) holding the backbone's (or the MAE's) state dict, filtered by
TerraTorch's own checkpoint filter: decoder tensors dropped, the patch embedding cut to the bands used.

Input as the model expects it (``foundation.resolve_input`` sets the options from ``dataset.json``): Sentinel-2
bands ordered by wavelength and named as HLS bands, standardised with Prithvi-EO-2.0's table
(``normalisation.py``), (B, C, T, H, W), and per date ``(year, day of year)`` for the temporal encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from eoshard.training.errors import ConfigError
from eoshard.training.library import load_local_weights
from eoshard.training.vision import import_torchvision

# Sentinel-2 band -> the HLS band of Prithvi-EO-2.0's pretraining (its order is the wavelength order)
HLS_BANDS = {"B02": "BLUE", "B03": "GREEN", "B04": "RED", "B8A": "NIR_NARROW", "B11": "SWIR_1", "B12": "SWIR_2"}


def _terratorch() -> Any:
    import_torchvision()
    # Importing TerraTorch's backbones runs torch.set_float32_matmul_precision("medium") (its Clay v1.5 module):
    # on CPUs with bf16 units that turns every later float32 matmul of the process into a bf16 one.
    precision = torch.get_float32_matmul_precision()
    try:
        import terratorch.models
        from terratorch.models.backbones import prithvi_vit
    except ImportError as err:
        raise ConfigError(
            f"architecture 'prithvi' needs TerraTorch ({err}): install it with pip install "
            "'eoshard-training[terratorch]'"
        ) from err
    finally:
        torch.set_float32_matmul_precision(precision)
    return terratorch.models, prithvi_vit


class PrithviSegmenter(nn.Module):
    """Prithvi ViT + neck + decoder + head; input (B, T, C, H, W), ``doy`` (B, T) day of year of each date."""

    def __init__(
        self, in_channels: int, n_classes: int, bands: Sequence[str], num_frames: int, year: int,
        variant: str = "prithvi_eo_v2_300_tl", weights: str | None = None, decoder: str = "FCNDecoder",
        **options: Any,
    ) -> None:  # fmt: skip
        super().__init__()
        unknown = [b for b in bands if b not in HLS_BANDS]
        if unknown or len(bands) != in_channels:
            raise ConfigError(
                f"Prithvi-EO-2.0 takes bands of {list(HLS_BANDS)} ({in_channels} here), not {list(bands)}: "
                "select those bands (bands: [...] in the config)"
            )
        models, prithvi_vit = _terratorch()
        self.year, self.bands = year, list(bands)
        self.net: Any = models.EncoderDecoderFactory().build_model(
            task="segmentation", backbone=variant, backbone_pretrained=False, num_classes=n_classes,
            backbone_bands=[HLS_BANDS[b] for b in bands], backbone_num_frames=num_frames, decoder=decoder,
            necks=[{"name": "SelectIndices", "indices": [-1]},
                   {"name": "ReshapeTokensToImage", "effective_time_dim": num_frames}],
            **options,
        )  # fmt: skip
        if weights:
            encoder = self.net.encoder

            def keep_backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
                state = {k.removeprefix("net.encoder."): v for k, v in state.items()}
                if not any(k.endswith("patch_embed.proj.weight") for k in state):
                    return state  # not a Prithvi checkpoint: load_local_weights says what it holds
                return dict(
                    prithvi_vit.checkpoint_filter_fn_vit(
                        state, encoder, prithvi_vit.PRETRAINED_BANDS, encoder.model_bands
                    )
                )

            load_local_weights(encoder, weights, transform=keep_backbone)

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor | None = None, doy: torch.Tensor | None = None
    ) -> torch.Tensor:
        coords = None
        if doy is not None:
            coords = torch.stack([torch.full_like(doy, self.year), doy], -1).float()
        return self.net(x.transpose(1, 2), temporal_coords=coords).output
