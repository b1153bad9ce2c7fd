"""Diffusion schedulers as precomputed tables, stepped with plain numpy (no torch, no diffusers).

Every scheduler we support is linear in the latent and the model output at each step (except an optional
clip of the predicted clean sample), so `scheduler_tables()` reduces diffusers' per-class logic to a list of
per-step coefficients. A device then only needs multiply-adds to run any of them; `TableScheduler` is that
device algorithm in numpy, and it is what `edgediff generate` uses too, so the tables are tested end to end.

The stepping rule, for step i with coefficients from `tables["steps"][i]`:

    model_input = x * input_scale                      # fed to the UNet at `timestep`
    base        = saved if base == "saved" else x      # PNDM's second step restarts from an earlier latent
    saved       = x                 (if save_sample)
    d           = convert[0] * base + convert[1] * m   # m: the (guided) model output; d is what history keeps
    c           = combine[0] * d + combine[1] * history[-1] + combine[2] * history[-2] + ...
    history.append(d)               (if push; keep the last `history_size`)
    x0          = clip(x0[0] * base + x0[1] * m, -clip_range, clip_range)   (only if the table has x0)
    x           = update[0] * base + update[1] * c + update[2] * x0 + update[3] * noise

`noise` is a fresh standard-normal draw, only needed where update[3] != 0 (LCM, SDE solvers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError

TABLES_FORMAT = "edgediff-scheduler-tables/1"

# diffusers' constructor defaults per class: a config overrides these key by key (like `from_config`).
_COMMON = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "DDIMScheduler": {
        **_COMMON,
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "thresholding": False,
        "timestep_spacing": "leading",
    },
    "EulerDiscreteScheduler": {
        **_COMMON,
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "final_sigmas_type": "zero",
    },
    "DPMSolverMultistepScheduler": {
        **_COMMON,
        "solver_order": 2,
        "thresholding": False,
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf,
        "variance_type": None,
        "timestep_spacing": "linspace",
        "sigma_min": None,
        "sigma_max": None,
        "use_dynamic_shifting": False,
    },
    "LCMScheduler": {
        **_COMMON,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "original_inference_steps": 50,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "thresholding": False,
        "timestep_spacing": "leading",
        "timestep_scaling": 10.0,
    },
    "PNDMScheduler": {
        **{k: v for k, v in _COMMON.items() if k != "rescale_betas_zero_snr"},
        "skip_prk_steps": False,
        "set_alpha_to_one": False,
        "timestep_spacing": "leading",
    },
}
# Short names for the CLI (`edgediff generate --scheduler euler`).
ALIASES = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "dpm++2m": "DPMSolverMultistepScheduler",
    "dpmsolver++": "DPMSolverMultistepScheduler",
    "lcm": "LCMScheduler",
    "pndm": "PNDMScheduler",
}


def resolve_class_name(name: str) -> str:
    """Accept a diffusers class name or a short alias; raise a teaching error otherwise."""
    if name in DEFAULTS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    known = ", ".join(sorted(DEFAULTS) + sorted(ALIASES))
    raise UnsupportedError(f"scheduler {name!r} is not supported by the numpy runtime; use one of: {known}")


@dataclass(frozen=True)
class StepCoefficients:
    """One row of the table (see the module docstring for how a device applies it)."""

    timestep: float
    input_scale: float
    convert: tuple[float, float]
    combine: tuple[float, ...]
    push: bool
    update: tuple[float, float, float, float]
    x0: tuple[float, float] | None = None
    base: str = "sample"
    save_sample: bool = False

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "timestep": self.timestep,
            "input_scale": self.input_scale,
            "convert": list(self.convert),
            "combine": list(self.combine),
            "push": self.push,
            "update": list(self.update),
            "x0": list(self.x0) if self.x0 is not None else None,
            "base": self.base,
            "save_sample": self.save_sample,
        }
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "StepCoefficients":
        return cls(
            timestep=float(row["timestep"]),
            input_scale=float(row["input_scale"]),
            convert=tuple(float(v) for v in row["convert"]),  # type: ignore[arg-type]
            combine=tuple(float(v) for v in row["combine"]),
            push=bool(row["push"]),
            update=tuple(float(v) for v in row["update"]),  # type: ignore[arg-type]
            x0=tuple(float(v) for v in row["x0"]) if row.get("x0") is not None else None,  # type: ignore[arg-type]
            base=str(row.get("base", "sample")),
            save_sample=bool(row.get("save_sample", False)),
        )


# ---------------------------------------------------------------------------------------------------------
# Shared noise-schedule math (float64; diffusers computes the same quantities in float32).


def _resolved_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULTS[class_name])
    for key, value in config.items():
        if key in cfg:
            cfg[key] = value
    return cfg


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


def _sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep whose sigma is `sigma` (log-linear interpolation, as diffusers does)."""
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


