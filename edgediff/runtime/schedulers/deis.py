"""DEISMultistepScheduler (log-rho DEIS, orders 1-3) as a table.

DEIS integrates the noise prediction in rho = sigma / alpha (the k-diffusion sigma) with polynomial
extrapolation in log rho over the last 1-3 outputs, so each step is x_t = alpha_t (x / alpha_s0 + sum_k c_k
eps_k): a multistep row like DPM-Solver's, with eps as the stored output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.noise_schedule import (
    _alphas_cumprod,
    _discrete_sigmas,
    _karras,
    _no_thresholding,
    _prediction,
    _reject_sigma_variants,
    _sigma_to_t,
    _solver_timesteps,
)


def _second_order(t: float, b: float, c: float) -> float:
    """diffusers' ind_fn for order 2: the integral of the Lagrange basis polynomial through log b, log c."""
    return t * (-math.log(c) + math.log(t) - 1) / (math.log(b) - math.log(c))


def _third_order(t: float, b: float, c: float, d: float) -> float:
    lt, lc, ld = math.log(t), math.log(c), math.log(d)
    numerator = t * (lc * (ld - lt + 1) - ld * lt + ld + lt**2 - 2 * lt + 2)
    return numerator / ((math.log(b) - lc) * (math.log(b) - ld))


def _deis(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    _reject_sigma_variants(cfg, ("use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"))
    if cfg["algorithm_type"] not in ("deis", "dpmsolver", "dpmsolver++"):  # diffusers maps the DPM names to deis
        raise UnsupportedError(f"algorithm_type {cfg['algorithm_type']!r} is not supported; use deis")
    if cfg["solver_type"] not in ("logrho", "midpoint", "heun", "bh1", "bh2"):
        raise UnsupportedError(f"solver_type {cfg['solver_type']!r} is not supported; use logrho")
    order = int(cfg["solver_order"])
    if order not in (1, 2, 3):
        raise UnsupportedError(f"solver_order {order} is not supported; use 1, 2 or 3")
    ac = _alphas_cumprod(cfg)
    timesteps = _solver_timesteps(cfg, n, int(cfg["num_train_timesteps"]))
    full = _discrete_sigmas(ac)
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(full[::-1].copy(), n, cfg)
        timesteps = _sigma_to_t(sigmas, full).round().astype(np.int64)
        last = float(sigmas[-1])  # diffusers repeats sigma_min: the last step is the identity
    else:
        sigmas = np.interp(timesteps, np.arange(len(full)), full)
        last = float(full[0])
    rho = np.concatenate([sigmas, [last]]).astype(np.float32).astype(np.float64)  # rho = sigma / alpha
    count = len(timesteps)
    final_low = cfg["lower_order_final"] and count < 15

    def alpha(r: float) -> float:
        return 1.0 / math.sqrt(r * r + 1)

    steps = []
    for i, t in enumerate(timesteps):
        r_t, r0 = float(rho[i + 1]), float(rho[i])
        alpha_t, alpha_0 = alpha(r_t), alpha(r0)
        sigma_0 = r0 * alpha_0
        seen = min(i, order)  # outputs stored before this step (diffusers' lower_order_nums)
        if order == 1 or seen < 1 or (i == count - 1 and final_low):
            # x_t = alpha_t / alpha_s x - sigma_t (e^h - 1) eps, with sigma_t e^h = alpha_t sigma_s / alpha_s
            combine: tuple[float, ...] = (-(alpha_t * r0 * alpha_0 / alpha_0 - r_t * alpha_t),)
        elif order == 2 or seen < 2 or (i == count - 2 and final_low):
            r1 = float(rho[i - 1])
            c1 = _second_order(r_t, r0, r1) - _second_order(r0, r0, r1)
            c2 = _second_order(r_t, r1, r0) - _second_order(r0, r1, r0)
            combine = (alpha_t * c1, alpha_t * c2)
        else:
            r1, r2 = float(rho[i - 1]), float(rho[i - 2])
            c1 = _third_order(r_t, r0, r1, r2) - _third_order(r0, r0, r1, r2)
            c2 = _third_order(r_t, r1, r2, r0) - _third_order(r0, r1, r2, r0)
            c3 = _third_order(r_t, r2, r0, r1) - _third_order(r0, r2, r0, r1)
            combine = (alpha_t * c1, alpha_t * c2, alpha_t * c3)
        # the stored output is eps = (x - alpha x0) / sigma
        convert = {"epsilon": (0.0, 1.0), "v_prediction": (sigma_0, alpha_0), "sample": (1.0 / sigma_0, -alpha_0 / sigma_0)}[kind]
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=convert, combine=combine, push=True,
                update=(alpha_t / alpha_0, 1.0, 0.0, 0.0),
            )
        )
    return steps, 1.0
