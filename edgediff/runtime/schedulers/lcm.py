"""LCMScheduler as a table: consistency-function steps that re-noise with a fresh draw between steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.noise_schedule import _alphas_cumprod, _no_thresholding, _prediction, _x0_coefficients


def _distilled_timesteps(cfg: dict[str, Any], n: int, name: str) -> np.ndarray:
    """LCM's and TCD's timesteps: n evenly picked from the `original_inference_steps` the student was
    distilled on (so n cannot exceed that)."""
    train = int(cfg["num_train_timesteps"])
    original = int(cfg["original_inference_steps"])
    if not 1 <= original <= train:
        raise UnsupportedError(f"original_inference_steps {original} must be between 1 and the {train} training timesteps")
    if n > original:
        raise UnsupportedError(f"{name} runs at most original_inference_steps={original} steps; asked for {n}")
    origin = (np.arange(1, original + 1) * (train // original) - 1)[::-1]
    indices = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return origin[indices]


def _lcm(cfg: dict[str, Any], n: int) -> tuple[list[StepCoefficients], float]:
    _no_thresholding(cfg)
    kind = _prediction(cfg, ("epsilon", "v_prediction", "sample"))
    ac = _alphas_cumprod(cfg)
    timesteps = _distilled_timesteps(cfg, n, "LCM")
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
