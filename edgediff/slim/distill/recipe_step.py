"""The recipe's `distill` step: reuse a current student folder or train one, then swap it in; registered on import.

Separate so that the package's library code does not depend on the recipe machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgediff import defaults
from edgediff.errors import RecipeError
from edgediff.model.components import ComponentShapes, build_components, vae_scale_factor
from edgediff.model.load import load_model
from edgediff.slim.distill.defaults import read_model_defaults
from edgediff.slim.distill.run import distill
from edgediff.slim.distill.settings import DistillSettings


def _student_is_current(folder: Path, settings: DistillSettings) -> bool:
    """A student folder made by this teacher, method and step count, trained at least max_steps."""
    record = read_model_defaults(folder).get("distillation", {})
    method = settings.method + ("+lora" if settings.lora_rank else "")
    return (
        (folder / "unet").is_dir()
        and record.get("method") == method
        and Path(record.get("teacher", "")).resolve() == settings.teacher.resolve()
        and int(read_model_defaults(folder).get("steps", -1)) == settings.steps
        and int(record.get("train_steps", -1)) >= settings.max_steps
    )


def settings_from_options(teacher: Path, options: dict[str, Any]) -> DistillSettings:
    """DistillSettings from a recipe `[[slim.steps]] kind = "distill"` options table (unknown keys are errors)."""
    names = {f for f in DistillSettings.__dataclass_fields__ if f != "teacher"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise RecipeError(f"unknown distill option(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    opts = dict(options)
    method, steps = opts.get("method", "consistency"), int(opts.get("steps", 4))
    suffix = (f"lcm{steps}" if method == "consistency" else f"step{steps}") + ("-lora" if opts.get("lora_rank") else "")
    opts.setdefault("output", teacher.parent / f"{teacher.name}-{suffix}")
    opts.setdefault("run_dir", Path("runs") / "distill" / Path(opts["output"]).name)
    if "guidance" not in opts:
        opts["guidance"] = float(read_model_defaults(teacher).get("guidance", defaults.GUIDANCE))
    return DistillSettings(teacher=teacher, **opts)


def distill_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `distill`: reuse the student folder if it is current, else train it (resumable), then
    swap in the student's UNet, scheduler and defaults and rebuild the components for it (UNet batch 1
    with `timestep_cond` when the guidance was distilled in). Put it before other slim steps."""
    if getattr(model, "kind", None) != "pipeline":
        raise RecipeError("the distill step needs a diffusers pipeline model (text encoder, UNet, VAE)")
    if "output" in options:  # a named student folder: reused when it is current (see _student_is_current)
        settings = settings_from_options(Path(model.source), options)
        if not _student_is_current(settings.output, settings):
            distill(settings)
        student_folder = settings.output
    else:  # content-keyed: the student of exactly this teacher, starting UNet and settings
        from edgediff.slim.distill.cached import cached_student

        student_folder = cached_student(model, options, settings_from_options)
    student = load_model(str(student_folder))
    model.unet, model.scheduler_class, model.scheduler_config = student.unet, student.scheduler_class, student.scheduler_config
    model.defaults = dict(student.defaults)
    model.source = str(student_folder)
    unet = next((c for c in components if c.name == "unet"), None)
    text = next((c for c in components if c.name == "text_encoder"), None)
    scale = vae_scale_factor(model.vae)
    if unet is None:
        return components
    _, _, h, w = unet.inputs[0].shape
    shapes = ComponentShapes(
        h * scale, w * scale, batched_cfg=bool(student.defaults.get("batched_cfg", False)),
        text_length=text.inputs[0].shape[1] if text is not None else 77,
    )
    return build_components(model, [c.name for c in components], shapes)
