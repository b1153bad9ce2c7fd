"""PNDMScheduler (PLMS, skip_prk_steps) as a table: linear multistep with its restarted second step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.noise_schedule import _alphas_cumprod, _check_spacing, _eps_coefficients, _prediction


def _pndm(cfg: dict[str, Any], n: int, begin: int = 0) -> tuple[list[StepCoefficients], float]:
    """`begin` > 0: the rows of a run that starts at timesteps[begin] (image-to-image), whose step counter
    restarts at 0 there as diffusers' does."""
    kind = _prediction(cfg, ("epsilon", "v_prediction"))
    if not cfg["skip_prk_steps"]:
        raise UnsupportedError(
            "PNDMScheduler with Runge-Kutta warm-up steps is not supported; set skip_prk_steps=true "
            "(every Stable Diffusion scheduler config does)"
        )
    ac = _alphas_cumprod(cfg)
    train = int(cfg["num_train_timesteps"])
    spacing = _check_spacing(cfg)
    if spacing == "linspace":
        base_ts = np.linspace(0, train - 1, n).round().astype(np.int64)
    elif spacing == "leading":
        base_ts = (np.arange(0, n) * (train // n)).round().astype(np.int64) + int(cfg["steps_offset"])
    else:
        base_ts = np.round(np.arange(train, 0, -train / n))[::-1].astype(np.int64) - 1
    timesteps = np.concatenate([base_ts[:-1], base_ts[-2:-1], base_ts[-1:]])[::-1]
    final = 1.0 if cfg["set_alpha_to_one"] else float(ac[0])
    stride = train // n
    plms = {
        1: (1.0,),
        2: (1.5, -0.5),
        3: (23 / 12, -16 / 12, 5 / 12),
        4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
    }
    steps = []
    stored = 0  # how many model outputs diffusers' `ets` holds (it keeps the last 4)
    for counter, t in enumerate(timesteps[begin:]):
        t_eff, prev = int(t), int(t) - stride
        base, save, push = "sample", False, True
        if counter == 1:
            push, prev, t_eff = False, int(t), int(t) + stride
            combine: tuple[float, ...] = (0.5, 0.5)
            base = "saved"
        else:
            stored = min(stored + 1, 4)
            combine = plms[stored]
            save = counter == 0
        a_t = float(ac[t_eff])
        a_prev = float(ac[prev]) if prev >= 0 else final
        b_t, b_prev = 1.0 - a_t, 1.0 - a_prev
        sample_coeff = math.sqrt(a_prev / a_t)
        denom = a_t * math.sqrt(b_prev) + math.sqrt(a_t * b_t * a_prev)
        k = (a_prev - a_t) / denom
        eps = _eps_coefficients(kind, a_t)  # eps = eps[0] * base + eps[1] * combined output
        update = (sample_coeff - k * eps[0], -k * eps[1], 0.0, 0.0)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=(0.0, 1.0), combine=combine, push=push,
                update=update, base=base, save_sample=save,
            )
        )
    return steps, 1.0
