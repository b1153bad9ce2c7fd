"""The convert flow: load -> slim -> lower -> verify -> profile -> bundle, driven by one resolved recipe.

`resolve` turns a recipe plus the model on disk into a `Plan` (every default filled in, so `--dry-run` shows
exactly what will run); `convert` executes it into `DIR/<backend>/` via a staging folder.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgediff import bundle, verify
from edgediff.backends.base import PRECISIONS, Artifact, Backend, get_backend, options_from_dict
from edgediff.errors import ParityError, RecipeError, UnsupportedError
from edgediff.model.components import (
    Component, ComponentShapes, TensorSpec, build_components, custom_component, native_resolution,
    vae_scale_factor, vae_scaling_factor,
)
from edgediff.model.load import LoadedModel, load_custom, load_model, resolve_model_path
from edgediff.recipe import Recipe

DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 7.5


@dataclass
class Plan:
    """A recipe with every default resolved against the loaded model."""

    recipe: Recipe
    model: LoadedModel
    backend: Backend
    options: Any
    components: list[Component] = field(default_factory=list)
    limits: dict[str, verify.Thresholds] = field(default_factory=dict)


def resolve_recipe(recipe: Recipe) -> Recipe:
    """Fill every default from the target and the model folder's config files; loads no weights."""
    recipe = copy.deepcopy(recipe)
    if recipe.backend.target:
        from edgediff.targets import load_target

        target = load_target(recipe.backend.target)
        recipe.backend.name = target.backend
        recipe.backend.precision = recipe.backend.precision or target.precision
    if not recipe.backend.precision:  # the backend's native precision (Core ML: fp16), else fp32
        from edgediff.backends.base import get_backend

        recipe.backend.precision = get_backend(recipe.backend.name).default_precision
    if recipe.backend.precision not in PRECISIONS:
        raise RecipeError(f"unknown precision '{recipe.backend.precision}' (valid: {', '.join(PRECISIONS)})")
    if recipe.model.module:
        return recipe
    folder = resolve_model_path(recipe.model.source or None)
    recipe.model.source = str(folder)
    if (folder / "model_index.json").exists():
        _resolve_pipeline_defaults(recipe, folder)
    return recipe


def _resolve_pipeline_defaults(recipe: Recipe, folder: Path) -> None:
    p = recipe.pipeline
    defaults = _json(folder / "edgediff.json")
    unet_cfg, vae_cfg = _json(folder / "unet" / "config.json"), _json(folder / "vae" / "config.json")
    scheduler_cfg = _json(folder / "scheduler" / "scheduler_config.json")
    if not p.height or not p.width:
        size = unet_cfg.get("sample_size", 64)
        size = size[0] if isinstance(size, list) else size
        channels = vae_cfg.get("block_out_channels") or vae_cfg.get("encoder_block_out_channels") or [0] * 4
        native = defaults.get("resolution") or int(size) * 2 ** (len(channels) - 1)
        p.height, p.width = p.height or native, p.width or native
    if p.num_inference_steps <= 0:
        p.num_inference_steps = int(defaults.get("steps", DEFAULT_STEPS))
    if p.guidance_scale < 0:
        p.guidance_scale = float(defaults.get("guidance", DEFAULT_GUIDANCE))
    if "batched_cfg" in defaults:
        p.batched_cfg = bool(defaults["batched_cfg"])
    if not p.scheduler:
        p.scheduler = defaults.get("scheduler") or scheduler_cfg.get("_class_name") or "EulerDiscreteScheduler"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def resolve(recipe: Recipe) -> Plan:
    """Validate the recipe, load the model and build its components. Nothing is written."""
    recipe = resolve_recipe(recipe)
    backend = get_backend(recipe.backend.name)
    options = options_from_dict(backend.Options, recipe.backend.options, "backend.options")
    precision = recipe.backend.precision
    if precision not in backend.supported_precisions:
        raise UnsupportedError(f"the {backend.name} backend supports {', '.join(backend.supported_precisions)}, "
                               f"not {precision}")
    backend.check_available()

    m = recipe.model
    if m.module:
        model = load_custom(m.module, Path(m.weights) if m.weights else None, m.random_weights)
        specs = [TensorSpec(i.name, tuple(i.shape), i.dtype) for i in m.inputs]
        name = m.module.split(":")[-1].lower()
        components = [custom_component(model, name, specs)]
    else:
        model = load_model(m.source, random_weights=m.random_weights)
        p = recipe.pipeline
        if model.kind == "unet":
            p.components = [c for c in p.components if c == "unet"]
        elif model.kind == "vae":
            p.components = [c for c in p.components if c.startswith("vae")] or ["vae_decoder"]
        if not p.height or not p.width:
            size = native_resolution(model) if model.unet is not None else 512
            p.height, p.width = p.height or size, p.width or size
        time_cond = model.unet is not None and model.unet.config.time_cond_proj_dim
        shapes = ComponentShapes(p.height, p.width,
                                 batched_cfg=p.batched_cfg and p.guidance_scale > 1.0 and not time_cond)
        components = build_components(model, p.components, shapes)
    from edgediff.slim.quantize import quantize_steps
    from edgediff.slim.steps import apply_slim_steps

    components = apply_slim_steps(quantize_steps(recipe), model, components)  # int8 adds the quantize step
    limits = {c.name: _thresholds(recipe, precision) for c in components}
    return Plan(recipe, model, backend, options, components, limits)


