"""diffusers' constructor defaults per scheduler class, the CLI's short names, and config resolution.

Separate from the math: this is the one place that says which classes exist and what a config means
before any table is built (`edgediff generate` checks `--scheduler` with it before loading a bundle).
"""

from __future__ import annotations

import math
from typing import Any

from edgediff.errors import UnsupportedError

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
    "EulerAncestralDiscreteScheduler": {**_COMMON, "timestep_spacing": "linspace"},
    "HeunDiscreteScheduler": {
        **{k: v for k, v in _COMMON.items() if k != "rescale_betas_zero_snr"},
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "timestep_spacing": "linspace",
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
    "DEISMultistepScheduler": {
        **{k: v for k, v in _COMMON.items() if k != "rescale_betas_zero_snr"},
        "solver_order": 2,
        "thresholding": False,
        "algorithm_type": "deis",
        "solver_type": "logrho",
        "lower_order_final": True,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_flow_sigmas": False,
        "timestep_spacing": "linspace",
        "use_dynamic_shifting": False,
    },
    "UniPCMultistepScheduler": {
        **_COMMON,
        "solver_order": 2,
        "thresholding": False,
        "predict_x0": True,
        "solver_type": "bh2",
        "lower_order_final": True,
        "disable_corrector": [],
        "solver_p": None,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_flow_sigmas": False,
        "timestep_spacing": "linspace",
        "final_sigmas_type": "zero",
        "use_dynamic_shifting": False,
        "sigma_min": None,
        "sigma_max": None,
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
# TCD samples on LCM's distilled timesteps; gamma is edgediff's key (diffusers passes it to step() as `eta`).
DEFAULTS["TCDScheduler"] = {**DEFAULTS["LCMScheduler"], "gamma": 0.3}

# Short names for the CLI (`edgediff generate --scheduler euler`).
ALIASES = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpm++2m": "DPMSolverMultistepScheduler",
    "dpmsolver++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "deis": "DEISMultistepScheduler",
    "lcm": "LCMScheduler",
    "tcd": "TCDScheduler",
    "pndm": "PNDMScheduler",
}

# The A1111 / ComfyUI sampler names that are a class plus config keys: these keys override the bundle's
# scheduler config (`--scheduler dpm++2m-sde-karras` on a bundle converted with any scheduler).
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler-karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "heun-karras": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "dpm++2m-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
    "dpm++2m-sde-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "unipc-karras": ("UniPCMultistepScheduler", {"use_karras_sigmas": True}),
}


def resolve_class_name(name: str) -> str:
    """Accept a diffusers class name, a short alias or a preset; raise a teaching error otherwise."""
    if name in DEFAULTS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    if name.lower() in PRESETS:
        return PRESETS[name.lower()][0]
    known = ", ".join(sorted(DEFAULTS) + sorted(ALIASES) + sorted(PRESETS))
    raise UnsupportedError(f"scheduler {name!r} is not supported by the numpy runtime; use one of: {known}")


def preset_overrides(name: str | None) -> dict[str, Any]:
    """The config keys a preset name sets ({} for a class name or a plain alias)."""
    return dict(PRESETS[name.lower()][1]) if name and name.lower() in PRESETS else {}


def _resolved_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    cfg = dict(DEFAULTS[class_name])
    for key, value in config.items():
        if key in cfg:
            cfg[key] = value
    return cfg
