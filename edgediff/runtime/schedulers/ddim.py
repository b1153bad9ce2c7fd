"""DDIMScheduler (eta = 0) as a table: one x0 prediction and a deterministic jump per step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.noise_schedule import (
    _alphas_cumprod,
    _check_spacing,
    _eps_coefficients,
    _no_thresholding,
    _prediction,
    _x0_coefficients,
)


def _ddim(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    ac = _alphas_cumprod(cfg)
    train = int(cfg["num_train_timesteps"])
    if n > train:
        raise UnsupportedError(f"{n} inference steps exceed the {train} training timesteps")
    spacing = _check_spacing(cfg)
    if spacing == "linspace":
        timesteps = np.linspace(0, train - 1, n).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        timesteps = (np.arange(0, n) * (train // n)).round()[::-1].astype(np.int64) + int(cfg["steps_offset"])
    else:
        timesteps = np.round(np.arange(train, 0, -train / n)).astype(np.int64) - 1
    final = 1.0 if cfg["set_alpha_to_one"] else float(ac[0])
    clip = bool(cfg["clip_sample"])
    steps = []
    for t in timesteps:
        prev = int(t) - train // n  # diffusers uses this stride whatever the spacing
        a_t = float(ac[t])
        a_prev = float(ac[prev]) if prev >= 0 else final
        x0 = _x0_coefficients(kind, a_t)
        eps = _eps_coefficients(kind, a_t)
        ka, kb = math.sqrt(a_prev), math.sqrt(1.0 - a_prev)
        if clip:
            update = (kb * eps[0], kb * eps[1], ka, 0.0)
        else:
            update = (ka * x0[0] + kb * eps[0], ka * x0[1] + kb * eps[1], 0.0, 0.0)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=(0.0, 1.0), combine=(1.0,), push=False,
                update=update, x0=x0 if clip else None,
            )
        )
    return steps, 1.0
