"""DPMSolverMultistepScheduler (dpmsolver++ and sde-dpmsolver++, orders 1-3) as a table.

The multistep history is what `combine` weighs; the SDE variant adds a noise term per step.
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


def _dpm_sigmas(cfg: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, sigmas with the final one appended) as diffusers' `set_timesteps` makes them; shared with the
    partial start of image-to-image (`partial`), whose added noise is taken at these sigmas."""
    ac = _alphas_cumprod(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24
    train = int(cfg["num_train_timesteps"])
    lambdas = np.log(np.sqrt(ac)) - np.log(np.sqrt(1 - ac))
    clipped_idx = int(np.searchsorted(lambdas[::-1], float(cfg["lambda_min_clipped"])))
    last_t = train - clipped_idx
    timesteps = _solver_timesteps(cfg, n, last_t)
    full = _discrete_sigmas(ac)
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(full[::-1].copy(), n, cfg)
        t_frac = _sigma_to_t(sigmas, full)
        timesteps = (t_frac.round() if cfg["beta_schedule"] != "squaredcos_cap_v2" else t_frac).astype(np.int64)
    else:
        sigmas = np.interp(timesteps, np.arange(len(full)), full)
    if cfg["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise UnsupportedError(f"final_sigmas_type {cfg['final_sigmas_type']!r} is not supported; use zero or sigma_min")
    last = float(full[0]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32).astype(np.float64)
    return timesteps, sigmas


def _dpm_multistep(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    _reject_sigma_variants(
        cfg, ("use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting")
    )
    algorithm = cfg["algorithm_type"]
    if algorithm == "deis":
        algorithm = "dpmsolver++"  # diffusers silently maps it
    if algorithm not in ("dpmsolver++", "sde-dpmsolver++"):
        raise UnsupportedError(
            f"algorithm_type {algorithm!r} is not supported (diffusers deprecates it); use dpmsolver++ or sde-dpmsolver++"
        )
    solver = cfg["solver_type"] if cfg["solver_type"] in ("midpoint", "heun") else "midpoint"
    order = int(cfg["solver_order"])
    if order not in (1, 2, 3):
        raise UnsupportedError(f"solver_order {order} is not supported; use 1, 2 or 3")
    if order == 3 and algorithm != "dpmsolver++":
        raise UnsupportedError("third-order sde-dpmsolver++ is not supported; use solver_order=2")
    if cfg.get("variance_type") in ("learned", "learned_range"):
        raise UnsupportedError("variance_type learned/learned_range is not supported (SD UNets predict 4 channels)")
    timesteps, sigmas = _dpm_sigmas(cfg, n)
    count = len(timesteps)

    def alpha_sigma(sigma: float) -> tuple[float, float]:
        alpha = 1.0 / math.sqrt(sigma * sigma + 1)
        return alpha, sigma * alpha

    def lam(sigma: float) -> float:
        alpha, sig = alpha_sigma(sigma)
        return math.log(alpha) - math.log(sig)

    steps = []
    lower_nums = 0
    for i, t in enumerate(timesteps):
        alpha_s0, sigma_s0 = alpha_sigma(float(sigmas[i]))
        alpha_t, sigma_t = alpha_sigma(float(sigmas[i + 1]))
        if kind == "epsilon":
            convert = (1.0 / alpha_s0, -sigma_s0 / alpha_s0)
        elif kind == "v_prediction":
            convert = (alpha_s0, -sigma_s0)
        else:
            convert = (0.0, 1.0)
        lower_final = i == count - 1 and (
            cfg["euler_at_final"] or (cfg["lower_order_final"] and count < 15) or cfg["final_sigmas_type"] == "zero"
        )
        lower_second = i == count - 2 and cfg["lower_order_final"] and count < 15
        if order == 1 or lower_nums < 1 or lower_final:
            step_order = 1
        elif order == 2 or lower_nums < 2 or lower_second:
            step_order = 2
        else:
            step_order = 3
        # exp(-h) = (sigma_t / alpha_t) / (sigma_s0 / alpha_s0): the ratio of raw sigmas, finite even at sigma 0.
        e = float(sigmas[i + 1]) / float(sigmas[i])
        noise = 0.0
        if algorithm == "dpmsolver++":
            a = sigma_t / sigma_s0
            b0 = -alpha_t * (e - 1.0)
        else:
            a = sigma_t / sigma_s0 * e
            b0 = alpha_t * (1.0 - e * e)
            noise = sigma_t * math.sqrt(max(0.0, 1.0 - e * e))
        h = lam(float(sigmas[i + 1])) - lam(float(sigmas[i])) if step_order > 1 else 0.0
        if step_order == 1 or h == 0.0:
            # h = 0 (Karras sigmas ending on sigma_min twice): diffusers' step is the identity, its
            # history terms vanish (divided by r0 = inf)
            combine: tuple[float, ...] = (b0,) + (0.0,) * (step_order - 1)
        else:
            h0 = lam(float(sigmas[i])) - lam(float(sigmas[i - 1]))
            r0 = h0 / h
            if step_order == 2:
                # D1 = (m0 - m1) / r0 and x_t = a x + b0 D0 + b1 D1
                if algorithm == "dpmsolver++":
                    b1 = 0.5 * b0 if solver == "midpoint" else alpha_t * ((math.exp(-h) - 1.0) / h + 1.0)
                else:
                    b1 = 0.5 * b0 if solver == "midpoint" else alpha_t * ((1.0 - math.exp(-2 * h)) / (-2 * h) + 1.0)
                combine = (b0 + b1 / r0, -b1 / r0)
            else:
                h1 = lam(float(sigmas[i - 1])) - lam(float(sigmas[i - 2]))
                r1 = h1 / h
                em = math.exp(-h)
                b1 = alpha_t * ((em - 1.0) / h + 1.0)
                b2 = -alpha_t * ((em - 1.0 + h) / h**2 - 0.5)
                # D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1, D1 = D1_0 + r0/(r0+r1) (D1_0 - D1_1), D2 = (D1_0 - D1_1)/(r0+r1)
                k = r0 / (r0 + r1)
                c_d10 = b1 * (1 + k) + b2 / (r0 + r1)
                c_d11 = -(b1 * k + b2 / (r0 + r1))
                combine = (b0 + c_d10 / r0, -c_d10 / r0 + c_d11 / r1, -c_d11 / r1)
        lower_nums = min(lower_nums + 1, order)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=convert, combine=combine, push=True,
                update=(a, 1.0, 0.0, noise),
            )
        )
    return steps, 1.0
