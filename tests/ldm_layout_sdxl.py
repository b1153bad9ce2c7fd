"""Tiny SDXL checkpoints in the original (Stability / A1111 / ComfyUI) layout, written from tiny diffusers modules:
CLIP-L under conditioner.embedders.0.transformer (Hugging Face names), OpenCLIP under conditioner.embedders.1.model
(refiner: .0.model) with fused attention projections and an untransposed text projection, the UNet with label_emb."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.ldm_layout import CLIP_PARTS, _unet_key, _vae_key, write_checkpoint


def _unet(unet) -> dict[str, torch.Tensor]:
    layers = unet.config.layers_per_block
    attention_up = [hasattr(b, "attentions") for b in unet.up_blocks]
    out = {}
    for k, v in unet.state_dict().items():
        if k.startswith("add_embedding."):
            key = k.replace("add_embedding.linear_1", "label_emb.0.0").replace("add_embedding.linear_2", "label_emb.0.2")
        else:
            key = _unet_key(k, layers, attention_up)
        out["model.diffusion_model." + key] = v
    return out


def _open_clip(module, prefix: str) -> dict[str, torch.Tensor]:
    state = {k.removeprefix("text_model."): v for k, v in module.state_dict().items()}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"],
           prefix + "text_projection": state["text_projection.weight"].T.contiguous(),
           prefix + "logit_scale": torch.tensor(4.6)}
    for i in range(module.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([state[src + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
            for new, old in CLIP_PARTS.items():
                out[dst + f"{old}.{kind}"] = state[src + f"{new}.{kind}"]
    return out


def to_ldm_sdxl(pipe) -> dict[str, torch.Tensor]:
    """One checkpoint dict in the original SDXL layout from a diffusers SDXL pipeline (base or refiner)."""
    out = _unet(pipe.unet)
    levels = len(pipe.vae.config.block_out_channels)
    for k, v in pipe.vae.state_dict().items():
        key = _vae_key(k, levels)
        if ".mid.attn_1." in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            v = v[:, :, None, None]
        out["first_stage_model." + key] = v
    if pipe.text_encoder is not None:
        clip = {k if k.startswith("text_model.") else "text_model." + k: v
                for k, v in pipe.text_encoder.state_dict().items()}
        out.update({"conditioner.embedders.0.transformer." + k: v for k, v in clip.items()})
        out.update(_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        out.update(_open_clip(pipe.text_encoder_2, "conditioner.embedders.0.model."))
    return out


def tiny_sdxl_checkpoint(tmp: Path, refiner: bool = False) -> tuple[Path, Path]:
    """(single file, the equivalent diffusers folder) of one tiny SDXL base or refiner."""
    from tests.sdxl_tiny import build_tiny_sdxl, write_tiny_sdxl

    name = "sdxl-refiner" if refiner else "sdxl"
    folder = write_tiny_sdxl(tmp / f"{name}-folder", refiner=refiner)
    pipe = build_tiny_sdxl(refiner=refiner)  # the same seed: the same weights as the folder
    tmp.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(to_ldm_sdxl(pipe), tmp / f"{name}.safetensors"), folder
