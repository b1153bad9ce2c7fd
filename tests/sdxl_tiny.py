"""Tiny SDXL pipelines built in code from the real SDXL configs shipped in edgediff/model/configs/sdxl/: the same
block types, added conditioning (text_time), two text encoders (the second with its projection) and VAE scaling
factor, at tiny widths. Saved by diffusers' own StableDiffusionXLPipeline, so the folder layout is the real one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "edgediff" / "model" / "configs" / "sdxl"
TOKENIZER = Path("/work/shared/architectures/stable-diffusion-v1-5/tokenizer")  # CLIP ViT-L's BPE files
TE_HIDDEN = 32


def _config(name: str) -> dict:
    return {k: v for k, v in json.loads((CONFIGS / name).read_text()).items() if not k.startswith("_")}


def tiny_unet_config(refiner: bool = False) -> dict:
    """Two levels (the base's DownBlock2D then CrossAttnDownBlock2D with 2 transformer layers), 6 time ids of 8
    channels (refiner: 5, with the aesthetic score)."""
    cfg = _config("unet_refiner.json" if refiner else "unet.json")
    n_ids = 5 if refiner else 6
    cross = TE_HIDDEN if refiner else 2 * TE_HIDDEN
    cfg.update(block_out_channels=[32, 64], down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
               up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], attention_head_dim=[2, 4],
               transformer_layers_per_block=[1, 2], layers_per_block=1, norm_num_groups=32, sample_size=8,
               cross_attention_dim=cross, addition_time_embed_dim=8,
               projection_class_embeddings_input_dim=TE_HIDDEN + n_ids * 8)
    return cfg


def tiny_text_config(second: bool) -> dict:
    cfg = _config("text_encoder_2.json" if second else "text_encoder.json")
    cfg.pop("architectures", None)
    cfg.update(hidden_size=TE_HIDDEN, intermediate_size=2 * TE_HIDDEN, num_hidden_layers=3, num_attention_heads=2,
               projection_dim=TE_HIDDEN)
    return cfg


def tiny_vae_config() -> dict:
    cfg = _config("vae.json")
    cfg.update(block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=64)  # SDXL's 32 groups
    return cfg


def write_tokenizer(folder: Path, second: bool) -> None:
    """SDXL's tokenizers share CLIP's vocabulary; the second pads with "!" (OpenCLIP's convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy2(TOKENIZER / name, folder / name)
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy2(CONFIGS / ("tokenizer_2" if second else "tokenizer") / name, folder / name)


def build_tiny_sdxl(refiner: bool = False, turbo: bool = False, seed: int = 0):
    """A diffusers StableDiffusionXLPipeline (Img2Img for the refiner) with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(tiny_unet_config(refiner))
    vae = AutoencoderKL.from_config(tiny_vae_config())
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**tiny_text_config(True)))
    text_encoder = None if refiner else CLIPTextModel(CLIPTextConfig(**tiny_text_config(False)))
    sched_cls = EulerAncestralDiscreteScheduler if turbo else EulerDiscreteScheduler
    scheduler = sched_cls.from_config(_config("scheduler_turbo.json" if turbo else "scheduler.json"))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp) / "t1", False)
        write_tokenizer(Path(tmp) / "t2", True)
        tokenizer = CLIPTokenizer.from_pretrained(str(Path(tmp) / "t1"))
        tokenizer_2 = CLIPTokenizer.from_pretrained(str(Path(tmp) / "t2"))
    if refiner:
        return StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer_2,
            unet=unet, scheduler=scheduler, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)


def write_tiny_sdxl(folder: Path, refiner: bool = False, turbo: bool = False, seed: int = 0) -> Path:
    """The tiny pipeline saved as a diffusers folder, with the classic vocab/merges tokenizer files."""
    pipe = build_tiny_sdxl(refiner, turbo, seed)
    pipe.save_pretrained(folder, safe_serialization=True)
    for name, second in (("tokenizer", False), ("tokenizer_2", True)):
        if (folder / name).exists():
            shutil.rmtree(folder / name)
            write_tokenizer(folder / name, second)
    return folder


def write_full_size_configs(folder: Path, refiner: bool = False) -> Path:
    """The real SDXL base (or refiner) folder from the configs shipped in edgediff, without weights: what
    `edgediff convert --random-weights` builds the full architecture from (2.6B-parameter UNet for the base)."""
    index = json.loads((CONFIGS / ("model_index_refiner.json" if refiner else "model_index.json")).read_text())
    parts = {"unet": ("diffusers", "UNet2DConditionModel", "unet_refiner.json" if refiner else "unet.json"),
             "vae": ("diffusers", "AutoencoderKL", "vae.json"),
             "text_encoder_2": ("transformers", "CLIPTextModelWithProjection", "text_encoder_2.json"),
             "scheduler": ("diffusers", "EulerDiscreteScheduler", "scheduler.json")}
    if not refiner:
        parts["text_encoder"] = ("transformers", "CLIPTextModel", "text_encoder.json")
    for name, (library, class_name, config) in parts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        file = "scheduler_config.json" if name == "scheduler" else "config.json"
        shutil.copy2(CONFIGS / config, folder / name / file)
        index[name] = [library, class_name]
    for name, second in (("tokenizer", False), ("tokenizer_2", True)):
        if second or not refiner:
            write_tokenizer(folder / name, second)
            index[name] = ["transformers", "CLIPTokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
