"""Test helpers: tiny LoRA files made in code, in the diffusers / PEFT layout and in kohya's (A1111, ComfyUI)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def random_lora(module: torch.nn.Module, prefix: str, targets: set[str], rank: int, seed: int,
                scale: float = 0.2) -> dict[str, torch.Tensor]:
    """lora_A / lora_B pairs (diffusers / PEFT names, `prefix.` first) for every Linear or Conv2d whose last name
    part (or last two, like `to_out.0`) is in `targets`. Conv layers get kohya's LoCon shapes."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, layer in module.named_modules():
        if not ({name.rsplit(".", 1)[-1], ".".join(name.split(".")[-2:])} & targets):
            continue
        if isinstance(layer, torch.nn.Linear):
            down, up = (rank, layer.in_features), (layer.out_features, rank)
        elif isinstance(layer, torch.nn.Conv2d):
            down, up = (rank, layer.in_channels, *layer.kernel_size), (layer.out_channels, rank, 1, 1)
        else:
            continue
        out[f"{prefix}.{name}.lora_A.weight"] = torch.randn(down, generator=g) * scale
        out[f"{prefix}.{name}.lora_B.weight"] = torch.randn(up, generator=g) * scale
    assert out, f"no layer of {type(module).__name__} matched {targets}"
    return out


def to_kohya(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """kohya's names: `lora_unet_` / `lora_te_` + the module path with underscores (the text encoder under
    `text_model`, as in the Hugging Face CLIP kohya trains), `lora_down` / `lora_up`, one `alpha` per layer."""
    out = {}
    for key, value in state.items():
        prefix, rest = key.split(".", 1)
        path, which = rest.rsplit(".lora_", 1)
        if prefix == "text_encoder":
            path = "text_model." + path
        name = ("lora_unet_" if prefix == "unet" else "lora_te_") + path.replace(".", "_")
        out[f"{name}.{'lora_down' if which.startswith('A') else 'lora_up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def write_lora(state: dict[str, torch.Tensor], path: Path, alpha_by_part: dict[str, float] | None = None) -> Path:
    """A safetensors LoRA; diffusers-layout files may carry their LoraConfig (rank, alpha) as diffusers saves it."""
    from safetensors.torch import save_file

    metadata = {"format": "pt"}
    if alpha_by_part:
        config = {}
        for part, alpha in alpha_by_part.items():
            rank = next(v.shape[1] for k, v in state.items() if k.startswith(part + ".") and ".lora_B." in k)
            targets = sorted({k.split(".lora_")[0].removeprefix(part + ".") for k in state if k.startswith(part + ".")})
            config.update({f"{part}.r": rank, f"{part}.lora_alpha": alpha, f"{part}.target_modules": targets})
        metadata["lora_adapter_metadata"] = json.dumps(config)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata)
    return path
