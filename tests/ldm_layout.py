"""Test helpers: tiny SD pipelines that obey each family's rules, and the inverse of the single-file mapping
(diffusers module names -> the original CompVis / A1111 layout), written independently of diffusers' converters so
the two directions check each other."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from edgediff.model.single_file import CONFIGS

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
CLIP_PARTS = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
              "self_attn.out_proj": "attn.out_proj"}


def family_configs(family: str, inpainting: bool = False) -> dict[str, dict]:
    """The family's real configs (as edgediff ships them) at tiny widths that keep the family's fixed rules:
    32 norm groups, SD 1.x's 8 heads, SD 2.x's and CLIP's 64-channel heads."""
    def real(part):
        return {k: v for k, v in json.loads((CONFIGS / family / f"{part}.json").read_text()).items()
                if not k.startswith("_")}

    unet, vae, text = real("unet"), real("vae"), real("text_encoder")
    widths = [32, 32, 64, 64] if family == "sd1" else [64, 64, 128, 128]
    unet.update(block_out_channels=widths, cross_attention_dim=64, in_channels=9 if inpainting else 4,
                attention_head_dim=8 if family == "sd1" else [w // 64 for w in widths])
    vae.update(block_out_channels=[32, 32, 64, 64], layers_per_block=1)
    text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1)
    return {"unet": unet, "vae": vae, "text_encoder": text}


def build_modules(configs: dict[str, dict], seed: int = 0, device: str = "cpu") -> dict[str, torch.nn.Module]:
    """Real diffusers / transformers modules; random but non-degenerate weights (norms and biases too)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with torch.device(device):
        modules = {"unet": UNet2DConditionModel.from_config(configs["unet"]),
                   "vae": AutoencoderKL.from_config(configs["vae"]),
                   "text_encoder": CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))}
    if device == "cpu":
        with torch.no_grad():
            for module in modules.values():
                for name, p in module.named_parameters():
                    if name.endswith("bias") or "norm" in name:
                        p.add_(torch.randn_like(p) * 0.02)  # zero biases would hide a bias mapped to the wrong place
    return {k: m.eval() for k, m in modules.items()}


def write_pipeline_folder(folder: Path, family: str, modules: dict[str, torch.nn.Module],
                          prediction_type: str = "epsilon") -> Path:
    """The diffusers folder equivalent to the single file: same modules, the family's tokenizer and scheduler."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        module.save_pretrained(folder / name, safe_serialization=True)
    (folder / "tokenizer").mkdir(exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy2(CONFIGS / "clip-tokenizer" / name, folder / "tokenizer" / name)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(CONFIGS / family / name, folder / "tokenizer" / name)
    scheduler = json.loads((CONFIGS / family / "scheduler.json").read_text()) | {"prediction_type": prediction_type}
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    index = {"_class_name": "StableDiffusionPipeline", "text_encoder": ["transformers", "CLIPTextModel"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", scheduler["_class_name"]]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# ---- diffusers -> original layout --------------------------------------------------------------------------------


def to_ldm(modules: dict[str, torch.nn.Module], family: str) -> dict[str, torch.Tensor]:
    """One checkpoint dict in the original layout, with the extras real files carry (buffers, an EMA counter, and
    for SD 2.x the unused last text block, text projection and logit scale)."""
    unet, vae, text = modules["unet"], modules["vae"], modules["text_encoder"]
    layers = unet.config.layers_per_block
    attention_up = [hasattr(b, "attentions") for b in unet.up_blocks]
    out = {"model.diffusion_model." + _unet_key(k, layers, attention_up): v for k, v in unet.state_dict().items()}
    levels = len(vae.config.block_out_channels)
    for k, v in vae.state_dict().items():
        key = _vae_key(k, levels)
        if ".mid.attn_1." in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            v = v[:, :, None, None]  # the original stores these as 1x1 convolutions
        out["first_stage_model." + key] = v
    text_state = text.state_dict()
    if family == "sd1":
        out.update({"cond_stage_model.transformer.text_model." + k: v for k, v in text_state.items()})
        out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    else:
        out.update(_open_clip(text_state, text.config))
    device = next(unet.parameters()).device
    out["alphas_cumprod"] = torch.linspace(1, 0, 1000, device=device)
    out["model_ema.num_updates"] = torch.tensor(7, device=device)
    return out


def _unet_key(key: str, layers: int, attention_up: list[bool]) -> str:
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for new, old in fixed.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    p = key.split(".")
    if p[0] == "down_blocks":
        b = int(p[1])
        if p[2] == "downsamplers":
            return f"input_blocks.{(b + 1) * (layers + 1)}.0.op.{p[-1]}"
        index = 1 + b * (layers + 1) + int(p[3])
        return f"input_blocks.{index}." + (_resnet(p[4:]) if p[2] == "resnets" else "1." + ".".join(p[4:]))
    if p[0] == "mid_block":
        if p[1] == "resnets":
            return f"middle_block.{2 * int(p[2])}." + _resnet(p[3:]).removeprefix("0.")
        return "middle_block.1." + ".".join(p[3:])
    if p[0] == "up_blocks":
        b = int(p[1])
        if p[2] == "upsamplers":
            return f"output_blocks.{b * (layers + 1) + layers}.{2 if attention_up[b] else 1}.conv.{p[-1]}"
        index = b * (layers + 1) + int(p[3])
        return f"output_blocks.{index}." + (_resnet(p[4:]) if p[2] == "resnets" else "1." + ".".join(p[4:]))
    raise KeyError(key)


def _resnet(rest: list[str]) -> str:
    return "0." + RESNET[rest[0]] + "." + ".".join(rest[1:])


def _vae_key(key: str, levels: int) -> str:
    p = key.split(".")
    if p[0] not in ("encoder", "decoder"):
        return key  # quant_conv, post_quant_conv
    side, rest = p[0], p[1:]
    if rest[0] in ("down_blocks", "up_blocks"):
        i = int(rest[1]) if rest[0] == "down_blocks" else levels - 1 - int(rest[1])
        name = "down" if rest[0] == "down_blocks" else "up"
        if rest[2] in ("downsamplers", "upsamplers"):
            return f"{side}.{name}.{i}.{rest[2][:-2]}.conv.{rest[-1]}"  # downsamplers.0.conv -> downsample.conv
        return f"{side}.{name}.{i}.block.{rest[3]}." + ".".join(rest[4:]).replace("conv_shortcut", "nin_shortcut")
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{side}.mid.block_{int(rest[2]) + 1}." + ".".join(rest[3:])
        inner = ".".join(rest[3:])
        for new, old in VAE_ATTENTION.items():
            if inner.startswith(new + "."):
                inner = old + inner[len(new):]
        return f"{side}.mid.attn_1.{inner}"
    return f"{side}." + ".".join(rest).replace("conv_norm_out", "norm_out")


def _open_clip(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    p = "cond_stage_model.model."
    out = {p + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           p + "positional_embedding": state["embeddings.position_embedding.weight"],
           p + "ln_final.weight": state["final_layer_norm.weight"], p + "ln_final.bias": state["final_layer_norm.bias"]}
    n = config.num_hidden_layers
    for i in range(n + 1):  # block n is the unused last one real SD 2.x checkpoints carry
        src = f"encoder.layers.{min(i, n - 1)}."
        dst = f"{p}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [state[src + f"self_attn.{x}_proj.{kind}"] for x in "qkv"])
            for new, old in CLIP_PARTS.items():
                out[dst + f"{old}.{kind}"] = state[src + f"{new}.{kind}"] * (1 if i < n else 0.5)
    width = config.hidden_size
    device = state["final_layer_norm.weight"].device
    out[p + "text_projection"] = torch.randn(width, width, device=device) if device.type != "meta" else \
        torch.empty(width, width, device="meta")
    out[p + "logit_scale"] = torch.tensor(4.6, device=device)
    return out


def write_checkpoint(state: dict[str, torch.Tensor], path: Path, **extra) -> Path:
    """`.safetensors` through safetensors, anything else as a Lightning-style pickle {"state_dict": ..., ...}."""
    state = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 875000, **extra}, str(path))
    return path


def tiny_checkpoint(tmp: Path, family: str, inpainting: bool = False, suffix: str = ".safetensors",
                    prediction_type: str = "epsilon", seed: int = 0) -> tuple[Path, Path]:
    """(single file, equivalent diffusers folder) of one tiny model; a v-prediction file gets its sidecar yaml."""
    configs = family_configs(family, inpainting)
    if prediction_type == "v_prediction":
        configs["unet"]["sample_size"] = 96  # SD 2.x v-prediction is the 768 px model
    modules = build_modules(configs, seed)
    name = f"{family}{'-inpainting' if inpainting else ''}{'-v' if prediction_type == 'v_prediction' else ''}"
    folder = write_pipeline_folder(tmp / f"{name}-folder", family, modules, prediction_type)
    tmp.mkdir(parents=True, exist_ok=True)
    path = write_checkpoint(to_ldm(modules, family), tmp / f"{name}{suffix}")
    if prediction_type == "v_prediction":  # A1111's convention: the LDM config beside the checkpoint
        path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    return path, folder
