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
4. hand-off: the plan and the calibration inputs are attached to the Component; every backend reads them with
   `int8_inputs(component)` and realises the plan its own way (ONNX Runtime: static QDQ with nodes_to_exclude
   and weight-only dequantize nodes; LiteRT: ai-edge-quantizer per-layer rules; Core ML: keep-float weights).

`convert` writes the plans to precision_plan.json (+ a sensitivity plot per component) next to the artifacts,
and the report shows them. Layer names are PyTorch module paths inside the component module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgediff.errors import RecipeError
from edgediff.slim import calibration as calib

PLAN_FORMAT = "edgediff-precision-plan/1"
PLAN_FILE = "precision_plan.json"
MODES = ("int8", "int8_weights", "float")
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

    def target_for(self, component: str) -> float:
        return float(self.targets.get(component, self.target_psnr_db))


def settings_from_options(options: dict[str, Any]) -> QuantizeSettings:
    from edgediff.recipe import _build

    settings = _build(QuantizeSettings, dict(options), "slim.steps.quantize.options")
    if settings.eval_samples < 1 or settings.calibration_samples < 1 or settings.eval_batch < 1:
        raise RecipeError("quantize: calibration_samples, eval_samples and eval_batch must be >= 1")
    if settings.group_depth < 0:
        raise RecipeError("quantize: group_depth must be >= 0 (0 = per layer)")
    return settings


# ---- the plan ---------------------------------------------------------------------------------------------------


@dataclass
class LayerPlan:
    """One unit's decision and what it was based on."""

    name: str  # module path in the component module
    kind: str  # module class
    mode: str  # int8 (weights and activations) | int8_weights | float
    sensitivity_psnr_db: float  # component output PSNR with only this unit (its group) at int8
    weight_params: int = 0
    group: str = ""  # the group it was decided with (= name at per-layer granularity)

    @property
    def weights(self) -> str | None:
        if not self.weight_params:
            return None
        return "float" if self.mode == "float" else "int8"

    @property
    def activations(self) -> str:
        return "int8" if self.mode == "int8" else "float"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "weights": self.weights,
                "activations": self.activations, "sensitivity_psnr_db": _round(self.sensitivity_psnr_db),
                "weight_params": self.weight_params, "group": self.group}


