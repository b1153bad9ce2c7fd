"""The tensor algebra both methods share: guidance embedding, LCM boundary scalings, DDIM steps and targets.

Separate because it is pure functions of tensors (no models, no settings), tested against diffusers' own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgediff.errors import ModelLoadError


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of w (= CFG scale - 1) as the `timestep_cond` input: [B] -> [B, dim].

    Same convention as diffusers' LCM and StableDiffusion pipelines (w scaled by 1000, log-spaced
    frequencies from 1 to 1/10000, sines then cosines, zero-padded if dim is odd)."""
    w = w.float().reshape(-1) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :].to(w.device)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def boundary_scalings(t: torch.Tensor, timestep_scaling: float, sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's c_skip(t), c_out(t): f(x, 0) = x exactly, f(x, t) ~ predicted x0 for t >> 0."""
    scaled = t.float() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def _bcast(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def split_prediction(out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a UNet output for the prediction types diffusers SD schedulers use."""
    a, s = _bcast(alpha_bar).sqrt(), _bcast(1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return (x - s * out) / a, out
    if prediction_type == "v_prediction":
        return a * x - s * out, a * out + s * x
    if prediction_type == "sample":
        return out, (x - a * out) / s
    raise ModelLoadError(f"unsupported scheduler prediction_type {prediction_type!r} (epsilon, v_prediction or sample)")


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_next: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) to the next alpha_bar."""
    return _bcast(alpha_bar_next).sqrt() * x0 + _bcast(1 - alpha_bar_next).sqrt() * eps


def ddim_x0_target(x_t: torch.Tensor, x_end: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_end: torch.Tensor) -> torch.Tensor:
    """The x0 prediction whose DDIM step from x_t lands exactly on x_end (progressive distillation's target)."""
    ratio = _bcast(((1 - alpha_bar_end) / (1 - alpha_bar_t)).sqrt())
    return (x_end - ratio * x_t) / (_bcast(alpha_bar_end).sqrt() - ratio * _bcast(alpha_bar_t).sqrt())


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    return (torch.sqrt((a.float() - b.float()) ** 2 + c**2) - c).mean()
