"""int8 that keeps the picture: timestep-aware calibration, per-layer sensitivity, one plan for every backend.

The recipe step `quantize` (added automatically at `--precision int8`) does, per component:
1. calibration: inputs recorded from the real pipeline at the timesteps the bundle's sampler visits, for several
   prompts, with and without guidance (edgediff.slim.calibration); cached so every backend reuses them;
2. sensitivity: in PyTorch with fake quantization (edgediff.slim.fakequant), one unit (layer, or block with
   `group_depth`) at a time at int8, output PSNR against float over held-out calibration samples;
3. the plan: the fewest units left in float (most sensitive first, then a refinement pass that tries int8 and
   int8-weights-only for each) such that the component's simulated output PSNR >= the recipe's target.
   Also measured: everything int8 with the same calibration, and the naive baseline (everything int8,
   calibrated at one timestep);
4. hand-off: the plan and the calibration inputs go into the Component's declared `int8` field (the contract's
   `Int8Inputs`); every backend reads `component.int8` and realises the plan its own way (ONNX Runtime: static QDQ with nodes_to_exclude
   and weight-only dequantize nodes; LiteRT: ai-edge-quantizer per-layer rules; Core ML: keep-float weights).

The bundle stage writes the plans to precision_plan.json next to the artifacts (edgediff.bundle), and the
report shows them (edgediff.report). Layer names are PyTorch module paths inside the component module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgediff import __version__, defaults
from edgediff.contract import Int8Inputs, LayerPlan, PrecisionPlan, sha256_file
from edgediff.errors import RecipeError
from edgediff.recipe import build_section
from edgediff.slim import calibration as calib
from edgediff.slim import calibration_sizes, stage_cache
from edgediff.slim.plan_search import SEARCHES, block_search, default_block_size, layer_search

CACHE_VERSION = 1


@dataclass
class QuantizeSettings:
    """The `[[slim.steps]] kind = "quantize"` options (all optional)."""

    target_psnr_db: float = 30.0  # simulated output PSNR (dB, peak = float output range) every plan must reach
    targets: dict[str, float] = field(default_factory=dict)  # per-component override, e.g. {unet = 32.0}
    components: list[str] = field(default_factory=list)  # components to quantize; [] = all
    weights_only: bool = True  # let the plan use int8 weights with float activations before falling back to float
    activations: bool = True  # False: a weight-only plan (int8 weights or float); set from the backend by convert
    group_depth: int = 0  # 0 = per layer; N = units grouped by their module path's first N parts (blocks)
    search: str = "blocks"  # "blocks": measure blocks, then units only inside the blocks kept float; "layers": all
    block_units: int = 0  # units per block for the block search; 0 = about sqrt(units)
    prompts: list[str] = field(default_factory=list)  # [] = edgediff.json "calibration_prompts" or built-ins
    guidance_scales: list[float] = field(default_factory=list)  # trajectories; [] = [recipe guidance, 1.0]
    spread: int = 0  # extra UNet timesteps spread evenly over the training range
    calibration_samples: int = 64  # per component, for the ranges (simulation and backends)
    eval_samples: int = 16  # held-out samples for sensitivity and the plan
    eval_batch: int = 16  # samples per simulated forward (lower it for large models)
    calibration_file: str = ""  # .npz, one array per input name (custom networks: required)
    naive: bool = False  # realise the naive baseline instead: everything int8, calibrated at one timestep
    naive_timestep: float = -1.0  # the baseline's timestep; < 0 = the sampler's middle timestep
    cache_dir: str = ""  # "" = $EDGEDIFF_CACHE_DIR or ~/.cache/edgediff
    seed: int = 0
    # Filled from the recipe's [pipeline] by convert; set them only to calibrate for another sampler.
    scheduler: str = ""
    num_inference_steps: int = 0
    guidance_scale: float = -1.0
    # The bundle's sizes ("WxH", recipe pipeline.sizes; filled by convert): ranges are calibrated at each one
    # (edgediff/slim/calibration_sizes.py); the plan is searched at the first.
    sizes: list[str] = field(default_factory=list)

    def target_for(self, component: str) -> float:
        return float(self.targets.get(component, self.target_psnr_db))


def settings_from_options(options: dict[str, Any]) -> QuantizeSettings:
    settings = build_section(QuantizeSettings, dict(options), "slim.steps.quantize.options")
    if settings.eval_samples < 1 or settings.calibration_samples < 1 or settings.eval_batch < 1:
        raise RecipeError("quantize: calibration_samples, eval_samples and eval_batch must be >= 1")
    if settings.search not in SEARCHES:
        raise RecipeError(f"quantize: search must be one of {', '.join(SEARCHES)}, not '{settings.search}'")
    if settings.block_units < 0:
        raise RecipeError("quantize: block_units must be >= 0 (0 = about the square root of the unit count)")
    if settings.group_depth < 0:
        raise RecipeError("quantize: group_depth must be >= 0 (0 = per layer)")
    return settings


# ---- what the backends read --------------------------------------------------------------------------------------


def attach(component, plan: PrecisionPlan, samples: list[dict[str, np.ndarray]]) -> None:
    """Hand the plan and its calibration to the backends through the component's declared `int8` field."""
    component.int8 = Int8Inputs(plan, samples)


