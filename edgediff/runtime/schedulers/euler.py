"""The sigma-space samplers as tables: EulerDiscreteScheduler and EulerAncestralDiscreteScheduler.

Both work on k-diffusion sigmas (x = x0 + sigma * eps) and share one sigma schedule (`_sigma_schedule`,
also used by Heun). The ancestral sampler steps down to `sigma_down` and adds fresh noise of size
`sigma_up`, which is the table's per-step noise term.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.noise_schedule import (
    _alphas_cumprod,
    _check_spacing,
    _discrete_sigmas,
    _karras,
    _prediction,
    _reject_sigma_variants,
    _sigma_to_t,
)


def _sigma_schedule(cfg: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(timesteps, sigmas at those timesteps, all training sigmas, spacing) as diffusers' Euler-family
    `set_timesteps` computes them, before the final sigma is appended."""
    ac = _alphas_cumprod(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24  # diffusers' stand-in for zero terminal SNR (a finite first sigma)
    train = int(cfg["num_train_timesteps"])
    spacing = _check_spacing(cfg)
    if spacing == "linspace":
        timesteps = np.linspace(0, train - 1, n, dtype=np.float32)[::-1].astype(np.float64)
    elif spacing == "leading":
        timesteps = (np.arange(0, n) * (train // n)).round()[::-1].astype(np.float32) + int(cfg["steps_offset"])
    else:
        timesteps = np.arange(train, 0, -train / n).round().astype(np.float32) - 1
    timesteps = timesteps.astype(np.float64)
    full = _discrete_sigmas(ac)
    sigmas = np.interp(timesteps, np.arange(len(full)), full)
    if cfg.get("use_karras_sigmas"):
        sigmas = _karras(sigmas, n, cfg)
        timesteps = _sigma_to_t(sigmas, full)
    return timesteps, sigmas, full, spacing


def _sigma_x0(kind: str, sigma: float) -> tuple[float, float]:
    """x0 = a * x + b * model_output at noise level `sigma` (k-diffusion parameterisation)."""
    if kind == "epsilon":
        return 1.0, -sigma
    if kind == "v_prediction":
        return 1.0 / (sigma * sigma + 1), -sigma / math.sqrt(sigma * sigma + 1)
    return 0.0, 1.0


def _init_sigma(sigmas: np.ndarray, spacing: str) -> float:
    max_sigma = float(np.float32(sigmas.max()))
    return max_sigma if spacing in ("linspace", "trailing") else math.sqrt(max_sigma**2 + 1)


def _f32(values: np.ndarray) -> np.ndarray:
    """Round to float32 and back: diffusers keeps sigmas and timesteps in float32."""
    return np.asarray(values).astype(np.float32).astype(np.float64)


def _euler(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample", "original_sample"))
    _reject_sigma_variants(cfg, ("use_exponential_sigmas", "use_beta_sigmas"))
    if cfg["interpolation_type"] != "linear":
        raise UnsupportedError(f"interpolation_type {cfg['interpolation_type']!r} is not supported; use 'linear'")
    if cfg["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise UnsupportedError(f"final_sigmas_type {cfg['final_sigmas_type']!r} is not supported; use zero or sigma_min")
    timesteps, sigmas, full, spacing = _sigma_schedule(cfg, n)
    last = float(full[0]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    sigmas = _f32(np.concatenate([sigmas, [last]]))
    timesteps = _f32(timesteps)
    if cfg["timestep_type"] == "continuous" and kind == "v_prediction":
        timesteps = _f32(0.25 * np.log(sigmas[:-1].astype(np.float32)))
    steps = []
    for i, t in enumerate(timesteps):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = _sigma_x0(kind, s)
        # prev = x + (x - x0) / sigma * (sigma_next - sigma)
        k = (s_next - s) / s
        update = (1.0 + k * (1.0 - x0[0]), -k * x0[1], 0.0, 0.0)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0 / math.sqrt(s * s + 1), convert=(0.0, 1.0), combine=(1.0,),
                push=False, update=update,
            )
        )
    return steps, _init_sigma(sigmas, spacing)


def _euler_ancestral(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    """Euler a: an Euler step down to sigma_down, then fresh noise of size sigma_up (sigma_up = 0 at the end)."""
    kind = _prediction(cfg, ("epsilon", "v_prediction"))  # diffusers raises NotImplementedError for "sample"
    timesteps, sigmas, _, spacing = _sigma_schedule(cfg, n)
    sigmas = _f32(np.concatenate([sigmas, [0.0]]))
    timesteps = _f32(timesteps)
    steps = []
    for i, t in enumerate(timesteps):
        s, s_to = float(sigmas[i]), float(sigmas[i + 1])
        sigma_up = math.sqrt(s_to**2 * (s**2 - s_to**2) / s**2)
        sigma_down = math.sqrt(max(0.0, s_to**2 - sigma_up**2))
        x0 = _sigma_x0(kind, s)
        k = (sigma_down - s) / s
        update = (1.0 + k * (1.0 - x0[0]), -k * x0[1], 0.0, sigma_up)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0 / math.sqrt(s * s + 1), convert=(0.0, 1.0), combine=(1.0,),
                push=False, update=update,
            )
        )
    return steps, _init_sigma(sigmas, spacing)