def _thresholds(recipe: Recipe, precision: str) -> verify.Thresholds:
    v = recipe.verify
    psnr = v.min_psnr_db if v.min_psnr_db >= 0 else verify.DEFAULT_MIN_PSNR_DB[precision]
    cos = v.min_cosine if v.min_cosine >= 0 else verify.DEFAULT_MIN_COSINE[precision]
    return verify.Thresholds(psnr, cos)


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise): at full size the
    convert process held ~11.5 GB while each profiling worker loaded its own copy (18.6 GB process tree)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def convert(plan: Plan, output_dir: Path, log=print) -> Path:
    """Lower, verify, profile and bundle. Returns the finished bundle folder."""
    recipe, backend = plan.recipe, plan.backend
    final_dir = Path(output_dir) / backend.name
    times = StageTimes()
    with bundle.staged_output(final_dir) as staging:
        artifacts: dict[str, Artifact] = {}
        for component in tqdm(plan.components, desc=f"lower ({backend.name})", unit="component"):
            start = time.perf_counter()
            artifacts[component.name] = backend.lower(component, plan.options, recipe.backend.precision, staging)
            times.add(f"lower {component.name}", start)
        start = time.perf_counter()
        results = verify_artifacts(plan, artifacts)
        e2e = end_to_end(plan, artifacts)
        times.add("verify", start)
        manifest = build_manifest(plan, artifacts, results, e2e, staging)
        records = []
        if recipe.profile.enabled:
            from edgediff.profile.host import profile_bundle

            bundle.write_json(staging / bundle.MANIFEST, manifest)
            release_memory()  # the profiling workers load their own copies; give the verify sessions' memory back
            start = time.perf_counter()
            records = profile_bundle(staging, runs=recipe.profile.runs, warmup=recipe.profile.warmup,
                                     compare_pytorch=recipe.profile.compare_pytorch,
                                     op_profile=recipe.profile.op_profile, log=log)
            times.add("profile", start)
            from edgediff.profile.record import write_records

            write_records(records, staging / "profile.json")
        manifest["timings_s"] = {k: round(v, 2) for k, v in times.seconds.items()}
        bundle.write_json(staging / bundle.MANIFEST, manifest)
        from edgediff import report

        report.write_report(staging, manifest, records)
        failures = [r.shortfall(plan.limits[r.component]) for r in results if r.status == "failed"]
        if e2e.get("status") == "failed":
            failures.append(f"end-to-end image: PSNR {e2e['psnr_db']:.1f} dB < {e2e['min_psnr_db']:g} dB")
        if failures:
            error = ParityError(failures)
            error.keep_output = True
            raise error
    return final_dir