# ---- the step ---------------------------------------------------------------------------------------------------


def quantize_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `quantize`: calibrate, measure sensitivity, plan, and attach the plan to each component."""
    settings = settings_from_options(options)
    chosen = [c for c in components if not settings.components or c.name in settings.components]
    unknown = set(settings.components) - {c.name for c in components}
    if unknown:
        raise RecipeError(f"quantize: components {', '.join(sorted(unknown))} are not being converted "
                          f"(converting {', '.join(c.name for c in components)})")
    cache = _cache_dir(settings)
    weights = weights_digest(model, chosen)
    data = calibration_for(model, components, settings, cache, weights)
    more = calibration_sizes.samples_at_other_sizes(  # weight-only plans measure no activation ranges
        model, components, settings.sizes if settings.activations else [],
        lambda at: calibration_for(model, at, settings, cache, weights))
    first = calibration_sizes.first_size(model, components) if more else None
    for component in chosen:
        samples = data.samples.get(component.name) or []
        if not samples:
            raise RecipeError(f"quantize: no calibration samples for {component.name}")
        timesteps = data.timesteps.get(component.name) or []
        plan, backend_samples = plan_component(component, samples, timesteps, settings, cache, weights,
                                               data.description)
        backend_samples = calibration_sizes.with_every_size(plan, first, backend_samples,
                                                            more.get(component.name, {}), settings.naive)
        attach(component, plan, backend_samples)
    return components


def calibration_for(model, components, settings: QuantizeSettings, cache: Path, weights: str) -> calib.CalibrationSet:
    """Captured once per (weights, sampler, prompts, shapes) and reused from the cache afterwards."""
    import diffusers

    cs = calib.CalibrationSettings(
        prompts=list(settings.prompts) or list(model.defaults.get("calibration_prompts", []) if model.defaults
                                               else []) or list(calib.DEFAULT_PROMPTS),
        guidance_scales=list(settings.guidance_scales) or _default_guidance(settings),
        scheduler=settings.scheduler or (model.scheduler_class or defaults.SCHEDULER),
        num_inference_steps=settings.num_inference_steps or defaults.STEPS,
        spread=settings.spread, seed=settings.seed, file=settings.calibration_file,
    )
    shapes = {c.name: [s.to_dict() for s in c.inputs] for c in components}
    key = _digest({"v": CACHE_VERSION, "weights": weights, "settings": asdict(cs), "shapes": shapes,
                   "file": _file_digest(cs.file), "edgediff": __version__})
    path = cache / f"calibration-{key[:24]}.npz"
    record = stage_cache.note("quantize calibration", key, path.is_file())
    start = time.perf_counter()
    if path.is_file():
        found = calib.CalibrationSet.load(path)
        record["seconds"] = round(time.perf_counter() - start, 2)
        return found

    def make_scheduler():
        cls = getattr(diffusers, cs.scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise RecipeError(f"unknown scheduler '{cs.scheduler}' (use a diffusers scheduler class name)")
        return cls.from_config(model.scheduler_config)

    data = calib.capture(model, components, cs, make_scheduler)
    data.save(path)
    record["seconds"] = round(time.perf_counter() - start, 2)
    return data


def _default_guidance(settings: QuantizeSettings) -> list[float]:
    g = settings.guidance_scale if settings.guidance_scale >= 0 else defaults.GUIDANCE
    return [g, 1.0] if g > 1.0 else [g]


def plan_component(component, samples, timesteps, settings: QuantizeSettings, cache: Path, weights: str,
                   description: dict[str, Any]) -> tuple[PrecisionPlan, list[dict[str, np.ndarray]]]:
    """The plan for one component (cached) and the calibration samples its backends get."""
    kept, held = calib.split_holdout(list(range(len(samples))))
    ranges_idx = calib.evenly(kept, settings.calibration_samples)
    eval_idx = calib.evenly(held, settings.eval_samples)
    naive_idx = _one_timestep(ranges_idx, timesteps, settings.naive_timestep)
    plan_settings = {k: v for k, v in asdict(settings).items()
                     if k not in ("cache_dir", "naive", "components", "sizes")}
    key = _digest({"v": CACHE_VERSION, "weights": weights, "component": component.name,
                   "inputs": [s.to_dict() for s in component.inputs], "settings": plan_settings,
                   "calibration": description, "samples": len(samples), "edgediff": __version__})
    path = cache / f"plan-{component.name}-{key[:24]}.json"
    record = stage_cache.note(f"quantize plan ({component.name})", key, path.is_file())
    start = time.perf_counter()
    if path.is_file():
        plan = PrecisionPlan.from_json(path)
    else:
        plan = search_plan(component, [samples[i] for i in ranges_idx], [samples[i] for i in eval_idx],
                           [samples[i] for i in naive_idx], settings)
        plan.calibration = {
            "source": description.get("source", "pipeline"), "captured": len(samples),
            "ranges_samples": len(ranges_idx), "eval_samples": len(eval_idx), "holdout": "every 4th sample",
            "timesteps": sorted({round(timesteps[i], 3) for i in ranges_idx}) if timesteps else [],
            "naive_timestep": round(timesteps[naive_idx[0]], 3) if timesteps else None,
            "naive_samples": len(naive_idx),
            "prompts": description.get("prompts", []), "guidance_scales": description.get("guidance_scales", []),
            "scheduler": description.get("scheduler", ""), "steps": description.get("num_inference_steps", 0),
            "spread": description.get("spread", 0),
        }
        plan.settings = plan_settings
        plan.to_json(path)
        record["evaluations"] = plan.evaluations
    record["seconds"] = round(time.perf_counter() - start, 2)
    if settings.naive:
        plan = naive_plan(plan)
        return plan, [samples[i] for i in naive_idx]
    return plan, [samples[i] for i in ranges_idx]


def naive_plan(plan: PrecisionPlan) -> PrecisionPlan:
    """The baseline the plan is measured against: every unit int8, calibration from one timestep."""
    layers = [dataclasses.replace(layer, mode="int8") for layer in plan.layers]
    return dataclasses.replace(plan, layers=layers, psnr_db=plan.naive_psnr_db, realised="naive")


def _one_timestep(indices: list[int], timesteps: list[float], wanted: float) -> list[int]:
    if not timesteps:
        return indices[:1]
    present = sorted({timesteps[i] for i in indices})
    t = min(present, key=lambda v: abs(v - wanted)) if wanted >= 0 else present[len(present) // 2]
    return [i for i in indices if timesteps[i] == t]


# ---- sensitivity and search ---------------------------------------------------------------------------------------


class _Scorer:
    """Output PSNR of the component under a mode assignment, over the held-out samples (batched forwards)."""

    def __init__(self, component, sim, eval_samples, batch: int):
        self.component, self.sim = component, sim
        self.batches = [_stack(component, eval_samples[i:i + batch]) for i in range(0, len(eval_samples), batch)]
        self.sizes = [len(eval_samples[i:i + batch]) for i in range(0, len(eval_samples), batch)]
        self.reference = [self._outputs({}, b) for b in self.batches]
        self.calls = 0

    def _outputs(self, modes, args):
        return [o.float().numpy() for o in self.sim.run(args, modes)]

    def psnr(self, modes: dict[str, str]) -> float:
        """10 log10(sum of squared peaks / sum of MSEs) over every sample and output: one bad sample counts."""
        self.calls += 1
        peaks = errors = 0.0
        for args, ref, n in zip(self.batches, self.reference, self.sizes):
            got = self._outputs(modes, args)
            for r, g in zip(ref, got):
                if not np.all(np.isfinite(g)):
                    return float("-inf")
                for a, b in zip(np.split(r, n), np.split(g, n)):
                    peaks += float(a.max() - a.min()) ** 2 or 1.0
                    errors += float(np.mean((a.astype(np.float64) - b) ** 2))
        return float("inf") if errors == 0 else 10.0 * math.log10(peaks / errors)


def search_plan(component, range_samples, eval_samples, naive_samples, settings: QuantizeSettings) -> PrecisionPlan:
    """Sensitivity of every unit, then the fewest float units that meet the target (see the module docstring)."""
    from edgediff.slim.fakequant import Simulator

    target = settings.target_for(component.name)
    sim = Simulator(component.module)
    batch = settings.eval_batch
    if not settings.activations:  # weight-only: one small float pass finds the units, no ranges are needed
        sim.observe([_stack(component, naive_samples[:1])])
        range_samples, naive_samples = [], []
    for i in tqdm(range(0, len(naive_samples), batch), desc=f"ranges {component.name} (one timestep)",
                  unit="batch", leave=False):
        sim.observe([_stack(component, naive_samples[i:i + batch])], reset=i == 0)
    naive_ranges = sim.ranges
    for i in tqdm(range(0, len(range_samples), batch), desc=f"ranges {component.name}", unit="batch", leave=False):
        sim.observe([_stack(component, range_samples[i:i + batch])], reset=i == 0)
    full_ranges = sim.ranges
    scorer = _Scorer(component, sim, eval_samples, batch)
    units = sim.units
    groups = _groups(list(units), settings.group_depth)
    quantized = "int8" if settings.activations else "int8_weights"  # the most compressed mode a unit can take
    top = {name: quantized if (settings.activations or units[name].has_weights) else "float" for name in units}

    def assign(group_modes: dict[str, str]) -> dict[str, str]:
        modes = dict(top)
        for group, mode in group_modes.items():
            for name in groups[group]:
                modes[name] = mode if (mode != "int8_weights" or units[name].has_weights) else "float"
        return modes

    sim.ranges = full_ranges
    all_int8 = scorer.psnr(top)
    if settings.activations:
        sim.ranges = naive_ranges
        naive = scorer.psnr(top)
        sim.ranges = full_ranges
    else:  # no activation ranges: the one-timestep baseline is the same model, no second evaluation pass
        naive = all_int8

    def measure(group_modes: dict[str, str]) -> float:
        return scorer.psnr(assign(group_modes))

    def alone(members: list[str]) -> float:
        modes = {n: top[n] for g in members for n in groups[g] if top[n] != "float"}
        return scorer.psnr(modes) if modes else float("inf")

    def options(group: str) -> list[str]:
        return [quantized] + (["int8_weights"] if quantized == "int8" and settings.weights_only and
                              any(units[n].has_weights for n in groups[group]) else [])

    names = list(groups)
    if settings.search == "layers":
        found = layer_search(names, measure, alone, options, target, all_int8, component.name)
    else:
        size = settings.block_units or default_block_size(len(names))
        found = block_search(names, size, measure, alone, options, target, all_int8, component.name)
    decided, psnr, sensitivity = found.decided, found.psnr, found.sensitivity
    modes = assign(decided)
    group_of = {name: g for g, names in groups.items() for name in names}
    layers = [LayerPlan(name, units[name].kind, modes[name], sensitivity[group_of[name]], units[name].weight_params,
                        found.measured_as.get(group_of[name], group_of[name])) for name in units]
    layers.sort(key=lambda layer: (layer.sensitivity_psnr_db, layer.name))
    outputs = {spec.name: unit for spec, unit in zip(component.outputs, sim.output_units) if unit is not None}
    plan = PrecisionPlan(component.name, target, layers, psnr, all_int8, naive, evaluations=scorer.calls,
                         outputs=outputs, realised="plan" if settings.activations else "plan (weights only)")
    plan.search = {"kind": settings.search, "blocks": found.blocks, "refined_blocks": found.refined_blocks}
    return plan


def _groups(names: list[str], depth: int) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        key = ".".join(name.split(".")[:depth]) if depth and name else name
        groups.setdefault(key, []).append(name)
    return groups


def _stack(component, samples: list[dict[str, np.ndarray]]) -> tuple:
    """Samples concatenated on the batch axis, as torch tensors in the component's input order."""
    import torch

    return tuple(torch.from_numpy(np.concatenate([np.asarray(s[spec.name]) for s in samples]).astype(spec.dtype))
                 for spec in component.inputs)


# ---- cache ----------------------------------------------------------------------------------------------------------


def _cache_dir(settings: QuantizeSettings) -> Path:
    base = settings.cache_dir or os.environ.get("EDGEDIFF_CACHE_DIR") or str(Path.home() / ".cache" / "edgediff")
    path = Path(base).expanduser() / "quantize"
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_digest(model, components: list) -> str:
    """sha256 over every parameter and buffer of the components: a cache key that follows prune/distill steps."""
    import torch

    h = hashlib.sha256()
    for component in components:
        h.update(component.name.encode())
        for name, tensor in component.module.state_dict().items():
            h.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path: str) -> str:
    return sha256_file(Path(path)) if path else ""


