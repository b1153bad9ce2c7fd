"""Consistency distillation (Latent Consistency Models): its loss and the LCMScheduler config it samples with.

Separate from step distillation: a different target (an EMA student's consistency function) and sampler.
"""

from __future__ import annotations

from typing import Any

import torch

from edgediff.slim.distill.maths import (
    _bcast,
    boundary_scalings,
    ddim_step,
    guidance_embedding,
    pseudo_huber,
    split_prediction,
)
from edgediff.slim.distill.settings import DistillSettings
from edgediff.slim.distill.teacher import Schedule, _teacher_guided, _unet


def consistency_loss(
    student: Any, target: Any, teacher: Any, sched: Schedule, settings: DistillSettings,
    x0: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One LCM consistency-distillation loss on a batch (the student carries the gradient)."""
    n, device = x0.shape[0], x0.device
    k = sched.num_train_timesteps // settings.ode_steps
    solver = torch.arange(1, settings.ode_steps + 1) * k - 1  # same grid as LCMScheduler's origin steps
    t_start = solver[torch.randint(0, settings.ode_steps, (n,), generator=gen)].to(device)
    t_next = (t_start - k).clamp(min=0)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    if settings.embeds_guidance:
        scale = settings.guidance_min + (settings.guidance_max - settings.guidance_min) * torch.rand(n, generator=gen)
        cond = guidance_embedding(scale - 1.0, settings.guidance_embedding_dim).to(device)
    else:
        scale, cond = torch.full((n,), settings.guidance), None
    scale = scale.to(device)
    a_start = sched.alpha_bar(t_start)
    x_start = _bcast(a_start).sqrt() * x0 + _bcast(1 - a_start).sqrt() * noise

    skip_s, out_s = boundary_scalings(t_start, settings.timestep_scaling)
    pred_x0, _ = split_prediction(_unet(student, x_start, t_start, text, cond), x_start, a_start, sched.prediction_type)
    online = _bcast(skip_s) * x_start + _bcast(out_s) * pred_x0

    with torch.no_grad():
        g_x0, g_eps = _teacher_guided(teacher, sched, x_start, t_start, text, empty, scale)
        a_next = sched.alpha_bar(t_next)
        x_next = ddim_step(g_x0, g_eps, a_next)
        t_x0, _ = split_prediction(_unet(target, x_next, t_next, text, cond), x_next, a_next, sched.prediction_type)
        skip_n, out_n = boundary_scalings(t_next, settings.timestep_scaling)
        goal = _bcast(skip_n) * x_next + _bcast(out_n) * t_x0
    loss = pseudo_huber(online, goal, settings.huber_c)
    return loss, {}


def lcm_scheduler_config(teacher_config: dict[str, Any], settings: DistillSettings) -> dict[str, Any]:
    """An LCMScheduler config on the teacher's noise schedule and the solver grid used in training."""
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "rescale_betas_zero_snr")
    config = {k: teacher_config[k] for k in keep if k in teacher_config}
    config.update(
        original_inference_steps=settings.ode_steps, timestep_scaling=settings.timestep_scaling,
        set_alpha_to_one=True, steps_offset=1, clip_sample=False, timestep_spacing="leading",
    )
    return config
