"""A tiny randomly initialised StableDiffusionPipeline (64x64 images, 8x8x4 latents) saved as a diffusers
folder: a real teacher architecture for distillation tests that runs in seconds on a CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

TOKENIZER = Path("/work/shared/architectures/stable-diffusion-v1-5/tokenizer")
SD15_SCHEDULER = Path("/work/shared/architectures/stable-diffusion-v1-5/scheduler/scheduler_config.json")


def tokenizer_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "shared/architectures/stable-diffusion-v1-5/tokenizer"
    return here if here.is_dir() else TOKENIZER


def save_tiny_teacher(folder: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
        sample_size=64,
    )
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32,
    ))
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir()))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir() / name, Path(folder) / "tokenizer" / name)  # the files devices need
    return Path(folder)
