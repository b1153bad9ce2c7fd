"""Recipe + model on disk -> a `Plan`: every default resolved, the model loaded, its components built and slimmed.

`resolve_recipe` fills defaults without loading weights (what `--dry-run` prints and the bundle's `recipe.toml`
records); `resolve` loads the model and runs the slim steps. The orchestrator lowers what the plan holds; verify
and the profiler's PyTorch side rebuild the same components from a bundle's recipe through `resolve`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgediff import defaults
from edgediff.backends.base import Backend, get_backend, options_from_dict
from edgediff.contract import Precision, TensorSpec, check_precision
from edgediff.errors import RecipeError, UnsupportedError
from edgediff.model.components import (
    Component,
    ComponentShapes,
    build_components,
    custom_component,
    native_resolution,
)
from edgediff.model.controlnet import load_controlnet, resolve_controlnet
from edgediff.model.folder import FolderFacts, check_model_folder
from edgediff.model.load import LoadedModel, load_custom, load_model, resolve_model_path
from edgediff.recipe import Recipe, SlimStep
from edgediff.slim import stage_cache
from edgediff.slim.steps import apply_slim_steps
from edgediff.targets import load_target
from edgediff.verify import Thresholds


@dataclass
class Plan:
    """A recipe with every default resolved against the loaded model, and the slimmed components to lower."""

    recipe: Recipe
    model: LoadedModel
    backend: Backend
    options: Any  # the backend's typed Options
    components: list[Component] = field(default_factory=list)
    limits: dict[str, Thresholds] = field(default_factory=dict)
    stage_records: list[dict[str, Any]] = field(default_factory=list)  # slim stages reused / computed (stage_cache)

    @property
    def precision(self) -> Precision:
        return check_precision(self.recipe.backend.precision)


def resolve_recipe(recipe: Recipe) -> Recipe:
    """Fill every default from the target, the backend and the model folder's config files; loads no weights.
    The result is what runs: `--dry-run` prints it, the bundle's recipe.toml records it."""
    recipe = copy.deepcopy(recipe)
    if recipe.pipeline.sizes and not (recipe.pipeline.height or recipe.pipeline.width):  # the first listed size
        from edgediff.model.sizes import parse_size

        recipe.pipeline.height, recipe.pipeline.width = parse_size(recipe.pipeline.sizes[0], "pipeline.sizes")
    if recipe.backend.target:
        target = load_target(recipe.backend.target)
        recipe.backend.name = target.backend
        recipe.backend.precision = recipe.backend.precision or target.precision
    backend = get_backend(recipe.backend.name)
    recipe.backend.precision = check_precision(recipe.backend.precision or backend.default_precision)
    options_from_dict(backend.Options, recipe.backend.options, "backend.options")  # fail before any loading
    if not recipe.model.module:
        folder = resolve_model_path(recipe.model.source or None)
        recipe.model.source = str(folder)
        if folder.is_file():
            _resolve_single_file_defaults(recipe, folder)
        else:
            if recipe.model.prediction_type:
                raise RecipeError("model.prediction_type applies to single-file checkpoints; a model folder's "
                                  "scheduler/scheduler_config.json says it")
            facts = check_model_folder(folder)  # every config, tokenizer file and weights header, before torch
            if facts.kind == "pipeline":
                _resolve_pipeline_defaults(recipe, facts)
            _check_sizes(recipe, facts)
            resolve_controlnet(recipe, facts.configs.get("unet", {}), facts.configs.get("vae", {}))
    else:
        resolve_controlnet(recipe, {}, {})  # refuses a ControlNet for a custom network
    _resolve_loras(recipe)
    recipe.slim.steps = slim_steps(recipe, backend)
    return recipe


def _resolve_loras(recipe: Recipe) -> None:
    """LoRA files as absolute paths (verify and profile re-resolve the bundle's recipe from elsewhere)."""
    from edgediff.model.lora import check_strength, resolve_lora_file

    if recipe.model.loras and recipe.model.module:
        raise RecipeError("LoRAs apply to diffusion models (a UNet and its text encoder), not to a custom --module")
    for i, lora in enumerate(recipe.model.loras):
        lora.file = str(resolve_lora_file(lora.file))
        lora.strength = check_strength(lora.strength, f"model.loras[{i}]")


def slim_steps(recipe: Recipe, backend: Backend) -> list[SlimStep]:
    """The recipe's slim steps with the quantize step completed: added at int8 when absent, its pipeline keys
    (scheduler, steps, guidance) and whether the backend computes int8 activations filled in. A quantize step at
    another precision is an error."""
    steps = [SlimStep(s.kind, dict(s.options)) for s in recipe.slim.steps]
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
    for step in found:
        step.options.setdefault("activations", backend.int8_activations)
        step.options.setdefault("scheduler", p.scheduler)
        step.options.setdefault("num_inference_steps", p.num_inference_steps)
        step.options.setdefault("guidance_scale", p.guidance_scale)
        if p.sizes:  # ranges calibrated at every size (edgediff/slim/calibration_sizes.py)
            step.options.setdefault("sizes", list(p.sizes))
    return steps


def _resolve_pipeline_defaults(recipe: Recipe, facts: FolderFacts) -> None:
    from edgediff.model import sdxl

    if sdxl.is_sdxl_config(facts.configs.get("unet", {})):  # both text encoders condition it (model/sdxl.py)
        recipe.pipeline.components = sdxl.resolve_components(recipe.pipeline.components,
                                                             "text_encoder" in facts.configs)
    _apply_pipeline_defaults(recipe, facts.configs.get("edgediff", {}), facts.configs.get("unet", {}),
                             facts.configs.get("vae", {}), facts.configs.get("scheduler", {}))


