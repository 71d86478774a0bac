"""A foundation backbone fine-tuned on eoshard shards: Prithvi-EO-2.0 through TerraTorch, from a local safetensors
checkpoint (random weights), fed bands by wavelength, its published normalisation and the dates."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.needs_build
VARIANT = "prithvi_eo_v2_tiny_tl"  # TerraTorch's smallest Prithvi-EO-2.0 (ViT, 192 wide), time + location coords
HLS_ORDER = ["B02", "B03", "B04", "B8A", "B11", "B12"]  # the six bands of its pretraining, by wavelength


@pytest.fixture(scope="module")
def reflectance(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corner of the demo world as 32 px patches of B02, B8A, B12 in surface reflectance (the units the tables rescale to)."""
    from typer.testing import CliRunner

    from eoshard.flows.cli import app
    from tests.demo_config import demo_build_config, write_config

    out = tmp_path_factory.mktemp("foundation-build") / "demo"
    config = demo_build_config(
        demo_data, out, name="demo-foundation", bands=["B02", "B8A", "B12"], cube={"reflectance": True},
        aoi=[11.96, 48.005, 11.985, 48.02],  # 30 patches
        labels={"path": str(demo_data.parcels), "class_column": "class_code", "class_name_column": "class_name"},
        patches={"size": 32}, splits={"block_size": 640, "fractions": [0.7, 0.3, 0.0], "seed": 0},
        output={"path": str(out), "formats": ["zarr"], "shard_size": 16},
    )  # fmt: skip
    with pytest.warns(UserWarning, match="label geometries were invalid"):
        result = CliRunner().invoke(
            app, ["build", str(write_config(config, out.parent / "b.yaml")), "--workers", "1"]
        )
    assert result.exit_code == 0, result.output
    return out


def _checkpoint(path: Path, num_frames: int) -> dict[str, torch.Tensor]:
    """A Prithvi-EO-2.0 backbone with random weights, built by TerraTorch and saved as the published ones are."""
    from eoshard.training.vision import import_torchvision

    import_torchvision()
    registry = importlib.import_module("terratorch.registry")
    torch.manual_seed(7)
    backbone = registry.BACKBONE_REGISTRY.build(VARIANT, pretrained=False, num_frames=num_frames)
    state = {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}
    save_file(state, str(path))
    return state


