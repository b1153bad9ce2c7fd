"""HeunDiscreteScheduler as a table: two UNet calls per step, as two rows (like PNDM's extra call).

Row 2k is an Euler step from x_k that saves x_k and pushes its derivative d1; row 2k+1 sees the model at the
Euler point x' = x_k + dt d1 and restarts from the saved x_k with the mean of both derivatives. Its second
derivative is taken at x', which the row rewrites as x_k + dt d1 so that it only needs the saved sample and
the history. The last step (to sigma 0) is a single Euler row, as in diffusers: 2n - 1 UNet calls in all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.euler import _f32, _init_sigma, _sigma_schedule, _sigma_x0
from edgediff.runtime.schedulers.noise_schedule import _prediction, _reject_sigma_variants


def _heun(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    _reject_sigma_variants(cfg, ("use_exponential_sigmas", "use_beta_sigmas"))
    if cfg["clip_sample"]:
        raise UnsupportedError(
            "HeunDiscreteScheduler with clip_sample=true is not supported (the clipped x0 enters the averaged "
            "derivative); set clip_sample=false, as Stable Diffusion configs do"
        )
    timesteps, sigmas, _, spacing = _sigma_schedule(cfg, n)
    sigmas = _f32(np.concatenate([sigmas, [0.0]]))
    timesteps = _f32(timesteps)

    def derivative(sigma: float) -> tuple[float, float]:
        """(x - x0) / sigma = a * x + b * model_output."""
        x0 = _sigma_x0(kind, sigma)
        return (1.0 - x0[0]) / sigma, -x0[1] / sigma

    steps = []
    for k in range(n):
        s, s_next = float(sigmas[k]), float(sigmas[k + 1])
        dt = s_next - s
        steps.append(
            StepCoefficients(
                timestep=float(timesteps[k]), input_scale=1.0 / math.sqrt(s * s + 1), convert=derivative(s),
                combine=(1.0,), push=True, update=(1.0, dt, 0.0, 0.0), save_sample=True,
            )
        )
        if s_next == 0.0:
            break  # the last step is first order
        a, b = derivative(s_next)
        # d2 = a x' + b m = a x_k + b m + (a dt) d1; the update averages d1 and d2 from the saved x_k
        steps.append(
            StepCoefficients(
                timestep=float(timesteps[k + 1]), input_scale=1.0 / math.sqrt(s_next * s_next + 1), convert=(a, b),
                combine=(0.5, 0.5 + 0.5 * a * dt), push=False, update=(1.0, dt, 0.0, 0.0), base="saved",
            )
        )
    return steps, _init_sigma(sigmas, spacing)
