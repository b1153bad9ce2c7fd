"""`scheduler_tables`: resolve a diffusers config, run its family's builder, check and package the rows.

Separate from the families so that adding one means one new file and one line in `_BUILDERS`.
"""

from __future__ import annotations

import math
from typing import Any

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import TABLES_FORMAT
from edgediff.runtime.schedulers.config import _resolved_config, preset_overrides, resolve_class_name
from edgediff.runtime.schedulers.ddim import _ddim
from edgediff.runtime.schedulers.deis import _deis
from edgediff.runtime.schedulers.dpm_solver import _dpm_multistep
from edgediff.runtime.schedulers.euler import _euler, _euler_ancestral
from edgediff.runtime.schedulers.heun import _heun
from edgediff.runtime.schedulers.lcm import _lcm
from edgediff.runtime.schedulers.pndm import _pndm
from edgediff.runtime.schedulers.tcd import _tcd
from edgediff.runtime.schedulers.unipc import _unipc

_BUILDERS = {
    "DDIMScheduler": _ddim,
    "EulerDiscreteScheduler": _euler,
    "EulerAncestralDiscreteScheduler": _euler_ancestral,
    "HeunDiscreteScheduler": _heun,
    "DPMSolverMultistepScheduler": _dpm_multistep,
    "LCMScheduler": _lcm,
    "PNDMScheduler": _pndm,
    "DEISMultistepScheduler": _deis,
    "TCDScheduler": _tcd,
    "UniPCMultistepScheduler": _unipc,
}


def scheduler_tables(class_name: str, config: dict[str, Any], num_inference_steps: int) -> dict[str, Any]:
    """Everything a device needs to run `class_name` for `num_inference_steps` steps, as JSON-ready data.

    `config` is a diffusers scheduler_config.json dict (keys the class does not know are ignored, as
    diffusers' `from_config` does); a preset name (`dpm++2m-sde-karras`) overrides its keys. The result goes
    into manifest["pipeline"]["scheduler"]["tables"].
    """
    name = resolve_class_name(class_name)
    if int(num_inference_steps) < 1:
        raise UnsupportedError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    overrides = preset_overrides(class_name)
    cfg = _resolved_config(name, {**config, **overrides})
    try:
        steps, init_sigma = _BUILDERS[name](cfg, int(num_inference_steps))
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:  # a hostile or malformed config
        raise UnsupportedError(f"{name} with this config gives no finite coefficients ({exc}); check its values") from exc
    rows = [s.to_json() for s in steps]
    for row in rows:
        values = [row["timestep"], row["input_scale"], *row["convert"], *row["combine"], *row["update"], *(row["x0"] or [])]
        if not all(math.isfinite(v) for v in values):
            raise UnsupportedError(f"{name} with this config gives non-finite coefficients at timestep {row['timestep']}")
    clip = cfg.get("clip_sample_range") if cfg.get("clip_sample") else None
    tables = {
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
    if overrides:
        tables["sampler"] = class_name.lower()  # the preset's name, so a result can say what ran
    return tables
