"""The bundle stage: `DIR/<backend>/` with the artifacts, `manifest.json`, `recipe.toml`, the tokenizer files and
the int8 plan, written into a hidden staging folder (edgediff.outputs.staged_output) and moved into place only
when complete, so a failed or interrupted run never leaves a folder that looks finished.

The manifest itself is the contract's `Manifest` (edgediff/contract.py); this module fills it from the stages'
results.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgediff.contract import Artifact, Manifest, PrecisionPlan, write_json
from edgediff.errors import EdgediffError
from edgediff.model.components import Component, vae_scale_factor, vae_scaling_factor
from edgediff.model.folder import read_json_object
from edgediff.model.load import LoadedModel
from edgediff.model.sampling import to_uint8
from edgediff.outputs import staged_output
from edgediff.profile.record import ProfileRecord
from edgediff.recipe import Recipe, to_toml
from edgediff.runtime.schedulers import scheduler_tables
from edgediff.targets import Target
from edgediff.verify import ComponentResult, Thresholds

RECIPE_FILE = "recipe.toml"
PLAN_FILE = "precision_plan.json"
PLAN_FORMAT = "edgediff-precision-plan/1"
END_TO_END_IMAGE = "end_to_end.png"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def build_manifest(recipe: Recipe, model: LoadedModel, backend_name: str, backend_version: str,
                   components: list[Component], artifacts: dict[str, Artifact], results: list[ComponentResult],
                   limits: dict[str, Thresholds], end_to_end: dict[str, Any], bundle_dir: Path) -> Manifest:
    """The manifest of a finished conversion; also writes recipe.toml, the tokenizer, the int8 plan and the
    end-to-end image strip into `bundle_dir`."""
    for result in results:
        record = result.to_dict() | {"min_psnr_db": limits[result.component].min_psnr_db}
        if result.structural is not None:
            record["structural"] = result.structural
        artifacts[result.component].verify = record
    source: dict[str, Any] = {"model": model.source, "kind": model.kind, "random_weights": model.random_weights}
    source.update(model.details)  # single-file detection, fused LoRAs
    if model.random_weights:
        source["note"] = "random weights: architecture test only, images are noise"
    manifest = Manifest(backend=backend_name, precision=recipe.backend.precision,  # type: ignore[arg-type]
                        components=artifacts, source=source, backend_version=backend_version,
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if model.kind == "pipeline":
        manifest.pipeline = pipeline_entry(recipe, model, components)
        manifest.tokenizer = copy_tokenizer(model.tokenizer_dir, bundle_dir)
    images = end_to_end.pop("images", None)
    manifest.verify = {"end_to_end": end_to_end}
    if images is not None:
        write_image_strip(images, bundle_dir / END_TO_END_IMAGE)
        end_to_end["image"] = END_TO_END_IMAGE
    plans = {c.name: c.int8.plan for c in components if c.int8 is not None}
    if plans:
        manifest.precision_plan = write_plans(plans, bundle_dir)
    (bundle_dir / RECIPE_FILE).write_text(to_toml(recipe))
    manifest.side_files = [RECIPE_FILE, *(f"tokenizer/{name}" for name in TOKENIZER_FILES
                                          if (bundle_dir / "tokenizer" / name).is_file())]
    if plans:
        manifest.side_files.append(PLAN_FILE)
    if manifest.pipeline is not None and getattr(model, "text_encoder_2", None) is not None:  # SDXL: model/sdxl.py
        from edgediff.model.sdxl import manifest_section

        manifest.pipeline["sdxl"], files = manifest_section(model, recipe.pipeline.height, recipe.pipeline.width,
                                                            [c.name for c in components], recipe.backend.precision,
                                                            bundle_dir)
        manifest.side_files += [f for f in files if f not in manifest.side_files]
        if manifest.tokenizer is None:  # the refiner has tokenizer_2 only
            manifest.tokenizer = dict(manifest.pipeline["sdxl"]["tokenizers"]["text_encoder_2"])
    return manifest


def memory_entry(records: list[ProfileRecord], backend: str, target: Target | None) -> dict[str, Any] | None:
    """What the bundle needs in memory, from the host profile: each component's peak RSS in its own process (the
    runtime's baseline included), their sum as the upper bound with every component resident, and against the
    target's budget whether the app can keep everything loaded, must load components one at a time, or cannot run
    it. Apps read this to plan sequential loading (apps/ios, apps/android)."""
    peaks = {r.component: float(r.peak_memory_mb) for r in records if r.backend == backend and r.peak_memory_mb}
    if not peaks:
        return None
    entry: dict[str, Any] = {"components": {k: round(v, 1) for k, v in peaks.items()},
                             "peak_mb": round(sum(peaks.values()), 1), "measured_on": records[0].device,
                             "method": "peak RSS of each component's own process on the host; peak_mb adds them"}
    if target is not None and target.memory_budget_mb:
        budget = float(target.memory_budget_mb)
        entry.update(target=target.name, budget_mb=budget)
        if entry["peak_mb"] <= budget:
            entry["plan"] = "all resident"
        elif max(peaks.values()) <= budget:
            entry["plan"] = "sequential"
            entry["note"] = (f"{entry['peak_mb']:.0f} MB with every component loaded exceeds {target.name}'s "
                             f"{budget:.0f} MB budget: the app loads and releases one component at a time")
        else:
            largest = max(peaks, key=lambda k: peaks[k])
            entry["plan"] = "does not fit"
            entry["note"] = (f"{largest} alone needs {peaks[largest]:.0f} MB, over {target.name}'s {budget:.0f} MB "
                             "budget: slim it (prune, int8, a tiny decoder) or pick a larger device")
    return entry


def pipeline_entry(recipe: Recipe, model: LoadedModel, components: list[Component]) -> dict[str, Any]:
    """What a device needs to run text -> image: sizes, guidance, the scheduler and its precomputed tables."""
    p = recipe.pipeline
    by_name = {c.name: c for c in components}
    scale = vae_scale_factor(model.vae)
    unet = by_name.get("unet")
    batched = bool(unet and unet.inputs[0].shape[0] == 2)
    scheduler_config = dict(model.scheduler_config)
    scheduler: dict[str, Any] = {"class_name": p.scheduler, "config": scheduler_config,
                                 "num_inference_steps": p.num_inference_steps}
    try:
        scheduler["tables"] = scheduler_tables(p.scheduler, scheduler_config, p.num_inference_steps)
    except (EdgediffError, ValueError, KeyError, TypeError) as exc:  # an unsupported sampler must not block the bundle
        scheduler["tables_error"] = str(exc)
    entry = {
        "height": p.height, "width": p.width,
        # the latents' channels: an inpainting UNet takes more (latents + mask + masked-image latents)
        "latent_shape": [1, model.unet.config.out_channels, p.height // scale, p.width // scale],
        "vae_scaling_factor": vae_scaling_factor(model.vae),
        "guidance": {"scale": p.guidance_scale, "batched_cfg": batched,
                     "embedded": bool(model.unet.config.time_cond_proj_dim)},
        "scheduler": scheduler,
        "prediction_type": scheduler_config.get("prediction_type", "epsilon"),
    }
    if unet is not None and len(unet.sizes) > 1:  # several sizes (edgediff/model/sizes.py); height/width = first
        entry["sizes"] = [[h, w] for h, w in unet.sizes]
    if "controlnet" in by_name:  # what apps need to feed it (edgediff.model.controlnet.manifest_entry)
        from edgediff.model.controlnet import manifest_entry

        entry["controlnet"] = manifest_entry(by_name["controlnet"])
    return entry


def write_plans(plans: dict[str, PrecisionPlan], bundle_dir: Path) -> dict[str, Any]:
    """precision_plan.json (every decision) and the manifest's summary of it."""
    document = {"format": PLAN_FORMAT, "components": {name: plan.to_dict() for name, plan in plans.items()}}
    write_json(Path(bundle_dir) / PLAN_FILE, document)
    return {"file": PLAN_FILE, "components": {name: plan.summary() for name, plan in plans.items()}}


def write_image_strip(images: dict[str, Any], path: Path) -> None:
    """PyTorch's image (left) beside the artifacts' (right)."""

    strip = np.concatenate([to_uint8(images["pytorch"]), to_uint8(images["artifact"])], axis=1)
    Image.fromarray(strip).save(path)


def copy_tokenizer(tokenizer_dir: Path | None, bundle_dir: Path) -> dict[str, Any] | None:
    """Devices tokenize themselves: ship the CLIP BPE files next to the models."""
    if tokenizer_dir is None:
        return None
    target = bundle_dir / "tokenizer"
    target.mkdir(exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy2(tokenizer_dir / name, target / name)
    config = {}
    if (tokenizer_dir / "tokenizer_config.json").exists():
        config = read_json_object(tokenizer_dir / "tokenizer_config.json")
    max_length = config.get("model_max_length", 77)
    return {"vocab": "tokenizer/vocab.json", "merges": "tokenizer/merges.txt",
            "max_length": int(max_length) if isinstance(max_length, (int, float)) and max_length < 10**6 else 77,
            "config": "tokenizer/tokenizer_config.json"}


__all__ = ["build_manifest", "copy_tokenizer", "pipeline_entry", "staged_output", "write_plans"]
