"""Shared noise-schedule math for the table builders: betas, alphas_cumprod, sigmas, timestep checks.

Computed in float64 from diffusers' float32 schedule, so the tables reproduce it; every scheduler family
file builds on these, so they live once here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError


def _linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """torch.linspace(start, end, n, dtype=float32) bit for bit: a float32 step, fused multiply-add from both
    ends (diffusers builds its betas this way, and the tables should reproduce its float32 schedule)."""
    s32, e32 = np.float32(start), np.float32(end)
    if n == 1:
        return np.array([s32], dtype=np.float32)
    step = np.float64(np.float32((e32 - s32) / np.float32(n - 1)))
    i = np.arange(n)
    values = np.where(i < n // 2, np.float64(s32) + step * i, np.float64(e32) - step * (n - 1 - i))
    return values.astype(np.float32)


def _betas(cfg: dict[str, Any]) -> np.ndarray:
    """float32 betas, computed as diffusers' constructors compute them."""
    n = int(cfg["num_train_timesteps"])
    if cfg.get("trained_betas") is not None:
        betas = np.asarray(cfg["trained_betas"], dtype=np.float32)
    elif cfg["beta_schedule"] == "linear":
        betas = _linspace_f32(cfg["beta_start"], cfg["beta_end"], n)
    elif cfg["beta_schedule"] == "scaled_linear":
        betas = _linspace_f32(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n) ** 2
    elif cfg["beta_schedule"] == "squaredcos_cap_v2":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)], dtype=np.float32)
    else:
        raise UnsupportedError(
            f"beta_schedule {cfg['beta_schedule']!r} is not supported; use linear, scaled_linear or squaredcos_cap_v2"
        )
    if cfg.get("rescale_betas_zero_snr"):
        sqrt_ac = np.sqrt(_cumprod_f32(np.float32(1.0) - betas))
        first, last = sqrt_ac[0], sqrt_ac[-1]
        sqrt_ac = (sqrt_ac - last) * (first / (first - last))
        ac = sqrt_ac**2
        betas = (np.float32(1.0) - np.concatenate([ac[:1], ac[1:] / ac[:-1]])).astype(np.float32)
    return betas.astype(np.float32)


def _cumprod_f32(values: np.ndarray) -> np.ndarray:
    """torch.cumprod on float32: accumulated in float64, each output rounded to float32."""
    return np.cumprod(values.astype(np.float64)).astype(np.float32)


def _alphas_cumprod(cfg: dict[str, Any]) -> np.ndarray:
    """diffusers' float32 alphas_cumprod, returned as float64 so later coefficient math adds no rounding."""
    return _cumprod_f32(np.float32(1.0) - _betas(cfg)).astype(np.float64)


def _check_spacing(cfg: dict[str, Any]) -> str:
    spacing = cfg["timestep_spacing"]
    if spacing not in ("linspace", "leading", "trailing"):
        raise UnsupportedError(f"timestep_spacing {spacing!r} is not supported; use linspace, leading or trailing")
    return spacing


def _solver_timesteps(cfg: dict[str, Any], n: int, last_t: int) -> np.ndarray:
    """Integer timesteps of the multistep solvers (DPM-Solver, UniPC, DEIS): n + 1 points, the last dropped."""
    spacing = _check_spacing(cfg)
    if spacing == "linspace":
        return np.linspace(0, last_t - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = last_t // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + int(cfg["steps_offset"])
    return np.arange(last_t, 0, -int(cfg["num_train_timesteps"]) / n).round().astype(np.int64) - 1


def _prediction(cfg: dict[str, Any], allowed: tuple[str, ...]) -> str:
    kind = cfg["prediction_type"]
    if kind not in allowed:
        raise UnsupportedError(f"prediction_type {kind!r} is not supported here; use one of {', '.join(allowed)}")
    return kind


def _x0_coefficients(kind: str, alpha_prod: float) -> tuple[float, float]:
    """x0 = a * sample + b * model_output for a DDPM-parameterised model at cumulative alpha `alpha_prod`."""
    sa, sb = math.sqrt(alpha_prod), math.sqrt(1.0 - alpha_prod)
    if kind == "epsilon":
        return 1.0 / sa, -sb / sa
    if kind == "v_prediction":
        return sa, -sb
    return 0.0, 1.0  # "sample"


def _eps_coefficients(kind: str, alpha_prod: float) -> tuple[float, float]:
    """eps = a * sample + b * model_output."""
    sa, sb = math.sqrt(alpha_prod), math.sqrt(1.0 - alpha_prod)
    if kind == "epsilon":
        return 0.0, 1.0
    if kind == "v_prediction":
        return sb, sa
    return 1.0 / sb, -sa / sb  # "sample"


def _no_thresholding(cfg: dict[str, Any]) -> None:
    if cfg.get("thresholding"):
        raise UnsupportedError("dynamic thresholding is not supported (it is meant for pixel-space models); set thresholding=false")


def _karras(sigmas_desc: np.ndarray, n: int, cfg: dict[str, Any]) -> np.ndarray:
    sigma_min = cfg.get("sigma_min") if cfg.get("sigma_min") is not None else float(sigmas_desc[-1])
    sigma_max = cfg.get("sigma_max") if cfg.get("sigma_max") is not None else float(sigmas_desc[0])
    rho = 7.0
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def _sigma_to_t(sigmas: np.ndarray, train_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep whose sigma is `sigma` (log-linear interpolation, as diffusers does).

    The training sigmas' logs are taken in float32 like diffusers' (its `np.log` of a float32 array): a
    schedule that truncates these timesteps (cosine + Karras) otherwise lands one step off at the top."""
    log_sigmas = np.log(train_sigmas.astype(np.float32))
    log_sigma = np.log(np.maximum(sigmas, 1e-10))
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
    return (1 - w) * low + w * high


def _reject_sigma_variants(cfg: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if cfg.get(key):
            raise UnsupportedError(f"{key}=true is not supported by the numpy runtime; use use_karras_sigmas or the default sigmas")


def _discrete_sigmas(ac: np.ndarray) -> np.ndarray:
    """sqrt((1 - ac) / ac) evaluated in float32, as diffusers does before interpolating."""
    ac32 = ac.astype(np.float32)
    return np.sqrt((np.float32(1.0) - ac32) / ac32).astype(np.float64)
