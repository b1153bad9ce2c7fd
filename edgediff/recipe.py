"""Recipes: one versioned TOML file that says what to convert and how, as typed dataclasses.

Every setting a run uses is traceable to the recipe or to a CLI flag that overrides it; `--dry-run` prints the
resolved recipe (valid TOML, so it can be saved and reused). Unknown keys are errors listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from edgediff.errors import RecipeError

RECIPE_VERSION = 1
COMPONENT_NAMES = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder", "controlnet")
TENSOR_DTYPES = ("float32", "float16", "int64", "int32")
SLIM_KINDS = ("prune", "distill", "quantize", "tiny_decoder")  # edgediff.slim.steps.STEP_FUNCTIONS, without importing it
BACKEND_NAMES = ("onnxruntime", "litert", "coreml")  # edgediff.contract.BACKEND_NAMES
MAX_SIDE = 8192  # pixels: beyond this no device runs the model; a typo, not a request
MAX_STEPS = 1000  # a scheduler with 1000 training timesteps cannot take more
MAX_SEED = 2**63 - 1  # seeds are signed 64-bit in the apps (Kotlin Long, Swift Int64)
_MODULE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SCHEDULER = re.compile(r"^[A-Za-z_]\w*Scheduler$")


@dataclass
class TensorInput:
    """Input of a custom network (e.g. TAEF2's decoder takes a [1, 32, 64, 64] latent)."""

    name: str = "input"
    shape: list[int] = field(default_factory=list)
    dtype: str = "float32"


@dataclass
class LoraEntry:
    """A LoRA fused into the text encoder and UNet before slimming: `[[model.loras]] file = "x.safetensors"`."""

    file: str = ""
    strength: float = 1.0


@dataclass
class ModelSection:
    source: str = ""  # path or name under models/; "" = the embedded default model
    random_weights: bool = False
    module: str = ""  # custom network class "package.module:Class" (with weights)
    weights: str = ""
    inputs: list[TensorInput] = field(default_factory=list)  # custom networks only
    prediction_type: str = ""  # single-file checkpoints: "" = detect, else "epsilon" or "v_prediction"
    loras: list[LoraEntry] = field(default_factory=list)  # kohya (A1111 / ComfyUI) or diffusers / PEFT files
    controlnet: str = ""  # a diffusers ControlNetModel folder: adds the controlnet component (model/controlnet.py)


@dataclass
class PipelineSection:
    height: int = 0  # 0 = the model's native resolution
    width: int = 0
    sizes: list[str] = field(default_factory=list)  # more sizes, "WIDTHxHEIGHT" (edgediff/model/sizes.py)
    components: list[str] = field(default_factory=lambda: ["text_encoder", "unet", "vae_decoder"])
    guidance_scale: float = -1.0  # < 0 = the model's default (edgediff.json) or 7.5
    batched_cfg: bool = True  # UNet batch 2 (uncond + cond) when guidance is on
    num_inference_steps: int = 0  # 0 = the model's default or 25
    scheduler: str = ""  # diffusers scheduler class to bundle; "" = the model folder's own


@dataclass
class SlimStep:
    """One slimming step; the slim issues fill in kinds (prune, distill, quantize)."""

    kind: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlimSection:
    steps: list[SlimStep] = field(default_factory=list)


@dataclass
class BackendSection:
    name: str = "onnxruntime"
    precision: str = ""  # "" = the target's precision, else fp32
    target: str = ""  # a device file under targets/ (e.g. pixel-8): sets the backend, and the precision if unset
    options: dict[str, Any] = field(default_factory=dict)  # validated against the backend's Options dataclass


@dataclass
class VerifySection:
    samples: int = 3
    min_psnr_db: float = -1.0  # < 0 = default for the precision (edgediff.defaults.MIN_PSNR_DB)
    min_cosine: float = -1.0
    end_to_end: bool = True
    min_image_psnr_db: float = -1.0  # < 0 = edgediff.defaults.MIN_IMAGE_PSNR_DB
    prompt: str = "a large red circle on a blue background, top left"
    seed: int = 0
    min_guidance_ratio: float = 0.8  # lowered UNet's |eps(cond) - eps(uncond)| / float's (0 = no guidance check)
    accuracy_prompts: int = 0  # > 0: prompt accuracy on the judge's task (shapes) through the bundle, this many prompts
    min_prompt_accuracy: float = 0.0  # 0..1: fail below it (0 = report only)


@dataclass
class ProfileSection:
    enabled: bool = True
    runs: int = 5
    warmup: int = 1
    compare_pytorch: bool = True
    op_profile: bool = True


@dataclass
class Recipe:
    version: int = RECIPE_VERSION
    model: ModelSection = field(default_factory=ModelSection)
    pipeline: PipelineSection = field(default_factory=PipelineSection)
    slim: SlimSection = field(default_factory=SlimSection)
    backend: BackendSection = field(default_factory=BackendSection)
    verify: VerifySection = field(default_factory=VerifySection)
    profile: ProfileSection = field(default_factory=ProfileSection)


def build_section(cls: type, data: Any, where: str):
    """Recursively build dataclass `cls` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise RecipeError(f"[{where}] must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if cls is SlimStep:  # `[[slim.steps]] kind = "prune"  preset = "bk-small"`: a step's own keys are its options
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise RecipeError(f"{where}.options must be a table, got {options!r}")
        data = {"kind": data.get("kind", ""),
                "options": {**{k: v for k, v in data.items() if k not in names}, **options}}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecipeError(f"unknown key(s) {', '.join(unknown)} in [{where or 'recipe'}] "
                          f"(valid: {', '.join(sorted(names))})")
    values = {}
    for key, value in data.items():
        values[key] = _coerce(hints[key], value, f"{where}.{key}" if where else key)
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str):
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_section(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if hint is float:
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise RecipeError(f"{where} must be a finite number, got {value!r:.60}")
        return number
    if hint in (int, str, bool) and type(value) is not hint:
        raise RecipeError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def load_recipe(path: Path | None) -> Recipe:
    """Read, type-check and range-check a recipe file; every problem is a RecipeError naming the file and key."""
    if path is None:
        return Recipe()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} does not exist") from None
    except IsADirectoryError:
        raise RecipeError(f"recipe {path} is a folder; give a .toml file") from None
    except OSError as exc:
        raise RecipeError(f"recipe {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})") \
            from None
    except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
        raise RecipeError(f"recipe {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"recipe {path} nests tables or arrays too deeply to be a recipe") from None
    version = data.get("version", RECIPE_VERSION)
    if version != RECIPE_VERSION or type(version) is not int:
        raise RecipeError(f"recipe {path} has version {version!r}; this edgediff reads version {RECIPE_VERSION}")
    try:
        return check_recipe(build_section(Recipe, data, ""))
    except RecipeError as exc:
        raise RecipeError(f"recipe {path}: {exc}") from None


def check_recipe(recipe: Recipe) -> Recipe:
    """Ranges and names the types alone do not catch, checked before anything is loaded: sizes, steps, seeds,
    counts, component / backend / step names, and names of code (which only the user may give)."""
    p, v, m = recipe.pipeline, recipe.verify, recipe.model

    def need(ok: bool, key: str, expected: str, value: Any) -> None:
        if not ok:
            raise RecipeError(f"{key} must be {expected}, got {value!r}")

    for key, side in (("pipeline.height", p.height), ("pipeline.width", p.width)):
        need(side == 0 or (0 < side <= MAX_SIDE and side % 8 == 0), key,
             f"a positive multiple of 8 up to {MAX_SIDE} (or 0 for the model's native size)", side)
    if p.sizes:
        from edgediff.model.sizes import check_sizes

        check_sizes(p.sizes, MAX_SIDE)
    need(0 <= p.num_inference_steps <= MAX_STEPS, "pipeline.num_inference_steps",
         f"between 1 and {MAX_STEPS} (or 0 for the model's default)", p.num_inference_steps)
    need(p.guidance_scale <= 100, "pipeline.guidance_scale", "at most 100 (negative: the model's default)",
         p.guidance_scale)
    need(not p.scheduler or bool(_SCHEDULER.match(p.scheduler)), "pipeline.scheduler",
         "a diffusers scheduler class name such as EulerDiscreteScheduler (or empty for the model's own)",
         p.scheduler)
    need(bool(p.components), "pipeline.components", "a non-empty list", p.components)
    for name in p.components:
        need(name in COMPONENT_NAMES, "pipeline.components", f"a list of {', '.join(COMPONENT_NAMES)}", name)
    need(len(set(p.components)) == len(p.components), "pipeline.components", "a list without repeats",
         p.components)
    need(not m.module or bool(_MODULE.match(m.module)), "model.module", "'package.module:ClassName'", m.module)
    for i, tensor in enumerate(m.inputs):
        need(bool(tensor.name), f"model.inputs[{i}].name", "a non-empty string", tensor.name)
        need(bool(tensor.shape) and all(0 < d <= 1 << 20 for d in tensor.shape), f"model.inputs[{i}].shape",
             "a non-empty list of positive sizes", tensor.shape)
        need(tensor.dtype in TENSOR_DTYPES, f"model.inputs[{i}].dtype", f"one of {', '.join(TENSOR_DTYPES)}",
             tensor.dtype)
    for i, step in enumerate(recipe.slim.steps):
        need(step.kind in SLIM_KINDS, f"slim.steps[{i}].kind", f"one of {', '.join(SLIM_KINDS)}", step.kind)
    b = recipe.backend
    need(b.name in BACKEND_NAMES, "backend.name", f"one of {', '.join(BACKEND_NAMES)}", b.name)
    need(b.precision in ("", "fp32", "fp16", "int8"), "backend.precision", "fp32, fp16 or int8", b.precision)
    need(1 <= v.samples <= 1000, "verify.samples", "between 1 and 1000", v.samples)
    need(v.min_cosine <= 1, "verify.min_cosine", "at most 1 (negative: the precision's default)", v.min_cosine)
    need(0 <= v.seed <= MAX_SEED, "verify.seed", f"between 0 and {MAX_SEED}", v.seed)
    need(0 <= v.min_guidance_ratio <= 10, "verify.min_guidance_ratio", "between 0 and 10", v.min_guidance_ratio)
    need(0 <= v.accuracy_prompts <= 10_000, "verify.accuracy_prompts", "between 0 and 10000", v.accuracy_prompts)
    need(0 <= v.min_prompt_accuracy <= 1, "verify.min_prompt_accuracy", "a fraction between 0 and 1",
         v.min_prompt_accuracy)
    need(1 <= recipe.profile.runs <= 100_000, "profile.runs", "between 1 and 100000", recipe.profile.runs)
    need(0 <= recipe.profile.warmup <= 10_000, "profile.warmup", "between 0 and 10000", recipe.profile.warmup)
    return recipe


def set_field(recipe: Recipe, dotted: str, raw: str) -> None:
    """Apply a `--set section.key=value` override; the value is parsed as TOML (so 512, true, "x" work)."""
    section_name, _, key = dotted.partition(".")
    section = getattr(recipe, section_name, None)
    if section is None or isinstance(section, type) or not dataclasses.is_dataclass(section) or not key:
        raise RecipeError(f"--set {dotted}: expected SECTION.KEY with SECTION one of "
                          f"{', '.join(f.name for f in dataclasses.fields(Recipe) if f.name != 'version')}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        value = raw  # a bare word is a string
    key, _, subkey = key.partition(".")
    if subkey:  # a table field, e.g. backend.options.threads=2
        current = getattr(section, key, None)
        if not isinstance(current, dict) or "." in subkey:
            raise RecipeError(f"--set {dotted}: {section_name}.{key} is not a table of settings")
        value = current | {subkey: value}
    merged = dataclasses.asdict(section) | {key: value}  # type: ignore[call-overload,arg-type]
    setattr(recipe, section_name, build_section(type(section), merged, section_name))


def to_toml(recipe: Recipe) -> str:
    """Serialise a recipe back to TOML (tables for sections, arrays of tables for lists of dataclasses)."""
    lines = [f"version = {recipe.version}"]
    for f in dataclasses.fields(recipe):
        if f.name == "version":
            continue
        _emit_table(getattr(recipe, f.name), f.name, lines)
    return "\n".join(lines) + "\n"


def _emit_table(obj: Any, name: str, lines: list[str], array: bool = False) -> None:
    lines.append("")
    lines.append(f"[[{name}]]" if array else f"[{name}]")
    nested: list[tuple[str, Any]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            nested.extend((f"{name}.{f.name}", v) for v in value)
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    for sub_name, sub in nested:
        _emit_table(sub, sub_name, lines, array=True)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise RecipeError(f"cannot write {value!r} to TOML")