@dataclass
class PrecisionPlan:
    """A backend-neutral int8 plan for one component."""

    component: str
    target_psnr_db: float
    layers: list[LayerPlan]
    psnr_db: float  # simulated, this plan
    all_int8_psnr_db: float  # simulated, every unit int8, same calibration
    naive_psnr_db: float  # simulated, every unit int8, calibrated at one timestep
    realised: str = "plan"  # "plan", "plan (weights only)" or "naive" (what the backends were given)
    calibration: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 0
    outputs: dict[str, str] = field(default_factory=dict)  # component output -> the layer that computes it

    def modes(self) -> dict[str, str]:
        return {layer.name: layer.mode for layer in self.layers}

    def names(self, mode: str) -> list[str]:
        return [layer.name for layer in self.layers if layer.mode == mode]

    def float_weight_layers(self) -> list[str]:
        """Layers whose weights must stay float (what weight-only backends like Core ML can realise)."""
        return [layer.name for layer in self.layers if layer.mode == "float" and layer.weight_params]

    def counts(self) -> dict[str, int]:
        return {mode: sum(layer.mode == mode for layer in self.layers) for mode in MODES}

    def summary(self) -> dict[str, Any]:
        params = sum(layer.weight_params for layer in self.layers) or 1
        float_params = sum(layer.weight_params for layer in self.layers if layer.mode == "float")
        return {"realised": self.realised, "target_psnr_db": self.target_psnr_db, "psnr_db": _round(self.psnr_db),
                "all_int8_psnr_db": _round(self.all_int8_psnr_db), "naive_psnr_db": _round(self.naive_psnr_db),
                "layers": len(self.layers), "counts": self.counts(),
                "float_weight_fraction": round(float_params / params, 4)}

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, **self.summary(), "calibration": self.calibration,
                "settings": self.settings, "evaluations": self.evaluations, "outputs": self.outputs,
                "layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrecisionPlan":
        layers = [LayerPlan(d["name"], d["kind"], d["mode"], _unround(d["sensitivity_psnr_db"]),
                            d.get("weight_params", 0), d.get("group", "")) for d in data["layers"]]
        for layer in layers:
            if layer.mode not in MODES:
                raise RecipeError(f"precision plan: layer {layer.name} has unknown mode '{layer.mode}'")
        return cls(data["component"], float(data["target_psnr_db"]), layers, _unround(data["psnr_db"]),
                   _unround(data["all_int8_psnr_db"]), _unround(data["naive_psnr_db"]), data.get("realised", "plan"),
                   data.get("calibration", {}), data.get("settings", {}), data.get("evaluations", 0),
                   data.get("outputs", {}))

    def to_json(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return Path(path)

    @classmethod
    def from_json(cls, path: Path) -> "PrecisionPlan":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _round(value: float) -> float | str:
    return "inf" if value == float("inf") else round(float(value), 3)


def _unround(value: Any) -> float:
    return float("inf") if value == "inf" else float(value)


# ---- what the backends read --------------------------------------------------------------------------------------


@dataclass
class Int8Inputs:
    """The one hand-off from the quantize step to a backend."""

    plan: PrecisionPlan
    calibration: list[dict[str, np.ndarray]]  # the component's input dicts, in their real operating range


def attach(component, plan: PrecisionPlan, samples: list[dict[str, np.ndarray]]) -> None:
    """Leave the plan on the component. `keep_float` is also set for backends that only read keep-float layers."""
    component.int8 = Int8Inputs(plan, samples)
    component.keep_float = tuple(plan.float_weight_layers())


def int8_inputs(component) -> Int8Inputs | None:
    """The plan and calibration attached by the quantize step (None when the component was not planned)."""
    found = getattr(component, "int8", None)
    return found if isinstance(found, Int8Inputs) else None


# ---- the step ---------------------------------------------------------------------------------------------------


def quantize_steps(recipe) -> list:
    """The recipe's slim steps with the quantize step completed: added at int8 when absent, its pipeline keys
    (scheduler, steps, guidance) filled from the recipe. A quantize step at another precision is an error."""
    from edgediff.recipe import SlimStep

    steps = [dataclasses.replace(s, options=dict(s.options)) for s in recipe.slim.steps]
    found = [s for s in steps if s.kind == "quantize"]
    if found and recipe.backend.precision != "int8":
        raise RecipeError(f"the quantize slim step makes int8 artifacts, but the precision is "
                          f"{recipe.backend.precision}: use --precision int8 (or remove the step)")
    if recipe.backend.precision != "int8":
        return steps
    if not found:
        steps.append(SlimStep("quantize", {}))
        found = steps[-1:]
    p = recipe.pipeline
    from edgediff.backends.base import get_backend

    activations = get_backend(recipe.backend.name).int8_activations
    for step in found:
        step.options.setdefault("activations", activations)
        step.options.setdefault("scheduler", p.scheduler)
        step.options.setdefault("num_inference_steps", p.num_inference_steps)
        step.options.setdefault("guidance_scale", p.guidance_scale)
    return steps


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
    for component in chosen:
        samples = data.samples.get(component.name) or []
        if not samples:
            raise RecipeError(f"quantize: no calibration samples for {component.name}")
        timesteps = data.timesteps.get(component.name) or []
        plan, backend_samples = plan_component(component, samples, timesteps, settings, cache, weights,
                                               data.description)
        attach(component, plan, backend_samples)
    return components


def calibration_for(model, components, settings: QuantizeSettings, cache: Path, weights: str) -> calib.CalibrationSet:
    """Captured once per (weights, sampler, prompts, shapes) and reused from the cache afterwards."""
    import diffusers

    cs = calib.CalibrationSettings(
        prompts=list(settings.prompts) or list(model.defaults.get("calibration_prompts", []) if model.defaults
                                               else []) or list(calib.DEFAULT_PROMPTS),
        guidance_scales=list(settings.guidance_scales) or _default_guidance(settings),
        scheduler=settings.scheduler or (model.scheduler_class or "EulerDiscreteScheduler"),
        num_inference_steps=settings.num_inference_steps or 25,
        spread=settings.spread, seed=settings.seed, file=settings.calibration_file,
    )
    shapes = {c.name: [s.to_dict() for s in c.inputs] for c in components}
    key = _digest({"v": CACHE_VERSION, "weights": weights, "settings": asdict(cs), "shapes": shapes,
                   "file": _file_digest(cs.file)})
    path = cache / f"calibration-{key[:24]}.npz"
    if path.is_file():
        return calib.CalibrationSet.load(path)

    def make_scheduler():
        cls = getattr(diffusers, cs.scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise RecipeError(f"unknown scheduler '{cs.scheduler}' (use a diffusers scheduler class name)")
        return cls.from_config(model.scheduler_config)

    data = calib.capture(model, components, cs, make_scheduler)
    data.save(path)
    return data


def _default_guidance(settings: QuantizeSettings) -> list[float]:
    g = settings.guidance_scale if settings.guidance_scale >= 0 else 7.5
    return [g, 1.0] if g > 1.0 else [g]


def plan_component(component, samples, timesteps, settings: QuantizeSettings, cache: Path, weights: str,
                   description: dict[str, Any]) -> tuple[PrecisionPlan, list[dict[str, np.ndarray]]]:
    """The plan for one component (cached) and the calibration samples its backends get."""
    kept, held = calib.split_holdout(list(range(len(samples))))
    ranges_idx = calib.evenly(kept, settings.calibration_samples)
    eval_idx = calib.evenly(held, settings.eval_samples)
    naive_idx = _one_timestep(ranges_idx, timesteps, settings.naive_timestep)
    plan_settings = {k: v for k, v in asdict(settings).items() if k not in ("cache_dir", "naive", "components")}
    key = _digest({"v": CACHE_VERSION, "weights": weights, "component": component.name,
                   "inputs": [s.to_dict() for s in component.inputs], "settings": plan_settings,
                   "calibration": description, "samples": len(samples)})
    path = cache / f"plan-{component.name}-{key[:24]}.json"
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
    sensitivity = {}
    for group, names in tqdm(groups.items(), desc=f"sensitivity {component.name}", unit="unit"):
        alone = {n: top[n] for n in names if top[n] != "float"}
        sensitivity[group] = scorer.psnr(alone) if alone else float("inf")
    order = sorted(groups, key=lambda g: (sensitivity[g], g))  # most sensitive first
    cache: dict[int, float] = {}

    def with_float(k: int) -> float:
        if k not in cache:
            cache[k] = scorer.psnr(assign({g: "float" for g in order[:k]}))
        return cache[k]

    k = 0
    if all_int8 < target:
        low, high = 1, len(order)
        cache[len(order)] = float("inf")
        with tqdm(desc=f"plan search {component.name}", unit="eval", leave=False) as bar:
            while low < high:
                mid = (low + high) // 2
                if with_float(mid) >= target:
                    high = mid
                else:
                    low = mid + 1
                bar.update()
        k = low
    decided = {g: "float" for g in order[:k]}
    psnr = with_float(k) if k else all_int8
    # Refinement: from the least sensitive float unit up, take back int8 (or int8 weights) where the target holds.
    for group in tqdm(list(reversed(order[:k])), desc=f"plan refine {component.name}", unit="unit", leave=False):
        options = [quantized] + (["int8_weights"] if quantized == "int8" and settings.weights_only and
                                 any(units[n].has_weights for n in groups[group]) else [])
        for mode in options:
            trial = dict(decided) | {group: mode}
            score = scorer.psnr(assign(trial))
            if score >= target:
                decided, psnr = trial, score
                break
    modes = assign(decided)
    group_of = {name: g for g, names in groups.items() for name in names}
    layers = [LayerPlan(name, units[name].kind, modes[name], sensitivity[group_of[name]], units[name].weight_params,
                        group_of[name]) for name in units]
    layers.sort(key=lambda layer: (layer.sensitivity_psnr_db, layer.name))
    outputs = {spec.name: unit for spec, unit in zip(component.outputs, sim.output_units) if unit is not None}
    return PrecisionPlan(component.name, target, layers, psnr, all_int8, naive, evaluations=scorer.calls,
                         outputs=outputs, realised="plan" if settings.activations else "plan (weights only)")


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
    if not path:
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- bundle and report ---------------------------------------------------------------------------------------------


def write_bundle_plan(components: list, bundle_dir: Path) -> dict[str, Any] | None:
    """precision_plan.json and one sensitivity plot per planned component; returns the manifest entry."""
    plans = {c.name: found.plan for c in components if (found := int8_inputs(c)) is not None}
    if not plans:
        return None
    bundle_dir = Path(bundle_dir)
    document = {"format": PLAN_FORMAT, "components": {name: plan.to_dict() for name, plan in plans.items()}}
    (bundle_dir / PLAN_FILE).write_text(json.dumps(document, indent=1) + "\n")
    entry: dict[str, Any] = {"file": PLAN_FILE, "components": {}}
    for name, plan in plans.items():
        summary = plan.summary()
        plot = plot_sensitivity(plan, bundle_dir / f"precision_{name}.png")
        if plot:
            summary["plot"] = plot.name
        entry["components"][name] = summary
    return entry


def plot_sensitivity(plan: PrecisionPlan, path: Path, top: int = 40) -> Path | None:
    """Bar chart of the most sensitive units (output PSNR with only that unit int8), coloured by decision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    layers = [layer for layer in plan.layers if math.isfinite(layer.sensitivity_psnr_db)][:top]
    if not layers:
        return None
    colours = {"float": "#d62728", "int8_weights": "#ff7f0e", "int8": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(layers) + 1.6))
    y = np.arange(len(layers))
    ax.barh(y, [layer.sensitivity_psnr_db for layer in layers], color=[colours[layer.mode] for layer in layers])
    ax.axvline(plan.target_psnr_db, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [f"{layer.name} ({layer.kind})" for layer in layers], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{plan.component} output PSNR (dB) with only this unit int8")
    ax.set_title(f"{plan.component}: most sensitive units (red float, orange int8 weights, green int8)\n"
                 f"dashed = target {plan.target_psnr_db:g} dB", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_section(entry: dict[str, Any], bundle_dir: Path, top: int = 15) -> list[str]:
    """Markdown for report.md: per component the plan's figures, its decisions and the most sensitive units."""
    from edgediff.report import markdown_table

    path = Path(bundle_dir) / entry.get("file", PLAN_FILE)
    document = json.loads(path.read_text()) if path.is_file() else {"components": {}}
    lines = ["## int8 precision plan", "",
             "Simulated in PyTorch with fake quantization on held-out calibration samples (output PSNR vs float; "
             "the artifacts' own parity is in the Components table). *naive* = every layer int8, calibrated at "
             f"one timestep; *all int8* = every layer int8 with the full calibration. Full plan: `{path.name}`.", ""]
    rows = []
    for name, summary in entry.get("components", {}).items():
        c = summary["counts"]
        rows.append([name, summary.get("realised", "plan"), f"{summary['target_psnr_db']:g}",
                     _db(summary["psnr_db"]), _db(summary["all_int8_psnr_db"]), _db(summary["naive_psnr_db"]),
                     f"{c['int8']} / {c['int8_weights']} / {c['float']}",
                     f"{100 * summary['float_weight_fraction']:.1f}%"])
    lines += [markdown_table(["component", "realised", "target dB", "plan dB", "all int8 dB", "naive dB",
                              "int8 / int8 weights / float", "float weights"], rows), ""]
    for name, plan in document["components"].items():
        cal = plan.get("calibration", {})
        lines += [f"**{name}**: calibration {cal.get('ranges_samples')} samples ({cal.get('source')}; "
                  f"{len(cal.get('timesteps') or [])} timesteps, {len(cal.get('prompts') or [])} prompts, guidance "
                  f"{cal.get('guidance_scales')}), evaluated on {cal.get('eval_samples')} held-out samples.", ""]
        if plan.get("realised", "plan") == "plan (weights only)":  # every unit with weights is int8 or float
            kept = [layer for layer in plan["layers"] if layer["mode"] == "float" and layer["weight_params"]]
            lines += ["Weight-only plan (the backend compresses weights; activations stay float): "
                      + (("weights kept float: " + ", ".join(f"`{layer['name']}`" for layer in kept)) if kept
                         else "every layer's weights are int8."), ""]
        else:
            kept = [layer for layer in plan["layers"] if layer["mode"] != "int8"]
            if kept:
                lines += ["Kept above int8: " + ", ".join(f"`{layer['name']}` ({layer['mode']})" for layer in kept), ""]
        lines += [markdown_table(["rank", "layer", "kind", "PSNR if only it is int8", "decision"],
                                 [[str(i + 1), f"`{layer['name']}`", layer["kind"],
                                   _db(layer["sensitivity_psnr_db"]), layer["mode"]]
                                  for i, layer in enumerate(plan["layers"][:top])]), ""]
        plot = entry.get("components", {}).get(name, {}).get("plot")
        if plot:
            lines += [f"![{name} sensitivity]({plot})", ""]
    return lines


def _db(value: Any) -> str:
    return "∞" if value == "inf" else f"{float(value):.2f}"


def _register() -> None:
    from edgediff.slim.steps import register_step

    register_step("quantize")(quantize_slim_step)


_register()
