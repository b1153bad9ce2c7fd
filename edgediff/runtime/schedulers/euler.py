"""EulerDiscreteScheduler as a table: sigma-space Euler steps, with optional Karras sigmas."""

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


def _euler(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample", "original_sample"))
    _reject_sigma_variants(cfg, ("use_exponential_sigmas", "use_beta_sigmas"))
    if cfg["interpolation_type"] != "linear":
        raise UnsupportedError(f"interpolation_type {cfg['interpolation_type']!r} is not supported; use 'linear'")
    ac = _alphas_cumprod(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24
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
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(sigmas, n, cfg)
        timesteps = _sigma_to_t(sigmas, np.log(full))
    last = float(full[0]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    if cfg["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise UnsupportedError(f"final_sigmas_type {cfg['final_sigmas_type']!r} is not supported; use zero or sigma_min")
    # diffusers keeps sigmas and timesteps in float32; round the same way so the tables agree with it.
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32).astype(np.float64)
    timesteps = timesteps.astype(np.float32).astype(np.float64)
    if cfg["timestep_type"] == "continuous" and kind == "v_prediction":
        timesteps = (0.25 * np.log(sigmas[:-1].astype(np.float32))).astype(np.float32).astype(np.float64)
    steps = []
    for i, t in enumerate(timesteps):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        if kind == "epsilon":
            x0 = (1.0, -s)
        elif kind == "v_prediction":
            x0 = (1.0 / (s * s + 1), -s / math.sqrt(s * s + 1))
        else:
            x0 = (0.0, 1.0)
        # prev = x + (x - x0) / sigma * (sigma_next - sigma)
        k = (s_next - s) / s
        update = (1.0 + k * (1.0 - x0[0]), -k * x0[1], 0.0, 0.0)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0 / math.sqrt(s * s + 1), convert=(0.0, 1.0), combine=(1.0,),
                push=False, update=update,
            )
        )
    max_sigma = float(sigmas.max())
    init = max_sigma if spacing in ("linspace", "trailing") else math.sqrt(max_sigma**2 + 1)
    return steps, init
