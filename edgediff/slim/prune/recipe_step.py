"""The recipe's `prune` step (preset, explicit spec, or a pruned UNet folder), registered on import.

Separate so that the package's library code does not depend on the recipe machinery.
"""

from __future__ import annotations

from typing import Any

from edgediff.errors import RecipeError
from edgediff.model.components import ComponentShapes, build_components, vae_scale_factor
from edgediff.model.load import load_model, resolve_model_path
from edgediff.slim.prune.presets import preset_spec
from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.surgery import prune_unet


def prune_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `prune`: `preset = "bk-small"` or `spec = {...}` (surgery, teacher's weights), or
    `folder = "path"` (a UNet folder made by `edgediff prune`, e.g. searched and recovered). The model's UNet
    is replaced and the components rebuilt at the same shapes."""
    known = {"preset", "spec", "folder"}
    unknown = sorted(set(options) - known)
    if unknown or len(set(options) & known) != 1:
        raise RecipeError(f"the prune step takes exactly one of {sorted(known)}"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if getattr(model, "unet", None) is None:
        raise RecipeError("the prune step needs a model with a UNet2DConditionModel")
    if "folder" in options:
        folder = resolve_model_path(options["folder"])  # a path, or a name under models/ (from any folder)
        if (folder / "model_index.json").is_file():
            folder = folder / "unet"
        model.unet = load_model(str(folder)).unet
    else:
        spec = (preset_spec(model.unet.config, options["preset"]) if "preset" in options
                else PruneSpec.from_dict(dict(options["spec"])))
        model.unet = _cached_prune(model.unet, spec)
    unet = next((c for c in components if c.name == "unet"), None)
    if unet is None:
        return components
    text = next((c for c in components if c.name == "text_encoder"), None)
    batch, _, h, w = unet.inputs[0].shape
    scale = vae_scale_factor(model.vae)
    shapes = ComponentShapes(h * scale, w * scale, batched_cfg=batch == 2,
                             text_length=text.inputs[0].shape[1] if text is not None else unet.inputs[2].shape[1])
    return build_components(model, [c.name for c in components], shapes)


def _cached_prune(unet: Any, spec: PruneSpec) -> Any:
    """Surgery through the stage cache (keyed by the UNet's weights and the spec): a rerun loads the result."""
    from diffusers import UNet2DConditionModel

    from edgediff.slim import stage_cache

    entry = stage_cache.entry("prune", {"unet": stage_cache.module_digest(unet)}, {"spec": spec.to_dict()})
    if entry.done:
        stage_cache.note("prune", entry.key, True)
        return UNet2DConditionModel.from_pretrained(str(entry.folder / "unet"), use_safetensors=True).eval().requires_grad_(False)
    pruned = prune_unet(unet, spec).eval().requires_grad_(False)
    pruned.save_pretrained(str(entry.folder / "unet"), safe_serialization=True)
    entry.finish({"spec": spec.to_dict()})
    stage_cache.note("prune", entry.key, False)
    return pruned
