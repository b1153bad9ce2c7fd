"""TCDScheduler as a table: Trajectory Consistency Distillation's strategic stochastic sampling.

Each step predicts x0 and eps, jumps to the earlier timestep s = floor((1 - gamma) * prev) and re-noises
from s forward to prev with a fresh draw (the table's noise term). gamma (diffusers' `eta` argument of
`step`, 0.3 by default there and in the TCD paper) is read from the config key "gamma", since diffusers
keeps it out of the scheduler config; gamma = 0 is deterministic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.lcm import _distilled_timesteps
from edgediff.runtime.schedulers.noise_schedule import _alphas_cumprod, _eps_coefficients, _prediction, _x0_coefficients


def _tcd(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    gamma = float(cfg["gamma"])
    if not 0.0 <= gamma <= 1.0:
        raise UnsupportedError(f"TCD gamma {gamma} must be between 0 and 1 (0 = deterministic, 0.3 is the usual value)")
    ac = _alphas_cumprod(cfg)
    timesteps = _distilled_timesteps(cfg, n, "TCD")
    steps = []
    for i, t in enumerate(timesteps):
        last = i == len(timesteps) - 1
        prev = 0 if last else int(timesteps[i + 1])  # diffusers steps the last one to timestep 0, not to "clean"
        # torch evaluates (1 - gamma) * prev in float32 before the floor; float64 lands one lower at e.g. prev=700
        s = int(np.floor(np.float32(1.0 - gamma) * np.float32(prev)))
        a_t, a_prev, a_s = float(ac[t]), float(ac[prev]), float(ac[s])
        x0 = _x0_coefficients(kind, a_t)
        eps = _eps_coefficients(kind, a_t)
        # the noised prediction at s: sqrt(a_s) x0 + sqrt(1 - a_s) eps
        ka, kb = math.sqrt(a_s), math.sqrt(1.0 - a_s)
        noised = (ka * x0[0] + kb * eps[0], ka * x0[1] + kb * eps[1])
        scale, noise = 1.0, 0.0
        if gamma > 0 and not last:
            scale, noise = math.sqrt(a_prev / a_s), math.sqrt(1.0 - a_prev / a_s)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=(0.0, 1.0), combine=(1.0,), push=False,
                update=(scale * noised[0], scale * noised[1], 0.0, noise),
            )
        )
    return steps, 1.0