def test_prithvi_loads_a_local_checkpoint_for_a_band_subset(reflectance: Path, tmp_path: Path) -> None:
    from eoshard.training.errors import ConfigError
    from eoshard.training.models import build_model

    saved = _checkpoint(tmp_path / "prithvi.safetensors", num_frames=3)
    options = {"bands": ["B02", "B8A", "B12"], "num_frames": 3, "year": 2024, "variant": VARIANT}
    model: Any = build_model("prithvi", 3, 5, weights=str(tmp_path / "prithvi.safetensors"), **options)
    encoder = model.net.encoder.state_dict()
    # the patch embedding keeps the pretrained filters of B02, B8A, B12 (HLS BLUE, NIR_NARROW, SWIR_2)
    picked = [HLS_ORDER.index(b) for b in ("B02", "B8A", "B12")]
    assert picked == [0, 3, 5]
    assert torch.equal(encoder["patch_embed.proj.weight"], saved["patch_embed.proj.weight"][:, picked])
    assert torch.equal(encoder["blocks.11.mlp.fc2.weight"], saved["blocks.11.mlp.fc2.weight"])
    assert torch.equal(encoder["temporal_embed_enc.scale"], saved["temporal_embed_enc.scale"])
    random: Any = build_model("prithvi", 3, 5, **options)
    assert not torch.equal(
        random.net.encoder.state_dict()["blocks.0.attn.qkv.weight"], saved["blocks.0.attn.qkv.weight"]
    )
    with pytest.raises(ConfigError, match=r"Prithvi-EO-2\.0 takes bands of"):
        build_model("prithvi", 2, 5, **(options | {"bands": ["B02", "B08"], "num_frames": 3}))
    save_file({"head.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ConfigError, match="holds none of the model's tensors"):
        build_model("prithvi", 3, 5, weights=str(tmp_path / "other.safetensors"), **options)


def test_prithvi_keeps_the_float32_matmul_precision() -> None:
    """TerraTorch sets torch's float32 matmul precision to "medium" when imported, which on CPUs with bf16 units
    turns later float32 matmuls into bf16 ones (predictions differed by 7e-4): building a Prithvi model must not."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from eoshard.training.models import build_model\n"
        f"build_model('prithvi', 3, 5, bands=['B02', 'B8A', 'B12'], num_frames=2, year=2024, variant='{VARIANT}')\n"
        "print(torch.get_float32_matmul_precision())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "highest"


def test_prithvi_fine_tunes_on_shards_fed_as_pretrained(reflectance: Path, tmp_path: Path) -> None:
    from eoshard.training.config import TrainConfig
    from eoshard.training.data import make_dataset, split_indices
    from eoshard.training.fit import fit
    from eoshard.training.manifest import Manifest
    from eoshard.training.package import export, load
    from eoshard.training.prithvi import PrithviSegmenter

    manifest = Manifest.read(reflectance)
    n_dates = len(manifest.dates)
    assert [manifest.raw["band_metadata"][b]["wavelength_nm"] > 0 for b in ("B02", "B8A", "B12")] == [True] * 3
    _checkpoint(tmp_path / "prithvi.safetensors", num_frames=n_dates)
    config = TrainConfig.from_dict({
        "dataset": str(reflectance), "output": str(tmp_path / "run"), "format": "zarr",
        "bands": ["B12", "B02", "B8A"],  # not by wavelength: fit orders them as the model was pretrained
        "architecture": "prithvi", "model": {"variant": VARIANT, "weights": str(tmp_path / "prithvi.safetensors")},
        "epochs": 1, "batch_size": 4, "lr": 1e-3, "augment": False, "class_weights": None, "dice_weight": 0.0,
    })  # fmt: skip
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        if isinstance(module, PrithviSegmenter) and module.training:
            seen.append((args[0].detach().clone(), args[2].detach().clone()))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        fit(config, stop_after_steps=3)
    finally:
        hook.remove()
    assert len(seen) == 3
    image, doy = seen[0]
    assert image.shape == (4, n_dates, 3, 32, 32) and doy.shape == (4, n_dates)
    # each sample as fit fed it: B02, B8A, B12 (by wavelength), standardised with Prithvi-EO-2.0's table
    raw = make_dataset(manifest, "zarr", bands=["B02", "B8A", "B12"], normalise=False,
                       indices=split_indices(manifest, "train", config.val_fraction))  # fmt: skip
    mean = torch.tensor([1087.0, 2734.0, 1363.0]) / 10000  # Prithvi-EO-2.0 config.json, reflectance x 10000
    std = torch.tensor([2248.0, 1850.0, 1049.0]) / 10000
    expected = []
    for i in range(len(raw)):
        s = raw[i]
        scaled = torch.nan_to_num((s["image"] - mean[:, None, None]) / std[:, None, None], nan=0.0)
        expected.append((scaled.masked_fill(s["pad"][:, None, None, None], 0.0), s["dates"]))
    for j in range(4):
        match = [d for x, d in expected if torch.allclose(image[j], x, rtol=1e-5, atol=1e-5)]
        assert len(match) == 1 and torch.equal(doy[j], match[0])  # day of year of each date, for the time encoding
    assert image.abs().max() < 10 and doy.max() > 90
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["bands"] == ["B02", "B8A", "B12"] and written["normalisation"] == "prithvi-eo-2"
    assert written["model"] | {"weights": None} == {
        "variant": VARIANT, "weights": None, "bands": ["B02", "B8A", "B12"], "num_frames": n_dates,
        "year": int(manifest.dates[0][:4]),
    }  # fmt: skip
    # three finite steps, and the weights moved from the checkpoint they started from
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    mean_loss = json.loads(ckpt["state"])["epoch_sum"] / 12
    assert np.isfinite(mean_loss) and 0 < mean_loss < 10
    start = load_file(str(tmp_path / "prithvi.safetensors"))
    trained = ckpt["model"]
    assert trained["net.encoder.patch_embed.proj.weight"].shape == (192, 3, 1, 16, 16)  # three bands in
    for key in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight"):
        assert not torch.equal(trained[f"net.encoder.{key}"], start[key])
        assert torch.allclose(trained[f"net.encoder.{key}"], start[key], atol=0.05)  # fine-tuned, not replaced
    # packaged, it rebuilds from the resolved config without the pretrained file
    save_file({k: v.contiguous() for k, v in trained.items()}, str(tmp_path / "tuned.safetensors"))
    (tmp_path / "prithvi.safetensors").unlink()
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    package = load(
        export(tmp_path / "tuned.safetensors", written, stats, manifest.classes, n_dates, 32, tmp_path / "pkg")
    )
    assert package.architecture == "prithvi" and package.bands == ["B02", "B8A", "B12"]
    assert all(torch.equal(v, trained[k]) for k, v in package.model.state_dict().items())


@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")
def test_terratorch_task_trains_prithvi_on_the_datamodule(reflectance: Path) -> None:
    from eoshard.training.interop import ShardDataModule
    from eoshard.training.vision import import_torchvision

    import_torchvision()
    lightning = importlib.import_module("lightning")
    tasks = importlib.import_module("terratorch.tasks")

    dm = ShardDataModule(str(reflectance), format="zarr", bands=["B02", "B8A", "B12"], batch_size=4,
                         layout="terratorch", normalisation="prithvi-eo-2", ignore_index=255, augment=False)  # fmt: skip
    dm.setup("fit")
    sample, plain = dm.splits["train"][0], dm.splits["train"].data[0]
    assert set(sample) == {
        "image",
        "mask",
        "temporal_coords",
    }  # TerraTorch passes all but image, mask to the model
    assert sample["image"].shape == (3, dm.n_dates, 32, 32) and dm.in_channels == 3
    assert torch.equal(sample["image"], plain["image"].transpose(0, 1))
    assert sample["temporal_coords"][:, 0].eq(int(dm.manifest.dates[0][:4])).all()
    assert torch.equal(sample["temporal_coords"][:, 1].long(), plain["dates"])
    mean, std = dm.splits["train"].data.stats.mean, dm.splits["train"].data.stats.std  # type: ignore[union-attr]
    np.testing.assert_allclose(mean, np.array([1087.0, 2734.0, 1363.0], "f4") / 10000, rtol=1e-6)
    np.testing.assert_allclose(std, np.array([2248.0, 1850.0, 1049.0], "f4") / 10000, rtol=1e-6)

    torch.manual_seed(0)
    task = tasks.SemanticSegmentationTask(
        model_factory="EncoderDecoderFactory", loss="ce", ignore_index=255, lr=1e-3, plot_on_val=False,
        model_args={"backbone": VARIANT, "backbone_pretrained": False, "backbone_num_frames": dm.n_dates,
                    "backbone_bands": ["BLUE", "NIR_NARROW", "SWIR_2"], "decoder": "FCNDecoder",
                    "necks": [{"name": "SelectIndices", "indices": [-1]},
                              {"name": "ReshapeTokensToImage", "effective_time_dim": dm.n_dates}],
                    "num_classes": dm.num_classes},
    )  # fmt: skip
    before = {k: v.detach().clone() for k, v in task.model.encoder.state_dict().items()}
    losses: list[float] = []

    class Losses(lightning.Callback):
        def on_train_batch_end(self, trainer: object, module: object, outputs: Any, batch: Any, i: int) -> None:
            losses.append(float(outputs["loss"]))

    trainer = lightning.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Losses()],
    )  # fmt: skip
    trainer.fit(task, datamodule=dm)
    assert len(losses) == 2 and all(0 < x < 10 for x in losses)
    after = task.model.encoder.state_dict()
    assert not torch.equal(after["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    assert not torch.equal(after["temporal_embed_enc.scale"], before["temporal_embed_enc.scale"])  # dates used


def test_fit_resolves_prithvi_input_and_refuses_what_it_was_not_pretrained_on(reflectance: Path) -> None:
    import dataclasses

    from eoshard.training.config import TrainConfig
    from eoshard.training.errors import ConfigError
    from eoshard.training.foundation import order_by_wavelength, resolve_input
    from eoshard.training.manifest import Manifest

    manifest = Manifest.read(reflectance)
    base = {"dataset": str(reflectance), "output": "-", "architecture": "prithvi"}
    resolved = resolve_input(TrainConfig.from_dict(base), manifest)  # default: the model's bands the dataset has
    assert resolved.bands == ["B02", "B8A", "B12"] and resolved.normalisation == "prithvi-eo-2"
    assert resolved.model == {"bands": ["B02", "B8A", "B12"], "num_frames": len(manifest.dates), "year": 2024}
    unet = TrainConfig.from_dict(base | {"architecture": "unet", "bands": ["B12", "B02"]})
    assert resolve_input(unet, manifest) is unet  # other architectures read what they are given
    with pytest.raises(ConfigError, match="standardised with 'prithvi-eo-2', not 'terramind-v1'"):
        resolve_input(TrainConfig.from_dict(base | {"normalisation": "terramind-v1"}), manifest)
    with pytest.raises(ConfigError, match=r"model bands \['B12', 'B02'\] differ from the input \['B02', 'B12'\]"):
        resolve_input(TrainConfig.from_dict(base | {"bands": ["B02", "B12"], "model": {"bands": ["B12", "B02"]}}),
                      manifest)  # fmt: skip
    # wavelengths from band_metadata; a dataset without it falls back to the order of the model's table
    assert [manifest.raw["band_metadata"][b]["wavelength_nm"] for b in resolved.bands] == sorted(
        manifest.raw["band_metadata"][b]["wavelength_nm"] for b in resolved.bands
    )
    bare = dataclasses.replace(manifest, raw={k: v for k, v in manifest.raw.items() if k != "band_metadata"})
    assert order_by_wavelength(bare, ["B12", "B8A", "B02"], "prithvi-eo-2") == ["B02", "B8A", "B12"]