def verify_artifacts(plan: Plan, artifacts: dict[str, Artifact]) -> list[verify.ComponentResult]:
    """Each artifact against its PyTorch component on `samples` seeded inputs; skipped (with reason) where
    the backend cannot run on this machine, plus the backend's structural checks when it has them."""
    backend, samples = plan.backend, plan.recipe.verify.samples
    runnable, why = backend.can_run_here()
    results = []
    for component in tqdm(plan.components, desc="verify", unit="component"):
        artifact = artifacts[component.name]
        if not runnable:
            result = verify.ComponentResult(component.name, "skipped", reason=why)
        else:
            session = backend.load(artifact, plan.options)
            inputs = [component.example_inputs(seed) for seed in range(1, samples + 1)]
            result = verify.check_component(component.name, component.run_torch, session, inputs,
                                            plan.limits[component.name])
        if hasattr(backend, "structural_check"):
            result.structural = backend.structural_check(artifact, plan.options, plan.recipe.backend.precision)
        results.append(result)
    return results


def end_to_end(plan: Plan, artifacts: dict[str, Artifact]) -> dict[str, Any]:
    """Full text -> image through the artifacts vs. through PyTorch, same tokens, scheduler and noise."""
    v, p, model = plan.recipe.verify, plan.recipe.pipeline, plan.model
    if not v.end_to_end:
        return {"status": "skipped", "reason": "disabled in the recipe"}
    needed = {"text_encoder", "unet", "vae_decoder"}
    if model.kind != "pipeline" or model.tokenizer_dir is None or not needed <= set(artifacts):
        return {"status": "skipped", "reason": "needs a full pipeline (tokenizer, text_encoder, unet, vae_decoder)"}
    runnable, why = plan.backend.can_run_here()
    if not runnable:
        return {"status": "skipped", "reason": why}
    from edgediff.model import sampling

    by_name = {c.name: c for c in plan.components}
    unet_spec = by_name["unet"].inputs[0]
    time_cond = next((s.shape[1] for s in by_name["unet"].inputs if s.name == "timestep_cond"), 0)
    ids = sampling.tokenize(model.tokenizer_dir, [v.prompt, ""])
    settings = sampling.SamplingSettings(v.prompt, v.seed, p.num_inference_steps, p.guidance_scale)
    images = {}
    for side in ("pytorch", "artifact"):
        calls = {name: (by_name[name].run_torch if side == "pytorch"
                        else plan.backend.load(artifacts[name], plan.options)) for name in needed}
        images[side] = sampling.generate(
            calls["text_encoder"], calls["unet"], calls["vae_decoder"], input_ids=ids[:1], uncond_ids=ids[1:],
            scheduler=make_scheduler(plan), settings=settings, latent_shape=(1,) + unet_spec.shape[1:],
            scaling_factor=vae_scaling_factor(model.vae), unet_batch=unet_spec.shape[0], time_cond_dim=time_cond,
            progress=lambda steps, side=side: tqdm(steps, desc=f"end-to-end ({side})", unit="step", leave=False),
        )
    ref, got = (sampling.to_uint8(images[k]).astype(np.float64) for k in ("pytorch", "artifact"))
    mse = float(np.mean((ref - got) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    threshold = v.min_image_psnr_db if v.min_image_psnr_db >= 0 else (
        20.0 if plan.recipe.backend.precision == "int8" else 30.0)
    return {"status": "passed" if psnr >= threshold else "failed", "psnr_db": round(psnr, 2),
            "min_psnr_db": threshold, "prompt": v.prompt, "seed": v.seed, "steps": p.num_inference_steps,
            "guidance_scale": p.guidance_scale, "images": images}


def make_scheduler(plan: Plan):
    import diffusers

    p, model = plan.recipe.pipeline, plan.model
    cls = getattr(diffusers, p.scheduler, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise RecipeError(f"unknown scheduler '{p.scheduler}' (use a diffusers scheduler class name)")
    return cls.from_config(model.scheduler_config)


def build_manifest(plan: Plan, artifacts: dict[str, Artifact], results: list[verify.ComponentResult],
                   e2e: dict[str, Any], bundle_dir: Path) -> dict[str, Any]:
    recipe, model = plan.recipe, plan.model
    components = {}
    for result in results:
        entry = bundle.artifact_entry(artifacts[result.component], bundle_dir)
        entry["verify"] = result.to_dict() | {"min_psnr_db": plan.limits[result.component].min_psnr_db}
        if getattr(result, "structural", None) is not None:
            entry["verify"]["structural"] = result.structural
        components[result.component] = entry
    manifest: dict[str, Any] = {
        "format": bundle.FORMAT,
        "backend": plan.backend.name,
        "backend_version": plan.backend.version(),
        "precision": recipe.backend.precision,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {"model": model.source, "kind": model.kind, "random_weights": model.random_weights},
        "components": components,
    }
    if model.random_weights:
        manifest["source"]["note"] = "random weights: architecture test only, images are noise"
    if model.kind == "pipeline":
        manifest["pipeline"] = pipeline_entry(plan)
        tok = bundle.copy_tokenizer(model.tokenizer_dir, bundle_dir)
        if tok:
            manifest["tokenizer"] = tok
    e2e_public = {k: v for k, v in e2e.items() if k != "images"}
    manifest["verify"] = {"end_to_end": e2e_public}
    if recipe.backend.precision == "int8":
        from edgediff.slim.quantize import write_bundle_plan

        plan_entry = write_bundle_plan(plan.components, bundle_dir)  # precision_plan.json + sensitivity plots
        if plan_entry:
            manifest["precision_plan"] = plan_entry
    if "images" in e2e:
        from PIL import Image

        from edgediff.model.sampling import to_uint8

        strip = np.concatenate([to_uint8(e2e["images"]["pytorch"]), to_uint8(e2e["images"]["artifact"])], axis=1)
        Image.fromarray(strip).save(bundle_dir / "end_to_end.png")
        manifest["verify"]["end_to_end"]["image"] = "end_to_end.png"
    (bundle_dir / bundle.RECIPE_FILE).write_text(_recipe_toml(recipe))
    return manifest


def pipeline_entry(plan: Plan) -> dict[str, Any]:
    p, model = plan.recipe.pipeline, plan.model
    by_name = {c.name: c for c in plan.components}
    scale = vae_scale_factor(model.vae)
    latent_channels = model.unet.config.in_channels
    unet = by_name.get("unet")
    batched = bool(unet and unet.inputs[0].shape[0] == 2)
    scheduler_config = {k: v for k, v in model.scheduler_config.items()}
    scheduler: dict[str, Any] = {"class_name": p.scheduler, "config": scheduler_config,
                                 "num_inference_steps": p.num_inference_steps}
    try:
        from edgediff.runtime.schedulers import scheduler_tables

        scheduler["tables"] = scheduler_tables(p.scheduler, scheduler_config, p.num_inference_steps)
    except ImportError:
        pass
    except Exception as exc:  # an unsupported scheduler on devices must not block the host bundle
        scheduler["tables_error"] = str(exc)
    return {
        "height": p.height, "width": p.width,
        "latent_shape": [1, latent_channels, p.height // scale, p.width // scale],
        "vae_scaling_factor": vae_scaling_factor(model.vae),
        "guidance": {"scale": p.guidance_scale, "batched_cfg": batched,
                     "embedded": bool(model.unet.config.time_cond_proj_dim)},
        "scheduler": scheduler,
        "prediction_type": scheduler_config.get("prediction_type", "epsilon"),
    }


def _recipe_toml(recipe: Recipe) -> str:
    from edgediff.recipe import to_toml

    return to_toml(recipe)

