"""The teacher side both methods share: loading the pipeline, its noise schedule, its guided predictions.

`_unet` (one UNet call with the optional guidance input) lives here too: teacher and student are called
through it alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgediff.errors import ModelLoadError
from edgediff.slim.distill.maths import _bcast, split_prediction
from edgediff.slim.image_inputs import refuse_image_unet

# diffusers is imported inside the functions that build or load models: it costs seconds and prints warnings
# on import, and this package is imported by every recipe run (edgediff.slim.steps registers `distill`).

def load_teacher(folder: Path) -> Any:
    """The teacher as a diffusers StableDiffusionPipeline (safetensors only, no code from the folder)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder (no model_index.json); distillation needs a teacher pipeline")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load teacher pipeline {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    refuse_image_unet(pipe.unet, folder)
    return pipe


@dataclass
class Schedule:
    """The teacher's training noise schedule (alphas_cumprod with index -1 meaning alpha_bar = 1)."""

    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> Schedule:
        return cls(
            alphas_cumprod=scheduler.alphas_cumprod.float().clone(),
            num_train_timesteps=int(scheduler.config.num_train_timesteps),
            prediction_type=str(scheduler.config.get("prediction_type", "epsilon")),
        )

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod.to(t.device)
        return torch.where(t >= 0, ac[t.clamp(min=0)], torch.ones_like(ac[0]))


def _unet(unet: Any, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    return unet(x, t, encoder_hidden_states=text, timestep_cond=cond, return_dict=False)[0]


@torch.no_grad()
def _teacher_guided(teacher: Any, sched: Schedule, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher (x0, eps) under classifier-free guidance at per-sample `scale` (1 = conditional only)."""
    out = _unet(teacher, torch.cat([x, x]), torch.cat([t, t]), torch.cat([empty, text]), None)
    uncond, cond = out.chunk(2)
    a = sched.alpha_bar(t)
    x0_u, eps_u = split_prediction(uncond, x, a, sched.prediction_type)
    x0_c, eps_c = split_prediction(cond, x, a, sched.prediction_type)
    s = _bcast(scale)
    return x0_u + s * (x0_c - x0_u), eps_u + s * (eps_c - eps_u)
