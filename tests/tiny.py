"""Tiny real diffusers components built in code, shared by the fast tests (same block types as SD, tiny widths)."""

from __future__ import annotations

import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED = SHARED if SHARED.exists() else Path("/work/shared")  # a git worktree under /work/wt/ reads the same folder
SD15 = SHARED / "architectures" / "stable-diffusion-v1-5"
SD21 = SHARED / "architectures" / "stable-diffusion-2-1-base"
BKSDM = SHARED / "architectures" / "bk-sdm-small"

# Tiny versions of each family's UNet: same block types and options as the real config, tiny widths.
def tiny_unet_config(family: str = "sd15", cross_attention_dim: int = 32) -> dict:
    base = json.loads((SD15 / "unet" / "config.json").read_text())
    if family == "sd21":
        base = json.loads((SD21 / "unet" / "config.json").read_text())
    elif family == "bk-sdm-small":
        base = json.loads((BKSDM / "unet" / "config.json").read_text())
    cfg = {k: v for k, v in base.items() if not k.startswith("_")}
    cfg.update(block_out_channels=[32, 32, 64, 64], norm_num_groups=8, cross_attention_dim=cross_attention_dim,
               sample_size=8)
    if isinstance(cfg.get("attention_head_dim"), list):  # SD 2.x: per-block head dims
        cfg["attention_head_dim"] = [2, 4, 8, 8]
    else:
        cfg["attention_head_dim"] = 4
    return cfg


def compact_unet_config(family: str = "sd15") -> dict:
    """The tiny UNet cut to two levels of one layer: still every block type SD uses (cross-attention down and up
    blocks, plain down and up blocks, the cross-attention mid block), about a quarter of the ops, so backends whose
    lowering time grows with the graph (LiteRT, Core ML) lower it several times faster."""
    cfg = tiny_unet_config(family)
    cfg.update(block_out_channels=[32, 64], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
               up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], layers_per_block=1)
    if isinstance(cfg.get("attention_head_dim"), list):
        cfg["attention_head_dim"] = [4, 8]
    return cfg


def tiny_text_encoder_config(hidden: int = 32) -> dict:
    return dict(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=hidden)


def tiny_vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16, 16, 16],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=0.18215)


def write_tiny_pipeline(folder: Path, family: str = "sd15", weights: bool = True, seed: int = 0,
                        unet_config: dict | None = None) -> Path:
    """A real diffusers StableDiffusionPipeline folder with tiny random weights (safetensors) and real tokenizer
    (`unet_config`: another UNet config, e.g. compact_unet_config())."""
    import shutil

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    src = SD21 if family == "sd21" else SD15
    torch.manual_seed(seed)
    parts = {
        "unet": UNet2DConditionModel.from_config(unet_config or tiny_unet_config(family)),
        "vae": AutoencoderKL.from_config(tiny_vae_config()),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**tiny_text_encoder_config())),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in parts.items():
        module.save_pretrained(folder / name, safe_serialization=True)
        if not weights:
            for f in (folder / name).glob("*.safetensors"):
                f.unlink()
    shutil.copytree(src / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
    shutil.copytree(src / "scheduler", folder / "scheduler", dirs_exist_ok=True)
    index = json.loads((src / "model_index.json").read_text())
    for key in ("safety_checker", "feature_extractor"):
        index[key] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
