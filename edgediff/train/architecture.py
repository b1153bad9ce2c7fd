"""Configs of the embedded default model: a tiny but real Stable Diffusion (CLIP text encoder,
cross-attention UNet with SD block types, 8x-downscaling AutoencoderKL, SD's noise schedule).

Sizes are chosen so the whole diffusers folder stays under 20 MB (the CLIP token embedding, which
must keep the real tokenizer's 49408 rows, dominates) and training fits in well under an hour on
two CPU cores even when the machine is shared: per-sample compute is what limits training here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SD15_TOKENIZER = "/work/shared/architectures/stable-diffusion-v1-5/tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


@dataclass(frozen=True)
class TextEncoderShape:
    hidden_size: int = 32
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    vocab_size: int = 49408  # the real CLIP BPE vocabulary
    max_position_embeddings: int = 77


@dataclass(frozen=True)
class UNetShape:
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    norm_num_groups: int = 16


@dataclass(frozen=True)
class VAEShape:
    block_out_channels: tuple[int, ...] = (16, 32, 32, 32)  # 4 blocks = 3 downsamples = 8x
    layers_per_block: int = 1
    latent_channels: int = 4
    # 4 channels per group at full resolution: one channel per group would normalise each colour
    # channel per image and erase the flat colours this data is made of.
    norm_num_groups: int = 4
    # Fully convolutional (no mid-block attention): cheap, and lets the VAE train on crops.
    mid_block_add_attention: bool = False


@dataclass(frozen=True)
class Architecture:
    text: TextEncoderShape = field(default_factory=TextEncoderShape)
    unet: UNetShape = field(default_factory=UNetShape)
    vae: VAEShape = field(default_factory=VAEShape)
    resolution: int = 64


def build_vae(arch: Architecture):
    from diffusers import AutoencoderKL

    v = arch.vae
    n = len(v.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=v.block_out_channels,
        layers_per_block=v.layers_per_block,
        latent_channels=v.latent_channels,
        norm_num_groups=v.norm_num_groups,
        mid_block_add_attention=v.mid_block_add_attention,
        sample_size=arch.resolution,
        scaling_factor=1.0,  # replaced by the measured value after VAE training
    )


def build_text_encoder(arch: Architecture):
    from transformers import CLIPTextConfig, CLIPTextModel

    t = arch.text
    config = CLIPTextConfig(
        vocab_size=t.vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        max_position_embeddings=t.max_position_embeddings,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
        projection_dim=t.hidden_size,
    )
    return CLIPTextModel(config)


def build_unet(arch: Architecture):
    from diffusers import UNet2DConditionModel

    u = arch.unet
    latent = arch.resolution // 2 ** (len(arch.vae.block_out_channels) - 1)
    return UNet2DConditionModel(
        sample_size=latent,
        in_channels=arch.vae.latent_channels,
        out_channels=arch.vae.latent_channels,
        down_block_types=u.down_block_types,
        up_block_types=u.up_block_types,
        block_out_channels=u.block_out_channels,
        layers_per_block=u.layers_per_block,
        attention_head_dim=u.attention_head_dim,
        cross_attention_dim=arch.text.hidden_size,
        norm_num_groups=u.norm_num_groups,
    )


def build_scheduler_config() -> dict:
    """SD 1.x's training noise schedule (scaled_linear 0.00085..0.012 over 1000 steps, epsilon)."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "clip_sample": False,
    }
