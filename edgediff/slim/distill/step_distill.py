"""CFG-aware step distillation (SnapFusion-style): the student's DDIM grid, its loss, its own rollouts,
and the trailing-spacing DDIMScheduler config it samples with.

Separate from consistency distillation: a different target (the guided teacher's finer trajectory) and sampler.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from edgediff.slim.distill.maths import _bcast, ddim_step, ddim_x0_target, guidance_embedding, split_prediction
from edgediff.slim.distill.settings import DistillSettings
from edgediff.slim.distill.teacher import Schedule, _teacher_guided, _unet

# diffusers is imported inside the functions that build or load models: it costs seconds and prints warnings
# on import, and this package is imported by every recipe run (edgediff.slim.steps registers `distill`).

def student_timesteps(scheduler_config: dict[str, Any], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's DDIM timesteps (trailing spacing) and the timestep each one steps to (-1 = clean)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(step_scheduler_config(scheduler_config))
    sched.set_timesteps(steps)
    ts = sched.timesteps.long()
    nxt = ts - sched.config.num_train_timesteps // steps
    return ts, torch.where(nxt < 0, torch.full_like(nxt, -1), nxt)


def step_distill_loss(
    student: Any, teacher: Any, sched: Schedule, settings: DistillSettings, steps: tuple[torch.Tensor, torch.Tensor],
    x0: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Student's one DDIM step must land where `teacher_steps / N` guided teacher DDIM steps land."""
    n, device = x0.shape[0], x0.device
    ts, nxt = steps
    pick = torch.randint(0, len(ts), (n,), generator=gen)
    t, t_end = ts[pick].to(device), nxt[pick].to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    guided = torch.rand(n, generator=gen) < settings.guided_fraction
    sampled = settings.guidance_min + (settings.guidance_max - settings.guidance_min) * torch.rand(n, generator=gen)
    scale = torch.where(guided, sampled, torch.ones(n)).to(device)
    cond = guidance_embedding(scale - 1.0, settings.guidance_embedding_dim).to(device)
    a_t = sched.alpha_bar(t)
    x_t = _bcast(a_t).sqrt() * x0 + _bcast(1 - a_t).sqrt() * noise
    rollout = settings.rollout_fraction > 0 and float(torch.rand(1, generator=gen)) < settings.rollout_fraction
    if rollout and len(ts) > 1:
        k = int(torch.randint(1, len(ts), (1,), generator=gen))
        x_t = student_rollout(student, sched, ts, nxt, k, noise, text, cond)
        t, t_end = ts[k].repeat(n).to(device), nxt[k].repeat(n).to(device)
        a_t = sched.alpha_bar(t)

    sub = settings.teacher_steps // settings.steps
    with torch.no_grad():
        x = x_t
        # Intermediate teacher timesteps: evenly spaced from t to t_end (t_end = -1 means "clean").
        grid = [torch.round(t.float() + (t_end.float() - t.float()) * j / sub).long() for j in range(sub + 1)]
        for j in range(sub):
            g_x0, g_eps = _teacher_guided(teacher, sched, x, grid[j], text, empty, scale)
            x = ddim_step(g_x0, g_eps, sched.alpha_bar(grid[j + 1]))
        x0_goal = ddim_x0_target(x_t, x, a_t, sched.alpha_bar(t_end))
    out = _unet(student, x_t, t, text, cond)
    pred_x0, pred_eps = split_prediction(out, x_t, a_t, sched.prediction_type)
    snr_weight = _bcast((a_t / (1 - a_t)).clamp(min=1.0))  # truncated SNR weighting (x0 space)
    distill = (snr_weight * (pred_x0 - x0_goal) ** 2).mean()
    plain = ~guided.to(device) & (not rollout)  # a rolled-out x_t has no known noise to denoise against
    denoise = F.mse_loss(pred_eps[plain], noise[plain]) if bool(plain.any()) else out.sum() * 0.0
    loss = distill + settings.denoise_weight * denoise
    return loss, {"distill": float(distill.detach()), "denoise": float(denoise.detach())}


@torch.no_grad()
def student_rollout(student: Any, sched: Schedule, ts: torch.Tensor, nxt: torch.Tensor, k: int, noise: torch.Tensor,
                    text: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The student's own first `k` DDIM steps from pure noise: the inputs it meets at step k when sampling.

    Noising training images reaches every timestep, but after the first step the sampler feeds the student its own
    earlier output, which lies off that distribution (exposure bias); training some batches on these inputs, with
    the guided teacher's steps from there as the target, closes that gap."""
    x = noise
    for j in range(k):
        t = ts[j].repeat(x.shape[0]).to(x.device)
        pred_x0, pred_eps = split_prediction(_unet(student, x, t, text, cond), x, sched.alpha_bar(t),
                                             sched.prediction_type)
        x = ddim_step(pred_x0, pred_eps, sched.alpha_bar(nxt[j].repeat(x.shape[0]).to(x.device)))
    return x


def step_scheduler_config(teacher_config: dict[str, Any]) -> dict[str, Any]:
    """A DDIMScheduler config (trailing spacing: the first step starts at the noisiest timestep)."""
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "rescale_betas_zero_snr")
    config = {k: teacher_config[k] for k in keep if k in teacher_config}
    config.update(timestep_spacing="trailing", set_alpha_to_one=True, steps_offset=1, clip_sample=False)  # offset unused when trailing
    return config