# ---------------------------------------------------------------------------------------------------------
# Per-class table builders.


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


def _discrete_sigmas(ac: np.ndarray) -> np.ndarray:
    """sqrt((1 - ac) / ac) evaluated in float32, as diffusers does before interpolating."""
    ac32 = ac.astype(np.float32)
    return np.sqrt((np.float32(1.0) - ac32) / ac32).astype(np.float64)


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
    ac = _alphas_cumprod(cfg)
    if cfg.get("rescale_betas_zero_snr"):
        ac[-1] = 2.0**-24
    train = int(cfg["num_train_timesteps"])
    lambdas = np.log(np.sqrt(ac)) - np.log(np.sqrt(1 - ac))
    clipped_idx = int(np.searchsorted(lambdas[::-1], float(cfg["lambda_min_clipped"])))
    last_t = train - clipped_idx
    spacing = _check_spacing(cfg)
    if spacing == "linspace":
        timesteps = np.linspace(0, last_t - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    elif spacing == "leading":
        ratio = last_t // (n + 1)
        timesteps = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + int(cfg["steps_offset"])
    else:
        timesteps = np.arange(last_t, 0, -train / n).round().astype(np.int64) - 1
    full = _discrete_sigmas(ac)
    if cfg["use_karras_sigmas"]:
        sigmas = _karras(full[::-1].copy(), n, cfg)
        t_frac = _sigma_to_t(sigmas, np.log(full))
        timesteps = (t_frac.round() if cfg["beta_schedule"] != "squaredcos_cap_v2" else t_frac).astype(np.int64)
    else:
        sigmas = np.interp(timesteps, np.arange(len(full)), full)
    if cfg["final_sigmas_type"] not in ("zero", "sigma_min"):
        raise UnsupportedError(f"final_sigmas_type {cfg['final_sigmas_type']!r} is not supported; use zero or sigma_min")
    last = float(full[0]) if cfg["final_sigmas_type"] == "sigma_min" else 0.0
    sigmas = np.concatenate([sigmas, [last]]).astype(np.float32).astype(np.float64)
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
        if step_order == 1:
            combine: tuple[float, ...] = (b0,)
        else:
            h = lam(float(sigmas[i + 1])) - lam(float(sigmas[i]))
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


def _lcm(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    ac = _alphas_cumprod(cfg)
    train = int(cfg["num_train_timesteps"])
    original = int(cfg["original_inference_steps"])
    if original > train:
        raise UnsupportedError(f"original_inference_steps {original} exceed the {train} training timesteps")
    if n > original:
        raise UnsupportedError(f"LCM runs at most original_inference_steps={original} steps; asked for {n}")
    origin = (np.arange(1, original + 1) * (train // original) - 1)[::-1]
    indices = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    timesteps = origin[indices]
    final = 1.0 if cfg["set_alpha_to_one"] else float(ac[0])
    clip = bool(cfg["clip_sample"])
    scaling = float(cfg["timestep_scaling"])
    steps = []
    for i, t in enumerate(timesteps):
        prev = int(timesteps[i + 1]) if i + 1 < len(timesteps) else int(t)
        a_t = float(ac[t])
        a_prev = float(ac[prev]) if prev >= 0 else final
        scaled = float(t) * scaling
        c_skip = 0.25 / (scaled**2 + 0.25)
        c_out = scaled / math.sqrt(scaled**2 + 0.25)
        x0 = _x0_coefficients(kind, a_t)
        last = i == len(timesteps) - 1
        ka, kn = (1.0, 0.0) if last else (math.sqrt(a_prev), math.sqrt(1.0 - a_prev))
        if clip:
            update = (ka * c_skip, 0.0, ka * c_out, kn)
        else:
            update = (ka * (c_out * x0[0] + c_skip), ka * c_out * x0[1], 0.0, kn)
        steps.append(
            StepCoefficients(
                timestep=float(t), input_scale=1.0, convert=(0.0, 1.0), combine=(1.0,), push=False,
                update=update, x0=x0 if clip else None,
            )
        )
    return steps, 1.0


def _pndm(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
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
    for counter, t in enumerate(timesteps):
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


_BUILDERS = {
    "DDIMScheduler": _ddim,
    "EulerDiscreteScheduler": _euler,
    "DPMSolverMultistepScheduler": _dpm_multistep,
    "LCMScheduler": _lcm,
    "PNDMScheduler": _pndm,
}


def scheduler_tables(class_name: str, config: dict[str, Any], num_inference_steps: int) -> dict[str, Any]:
    """Everything a device needs to run `class_name` for `num_inference_steps` steps, as JSON-ready data.

    `config` is a diffusers scheduler_config.json dict (keys the class does not know are ignored, as
    diffusers' `from_config` does). The result goes into manifest["pipeline"]["scheduler"]["tables"].
    """
    name = resolve_class_name(class_name)
    if int(num_inference_steps) < 1:
        raise UnsupportedError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    cfg = _resolved_config(name, config)
    steps, init_sigma = _BUILDERS[name](cfg, int(num_inference_steps))
    rows = [s.to_json() for s in steps]
    for row in rows:
        values = [row["timestep"], row["input_scale"], *row["convert"], *row["combine"], *row["update"], *(row["x0"] or [])]
        if not all(math.isfinite(v) for v in values):
            raise UnsupportedError(f"{name} with this config gives non-finite coefficients at timestep {row['timestep']}")
    clip = cfg.get("clip_sample_range") if cfg.get("clip_sample") else None
    return {
        "format": TABLES_FORMAT,
        "class_name": name,
        "prediction_type": cfg["prediction_type"],
        "num_inference_steps": int(num_inference_steps),
        "init_noise_sigma": float(init_sigma),
        "timesteps": [row["timestep"] for row in rows],
        "history_size": max(len(row["combine"]) for row in rows) - 1,
        "clip_range": float(clip) if clip is not None else None,
        "needs_noise": any(row["update"][3] != 0.0 for row in rows),
        "steps": rows,
    }


class TableScheduler:
    """Runs a scheduler from its tables alone: the device algorithm, in float32 numpy.

    Call `reset()` before each image; then for each step i: `scale_model_input(x, i)`, run the model,
    `x = step(model_output, i, x, noise)`.
    """

    def __init__(self, tables: dict[str, Any]):
        if tables.get("format") != TABLES_FORMAT:
            raise UnsupportedError(
                f"scheduler tables have format {tables.get('format')!r}, this runtime reads {TABLES_FORMAT!r}; "
                "re-create the bundle with this edgediff version"
            )
        self.tables = tables
        self.class_name: str = tables["class_name"]
        self.steps = [StepCoefficients.from_json(row) for row in tables["steps"]]
        self.timesteps = np.array([s.timestep for s in self.steps], dtype=np.float32)
        self.init_noise_sigma = float(tables["init_noise_sigma"])
        self.history_size = int(tables["history_size"])
        self.clip_range = tables.get("clip_range")
        self.needs_noise = bool(tables.get("needs_noise", False))
        self.reset()

    @classmethod
    def create(cls, class_name: str, config: dict[str, Any], num_inference_steps: int) -> "TableScheduler":
        return cls(scheduler_tables(class_name, config, num_inference_steps))

    def __len__(self) -> int:
        return len(self.steps)

    def reset(self) -> None:
        self._history: list[np.ndarray] = []
        self._saved: np.ndarray | None = None

    def step_needs_noise(self, index: int) -> bool:
        return self.steps[index].update[3] != 0.0

    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        scale = self.steps[index].input_scale
        return sample if scale == 1.0 else (sample * scale).astype(np.float32)

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        row = self.steps[index]
        m = model_output.astype(np.float32, copy=False)
        x = sample.astype(np.float32, copy=False)
        if row.base == "saved":
            if self._saved is None:
                raise UnsupportedError(f"step {index} restarts from a saved sample but none was saved; call reset() and step in order")
            base = self._saved
        else:
            base = x
        if row.save_sample:
            self._saved = x
        d = _axpby(row.convert[0], base, row.convert[1], m)
        combined = d * row.combine[0] if row.combine[0] != 1.0 else d
        for k, weight in enumerate(row.combine[1:], start=1):
            if k > len(self._history):
                raise UnsupportedError(f"step {index} needs {k} earlier outputs; step the scheduler in order from reset()")
            combined = combined + weight * self._history[-k]
        if row.push:
            self._history.append(d)
            if self.history_size:
                del self._history[: -self.history_size]
            else:
                self._history.clear()
        out = _axpby(row.update[0], base, row.update[1], combined)
        if row.x0 is not None:
            x0 = _axpby(row.x0[0], base, row.x0[1], m)
            if self.clip_range is not None:
                x0 = np.clip(x0, -self.clip_range, self.clip_range)
            out = out + row.update[2] * x0
        if row.update[3] != 0.0:
            if noise is None:
                raise UnsupportedError(f"{self.class_name} step {index} injects noise; pass noise= (a standard-normal array)")
            out = out + row.update[3] * noise.astype(np.float32, copy=False)
        return out.astype(np.float32, copy=False)


def _axpby(a: float, x: np.ndarray, b: float, y: np.ndarray) -> np.ndarray:
    """a*x + b*y in float32, skipping zero terms (so 0 * inf never appears)."""
    if a == 0.0:
        return (b * y).astype(np.float32, copy=False)
    if b == 0.0:
        return (a * x).astype(np.float32, copy=False)
    return (a * x + b * y).astype(np.float32, copy=False)
