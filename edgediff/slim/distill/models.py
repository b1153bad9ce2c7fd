"""The student UNet: the teacher's architecture plus a guidance input, and LoRA adapters (LCM-LoRA).

Separate from the losses: these build and reshape modules, they compute nothing about diffusion.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from edgediff.errors import ModelLoadError, RecipeError

# diffusers is imported inside the functions that build or load models: it costs seconds and prints warnings
# on import, and this package is imported by every recipe run (edgediff.slim.steps registers `distill`).

_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


class LoRALinear(torch.nn.Module):
    """y = W x + (alpha / r) B A x with B zero-initialised; `fused()` folds it back into one Linear."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.lora_up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_up.weight)
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_up(self.lora_down(x)) * self.scale

    def fused(self) -> torch.nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scale * (self.lora_up.weight @ self.lora_down.weight)
        return self.base


def add_lora(unet: torch.nn.Module, rank: int, alpha: float | None = None) -> int:
    """Freeze the UNet and wrap its attention/feed-forward linears with LoRA; returns how many were wrapped."""
    unet.requires_grad_(False)
    count = 0
    for name, module in list(unet.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, torch.nn.Linear) and any(full.endswith(t) for t in _LORA_TARGETS):
                setattr(module, child_name, LoRALinear(child, rank, float(alpha or rank)))
                count += 1
    if not count:
        raise RecipeError("no attention or feed-forward Linear layers found to attach LoRA to")
    return count


def fuse_lora(unet: torch.nn.Module) -> int:
    """Replace every LoRALinear by its fused Linear (weights W + scale * B A); returns how many."""
    count = 0
    for module in list(unet.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.fused())
                count += 1
    return count


def make_student_unet(teacher_unet: Any, embedding_dim: int | None) -> Any:
    """The teacher's architecture (plus a guidance input when embedding_dim is set), initialised from the
    teacher so that it starts out computing exactly what the teacher computes."""
    from diffusers import UNet2DConditionModel

    config = dict(teacher_unet.config)
    if embedding_dim is not None:
        if config.get("time_cond_proj_dim") not in (None, embedding_dim):
            raise ModelLoadError(
                f"the teacher UNet already has time_cond_proj_dim={config['time_cond_proj_dim']}; "
                f"pass --guidance-embedding-dim {config['time_cond_proj_dim']}"
            )
        config["time_cond_proj_dim"] = embedding_dim
    student = UNet2DConditionModel.from_config(config)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or any(k != "time_embedding.cond_proj.weight" for k in missing):
        raise ModelLoadError(f"student/teacher weight mismatch: missing={missing} unexpected={unexpected}")
    if "time_embedding.cond_proj.weight" in missing:
        torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student
