"""Recipes: one versioned TOML file that says what to convert and how, as typed dataclasses.

Every setting a run uses is traceable to the recipe or to a CLI flag that overrides it; `--dry-run` prints the
resolved recipe (valid TOML, so it can be saved and reused). Unknown keys are errors listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from edgediff.errors import RecipeError

RECIPE_VERSION = 1


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


@dataclass
class PipelineSection:
    height: int = 0  # 0 = the model's native resolution
    width: int = 0
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
        data = {"kind": data.get("kind", ""),
                "options": {**{k: v for k, v in data.items() if k not in names}, **data.get("options", {})}}
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
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is not hint:
        raise RecipeError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def load_recipe(path: Path | None) -> Recipe:
    if path is None:
        return Recipe()
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {path} is not valid TOML: {exc}") from None
    version = data.get("version", RECIPE_VERSION)
    if version != RECIPE_VERSION:
        raise RecipeError(f"recipe {path} has version {version}; this edgediff reads version {RECIPE_VERSION}")
    return build_section(Recipe, data, "")


def set_field(recipe: Recipe, dotted: str, raw: str) -> None:
    """Apply a `--set section.key=value` override; the value is parsed as TOML (so 512, true, "x" work)."""
    section_name, _, key = dotted.partition(".")
    section = getattr(recipe, section_name, None)
    if section is None or isinstance(section, type) or not dataclasses.is_dataclass(section) or not key:
        raise RecipeError(f"--set {dotted}: expected SECTION.KEY with SECTION one of "
                          f"{', '.join(f.name for f in dataclasses.fields(Recipe) if f.name != 'version')}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
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
