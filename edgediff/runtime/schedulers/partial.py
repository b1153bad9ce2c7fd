"""A run that starts part-way down the schedule: image-to-image and inpainting with `strength` < 1.

diffusers' img2img and inpainting pipelines set the full schedule, keep its last `int(steps * strength)` steps
(`get_timesteps`), noise the encoded image to the first kept step (`scheduler.add_noise`) and denoise from there.
Here the same happens on the tables: `partial_start` returns the kept rows and, per row, the two numbers of
`add_noise` at that row's noise level (`noisy = a * clean + b * noise`), which inpainting with a 4-channel UNet
also needs after every step. Numpy only, like the rest of the runtime.

Which rows can simply be cut: a sampler whose rows do not depend on earlier ones (DDIM, Euler, Euler
ancestral, Heun in pairs, LCM, TCD). DPM-Solver multistep restarts its history at the cut, so its first kept
rows are taken from lower-order tables (diffusers' `lower_order_nums` starts at 0 again); PNDM restarts its
step counter, so its rows are rebuilt from the cut. UniPC and DEIS are refused (their corrector / history
restart is not reproduced here).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgediff.errors import ImageInputError, UnsupportedError
from edgediff.runtime.schedulers.coefficients import StepCoefficients
from edgediff.runtime.schedulers.config import _resolved_config, preset_overrides, resolve_class_name
from edgediff.runtime.schedulers.dpm_solver import _dpm_sigmas
from edgediff.runtime.schedulers.euler import _sigma_schedule
from edgediff.runtime.schedulers.noise_schedule import _alphas_cumprod
from edgediff.runtime.schedulers.pndm import _pndm
from edgediff.runtime.schedulers.tables import scheduler_tables

ROWS_PER_STEP = {"HeunDiscreteScheduler": 2}  # diffusers' `scheduler.order`, which get_timesteps multiplies by
_INDEPENDENT_ROWS = {"DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                     "HeunDiscreteScheduler", "LCMScheduler", "TCDScheduler"}
_DDPM_NOISE = {"DDIMScheduler", "PNDMScheduler", "LCMScheduler", "TCDScheduler"}
_SIGMA_NOISE = {"EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler"}
SUPPORTED = sorted(_INDEPENDENT_ROWS | {"PNDMScheduler", "DPMSolverMultistepScheduler"})


@dataclass(frozen=True)
class PartialStart:
    """The rows a run from `begin` executes and the add_noise pair (a, b) at each of them (float32)."""

    tables: dict[str, Any]
    begin: int  # index of the first kept row in the full run's rows
    steps: int  # denoising steps that run (what diffusers' get_timesteps returns)
    noise_scales: list[tuple[np.float32, np.float32]]

    def add_noise(self, clean: np.ndarray, noise: np.ndarray, row: int) -> np.ndarray:
        """`clean` noised to the level of kept row `row` (diffusers' scheduler.add_noise, in float32)."""
        a, b = self.noise_scales[row]
        return (a * clean.astype(np.float32) + b * noise.astype(np.float32)).astype(np.float32)


def start_step(steps: int, strength: float) -> int:
    """diffusers' t_start: how many of `steps` are skipped at `strength`; refuses a strength that keeps none."""
    if not (isinstance(strength, (int, float)) and 0.0 < strength <= 1.0):
        raise ImageInputError(f"strength must be in (0, 1] (1 = ignore the image's content, small = stay close to it), "
                              f"got {strength}")
    kept = min(int(steps * strength), steps)
    if kept < 1:
        raise ImageInputError(f"strength {strength} keeps {kept} of {steps} steps: nothing would be denoised; use "
                              f"strength >= {1 / steps:.3g} or more steps")
    return steps - kept


def partial_start(class_name: str, config: dict[str, Any], steps: int, strength: float,
                  full: dict[str, Any] | None = None) -> PartialStart:
    """Tables and add_noise scales for a run of `steps` steps at `strength`. `full` is the whole run's tables
    when already made (the manifest's); `class_name` may be a preset."""
    name = resolve_class_name(class_name)
    t_start = start_step(steps, strength)
    full = full or scheduler_tables(class_name, config, steps)
    cfg = _resolved_config(name, {**config, **preset_overrides(class_name)})
    begin = t_start * ROWS_PER_STEP.get(name, 1)
    rows = [StepCoefficients.from_json(r) for r in full["steps"]]
    if name in _INDEPENDENT_ROWS:
        kept = rows[begin:]
    elif name == "PNDMScheduler":
        kept = _pndm(cfg, steps, begin)[0]
    elif name == "DPMSolverMultistepScheduler":
        kept = rows[begin:]
        for k in range(min(int(cfg["solver_order"]) - 1, len(kept))):  # history restarts: orders 1, 2, ... first
            lower = scheduler_tables(class_name, {**config, "solver_order": k + 1}, steps)["steps"][begin + k]
            kept[k] = dataclasses.replace(StepCoefficients.from_json(lower), push=True)
    else:
        raise UnsupportedError(f"image-to-image and inpainting with {name} are not supported by the numpy runtime "
                               f"(its multistep corrector does not restart here); use --scheduler with one of "
                               f"{', '.join(SUPPORTED)}")
    timesteps = [r.timestep for r in kept]
    scales = [_noise_scale(name, cfg, steps, begin + i, timesteps[i]) for i in range(len(kept))]
    json_rows = [r.to_json() for r in kept]
    tables = {
        **full,
        "timesteps": timesteps,
        "history_size": max(len(r.combine) for r in kept) - 1,
        "needs_noise": any(r.update[3] != 0.0 for r in kept),
        "steps": json_rows,
        "begin": begin,
    }
    return PartialStart(tables=tables, begin=begin, steps=steps - t_start, noise_scales=scales)


def _noise_scale(name: str, cfg: dict[str, Any], steps: int, index: int, timestep: float) -> tuple[np.float32, np.float32]:
    """(a, b) of diffusers' add_noise at row `index` of the full run, rounded as its float32 tensors are."""
    one = np.float32(1.0)
    if name in _DDPM_NOISE:
        ac = _alphas_cumprod(cfg).astype(np.float32)[int(round(timestep))]
        return np.float32(ac ** np.float32(0.5)), np.float32((one - ac) ** np.float32(0.5))
    if name in _SIGMA_NOISE:
        sigmas = np.concatenate([_sigma_schedule(cfg, steps)[1], [0.0]]).astype(np.float32)
        k = (index + 1) // 2 if name == "HeunDiscreteScheduler" else index  # Heun repeats every sigma but the first
        return one, np.float32(sigmas[k])
    sigma = np.float32(_dpm_sigmas(cfg, steps)[1][index])
    alpha = np.float32(one / (sigma * sigma + one) ** np.float32(0.5))
    return alpha, np.float32(sigma * alpha)
