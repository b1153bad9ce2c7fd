"""UniPCMultistepScheduler (bh1 / bh2, data or noise prediction, orders 1-3) as a table.

UniPC predicts x_{i+1} from a corrected x_i', and the corrector needs the model output at x_i, so diffusers
keeps the previous corrected sample. The tables need no extra state for it: the corrector and the predictor
that produced x_i start from the same point (x_{i-1}') with the same first term, so
x_i' = x_i + C_i - P_{i-1}, where C_i and P_{i-1} are linear in the stored model outputs. Each row therefore
is an ordinary multistep row: x_{i+1} = A_i x_i + sum_k w_k m_{i-k}, with m the converted model outputs.
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

Terms = dict[int, float]  # history offset k (0 = this step's converted output m_i) -> coefficient


def _unipc(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    _reject_sigma_variants(cfg, ("use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"))
    if cfg.get("solver_p") is not None:
        raise UnsupportedError("UniPC with a separate solver_p scheduler is not supported; remove solver_p")
    solver = cfg["solver_type"]
    if solver in ("midpoint", "heun", "logrho"):
        solver = "bh2"  # diffusers maps the other families' names to bh2
    if solver not in ("bh1", "bh2"):
        raise UnsupportedError(f"solver_type {solver!r} is not supported; use bh1 or bh2")
    order = int(cfg["solver_order"])
    if order not in (1, 2, 3):
        raise UnsupportedError(f"solver_order {order} is not supported; use 1, 2 or 3")
    final = cfg["final_sigmas_type"]
    if final not in ("zero", "sigma_min"):
        raise UnsupportedError(f"final_sigmas_type {final!r} is not supported; use zero or sigma_min")
    if final == "zero" and not cfg["lower_order_final"] and order > 1:
        raise UnsupportedError(
            "UniPC with lower_order_final=false steps to sigma 0 with a multistep update, which is infinite "
            "(diffusers returns inf too); set lower_order_final=true or final_sigmas_type=sigma_min"
        )
    predict_x0 = bool(cfg["predict_x0"])
    no_corrector = {int(k) for k in (cfg.get("disable_corrector") or [])}

    ac = _alphas_cumprod(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24
    timesteps = _solver_timesteps(cfg, n, int(cfg["num_train_timesteps"]))
    full = _discrete_sigmas(ac)
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(full[::-1].copy(), n, cfg)
        timesteps = _sigma_to_t(sigmas, full).round().astype(np.int64)
        last = float(sigmas[-1]) if final == "sigma_min" else 0.0
    else:
        sigmas = np.interp(timesteps, np.arange(len(full)), full)
        last = float(full[0]) if final == "sigma_min" else 0.0
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32).astype(np.float64)
    count = len(timesteps)

    def alpha_sigma(sigma: float) -> tuple[float, float]:
        alpha = 1.0 / math.sqrt(sigma * sigma + 1)
        return alpha, sigma * alpha

    def lam(index: int) -> float:
        alpha, sig = alpha_sigma(float(sigmas[index]))
        return math.log(alpha) - math.log(sig)

    def update(t: int, s0: int, history: list[int], with_current: bool) -> tuple[float, Terms]:
        """diffusers' B(h) update from sigma index s0 to t: (coefficient of the start sample, model-output terms).

        `history` are the sigma indices of the earlier outputs it uses (newest first; output s0 is offset
        `base`); `with_current` adds the corrector's D1_t = m_t - m_s0 term (then offsets shift by one)."""
        base = 1 if with_current else 0
        alpha_t, sigma_t = alpha_sigma(float(sigmas[t]))
        alpha_s0, sigma_s0 = alpha_sigma(float(sigmas[s0]))
        scale = alpha_t if predict_x0 else sigma_t
        if sigmas[t] == 0.0:
            # the last step to sigma 0 (always first order here): the limit of the formula, x0 for data
            # prediction (diffusers computes -inf * 0 = nan for bh1 and noise prediction here)
            if predict_x0:
                return 0.0, {base: 1.0}
            return alpha_t / alpha_s0, {base: -(alpha_t * sigma_s0 / alpha_s0 - sigma_t)}
        h = lam(t) - lam(s0)
        if h == 0.0:  # Karras sigmas ending on sigma_min twice: diffusers' step is the identity
            return 1.0, {}
        hh = -h if predict_x0 else h
        h_phi_1 = math.expm1(hh)
        start = sigma_t / sigma_s0 if predict_x0 else alpha_t / alpha_s0
        terms: Terms = {base: -scale * h_phi_1}
        p = len(history) + 1  # the order of this update
        if p == 1 and not with_current:
            return start, terms
        b_h = hh if solver == "bh1" else math.expm1(hh)
        rks = [(lam(si) - lam(s0)) / h for si in history] + [1.0]
        b, h_phi_k, factorial = [], h_phi_1 / hh - 1.0, 1
        for i in range(1, p + 1):
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1.0 / factorial
        big_r = np.array([[rk ** (i - 1) for rk in rks] for i in range(1, p + 1)])
        if with_current:
            rhos = [0.5] if p == 1 else list(np.linalg.solve(big_r, np.array(b)))
        else:
            rhos = [0.5] if p == 2 else list(np.linalg.solve(big_r[:-1, :-1], np.array(b[:-1])))
        # D1_k = (m_k - m_s0) / rk for the earlier outputs; the corrector adds rhos[-1] * (m_t - m_s0)
        for k, (rk, rho) in enumerate(zip(rks[:-1], rhos)):
            terms[base + 1 + k] = terms.get(base + 1 + k, 0.0) - scale * b_h * rho / rk
            terms[base] += scale * b_h * rho / rk
        if with_current:
            terms[0] = -scale * b_h * rhos[-1]
            terms[base] += scale * b_h * rhos[-1]
        return start, terms

    orders = [min(order, i + 1, count - i if cfg["lower_order_final"] else order) for i in range(count)]
    steps = []
    previous: Terms = {}  # P_{i-1}: the predictor that produced this step's sample, in this step's offsets
    for i, t in enumerate(timesteps):
        correction: Terms = {}
        if i > 0 and (i - 1) not in no_corrector:
            p = orders[i - 1]
            _, corrector = update(i, i - 1, [i - 1 - k for k in range(1, p)], with_current=True)
            correction = {k: corrector.get(k, 0.0) - previous.get(k, 0.0) for k in set(corrector) | set(previous)}
        start, predictor = update(i + 1, i, [i - k for k in range(1, orders[i])], with_current=False)
        terms = {k: start * correction.get(k, 0.0) + predictor.get(k, 0.0) for k in set(correction) | set(predictor)}
        previous = {k + 1: v for k, v in predictor.items()}
        alpha, sig = alpha_sigma(float(sigmas[i]))
        if predict_x0:
            convert = {"epsilon": (1.0 / alpha, -sig / alpha), "v_prediction": (alpha, -sig), "sample": (0.0, 1.0)}[kind]
        else:
            convert = {"epsilon": (0.0, 1.0), "v_prediction": (sig, alpha), "sample": (1.0 / sig, -alpha / sig)}[kind]
        depth = max(terms, default=0) + 1
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=convert,
                combine=tuple(terms.get(k, 0.0) for k in range(depth)), push=True, update=(start, 1.0, 0.0, 0.0),
            )
        )
    return steps, 1.0