def _resolve_single_file_defaults(recipe: Recipe, path: Path) -> None:
    """The same defaults from the configs the checkpoint's detected family rebuilds (header read only)."""
    from edgediff.model.single_file import inspect

    found = inspect(path, recipe.model.prediction_type)
    recipe.model.prediction_type = found.prediction_type  # pinned: verify and profile rebuild exactly this
    if found.family.startswith("sdxl"):  # both text encoders condition the UNet (model/sdxl.py)
        from edgediff.model import sdxl

        recipe.pipeline.components = sdxl.resolve_components(recipe.pipeline.components,
                                                             "text_encoder" in found.configs)
    _apply_pipeline_defaults(recipe, {}, found.configs["unet"], found.configs.get("vae", {}),
                             found.configs["scheduler"])
    resolve_controlnet(recipe, found.configs["unet"], found.configs.get("vae", {}))


def _apply_pipeline_defaults(recipe: Recipe, model_defaults: dict[str, Any], unet_cfg: dict[str, Any],
                             vae_cfg: dict[str, Any], scheduler_cfg: dict[str, Any]) -> None:
    p = recipe.pipeline
    if not p.height or not p.width:
        size = unet_cfg.get("sample_size", 64)
        size = size[0] if isinstance(size, list) else size
        native = model_defaults.get("resolution") or int(size) * _vae_scale(vae_cfg)
        p.height, p.width = p.height or native, p.width or native
    if p.num_inference_steps <= 0:
        p.num_inference_steps = int(model_defaults.get("steps", defaults.STEPS))
    if p.guidance_scale < 0:
        p.guidance_scale = float(model_defaults.get("guidance", defaults.GUIDANCE))
    if "batched_cfg" in model_defaults:
        p.batched_cfg = bool(model_defaults["batched_cfg"])
    if not p.scheduler:
        p.scheduler = model_defaults.get("scheduler") or scheduler_cfg.get("_class_name") or defaults.SCHEDULER


def _vae_scale(vae_cfg: dict[str, Any]) -> int:
    channels = vae_cfg.get("block_out_channels") or vae_cfg.get("encoder_block_out_channels") or [0] * 4
    return 2 ** (len(channels) - 1)


def _check_sizes(recipe: Recipe, facts: FolderFacts) -> None:
    """Sizes the model cannot take fail here, from its configs, not after loading it."""
    p = recipe.pipeline
    scale = _vae_scale(facts.configs.get("vae", {}))
    for key, side in (("height", p.height), ("width", p.width)):
        if side and side % scale:
            raise RecipeError(f"pipeline.{key} must be a multiple of {scale} for {facts.root.name} (its VAE "
                              f"downscales by {scale}), got {side}")


def resolve(recipe: Recipe) -> Plan:
    """Validate the recipe, load the model, build its components and run the slim steps. Nothing is written."""
    recipe = resolve_recipe(recipe)
    backend = get_backend(recipe.backend.name)
    options = options_from_dict(backend.Options, recipe.backend.options, "backend.options")
    precision = check_precision(recipe.backend.precision)
    if precision not in backend.supported_precisions:
        raise UnsupportedError(f"the {backend.name} backend supports {', '.join(backend.supported_precisions)}, "
                               f"not {precision}")
    backend.check_available()

    m = recipe.model
    if m.module:
        model = load_custom(m.module, Path(m.weights) if m.weights else None, m.random_weights)
        specs = [TensorSpec(i.name, tuple(i.shape), i.dtype) for i in m.inputs]
        components = [custom_component(model, m.module.split(":")[-1].lower(), specs)]
    else:
        if Path(m.source).is_file():
            from edgediff.model.single_file import load_single_file

            model = load_single_file(Path(m.source), m.random_weights, m.prediction_type)
        else:
            model = load_model(m.source, random_weights=m.random_weights)
        if m.loras:  # fused before anything is built, so slimming, lowering and verify all see the same model
            from edgediff.model.lora import apply_loras

            apply_loras(model, [(lora.file, lora.strength) for lora in m.loras])
        if m.controlnet:
            model.controlnet = load_controlnet(Path(m.controlnet), m.random_weights)
        p = recipe.pipeline
        if model.kind == "unet":
            p.components = [c for c in p.components if c == "unet"]
        elif model.kind == "vae":
            p.components = [c for c in p.components if c.startswith("vae")] or ["vae_decoder"]
        if not p.height or not p.width:
            size = native_resolution(model) if model.unet is not None else defaults.NON_PIPELINE_RESOLUTION
            p.height, p.width = p.height or size, p.width or size
        time_cond = model.unet is not None and model.unet.config.time_cond_proj_dim
        shapes = ComponentShapes(p.height, p.width,
                                 batched_cfg=p.batched_cfg and p.guidance_scale > 1.0 and not time_cond)
        components = build_components(model, p.components, shapes)
    stage_cache.take_records()  # a fresh list for this plan
    components = apply_slim_steps(recipe.slim.steps, model, components)
    if recipe.pipeline.sizes:  # the other sizes reuse each module (edgediff/model/sizes.py)
        from edgediff.model.component import vae_scale_factor
        from edgediff.model.sizes import attach, bundle_size_list

        p = recipe.pipeline
        components = attach(components, bundle_size_list(p.height, p.width, p.sizes), vae_scale_factor(model.vae))
    limits = {c.name: thresholds(recipe, precision) for c in components}
    return Plan(recipe, model, backend, options, components, limits, stage_cache.take_records())


def thresholds(recipe: Recipe, precision: Precision) -> Thresholds:
    v = recipe.verify
    psnr = v.min_psnr_db if v.min_psnr_db >= 0 else defaults.MIN_PSNR_DB[precision]
    cos = v.min_cosine if v.min_cosine >= 0 else defaults.MIN_COSINE[precision]
    return Thresholds(psnr, cos)
