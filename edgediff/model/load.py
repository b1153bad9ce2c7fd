"""Load a model from disk without ever running code that ships with it.

Supported sources:
- a diffusers pipeline folder (`model_index.json` + text_encoder / tokenizer / unet / vae / scheduler),
- a bare diffusers model folder (`config.json` of a UNet2DConditionModel, AutoencoderKL or AutoencoderTiny),
- a single-file checkpoint (`.safetensors` / `.ckpt` of SD 1.x / 2.x, see `single_file.py`),
- a custom network: a Python class the *user* names (`package.module:Class`) plus a weights file.

Classes are taken from an allow-list (`MODEL_CLASSES`), configs are read as JSON, and weights come from
safetensors first, `.bin/.pth/.ckpt` only through `torch.load(weights_only=True)`. A folder with configs but
no weights is refused unless `random_weights=True`, which builds the real architecture with seeded random
weights (how we test full-size models on a machine that cannot download any).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError, UnsupportedError
from edgediff.model.folder import PIPELINE_PARTS, check_model_folder, find_weights, read_json_object
from edgediff.model.loaded import RANDOM_WEIGHTS_SEED, LoadedModel

# Folder names of the default model and known recipes live under <repo>/models.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_MODEL = "shapes-sd"



def _diffusers_class(name: str):
    import diffusers

    return getattr(diffusers, name)


def _transformers_class(name: str):
    import transformers

    return getattr(transformers, name)


# class name -> (library loader, config class name or None for diffusers' from_config)
MODEL_CLASSES: dict[str, tuple[Any, str | None]] = {
    "UNet2DConditionModel": (_diffusers_class, None),
    "AutoencoderKL": (_diffusers_class, None),
    "AutoencoderTiny": (_diffusers_class, None),
    "CLIPTextModel": (_transformers_class, "CLIPTextConfig"),
    "CLIPTextModelWithProjection": (_transformers_class, "CLIPTextConfig"),
}


def resolve_model_path(model: str | Path | None) -> Path:
    """A path, or the name of a folder under models/; None means the embedded default model."""
    if model is None or str(model) == "":
        model = DEFAULT_MODEL
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    named = MODELS_DIR / str(model)
    if named.exists():
        return named
    if path.parts[:1] == ("models",) and (MODELS_DIR / Path(*path.parts[1:])).exists():
        return MODELS_DIR / Path(*path.parts[1:])  # "models/shapes-sd" as the README writes it, from any folder
    known = sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()) if MODELS_DIR.exists() else []
    raise ModelLoadError(
        f"model '{model}' not found: it is neither an existing path nor a folder under models/ "
        f"(known names: {', '.join(known) or 'none'})"
    )


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path)


def load_state_dict(path: Path) -> dict[str, Any]:
    """Read one weights file safely: safetensors, or torch.load(weights_only=True) for pickles."""
    if not path.exists():
        raise ModelLoadError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError for truncated/corrupt files
            raise ModelLoadError(
                f"{path} is not a readable safetensors file ({exc}); it may be truncated: re-copy it"
            ) from None
    if path.suffix in (".bin", ".pth", ".pt", ".ckpt"):
        import torch

        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"{path} could not be loaded with torch.load(weights_only=True) ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}); edgediff never unpickles arbitrary objects: "
                "convert it to safetensors"
            ) from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path} does not hold a state dict (got {type(state).__name__})")
        return state
    raise ModelLoadError(f"{path}: unknown weights format '{path.suffix}' (use .safetensors, .bin, .pth or .ckpt)")


def _build_module(folder: Path, class_name: str, random_weights: bool):
    """Instantiate an allow-listed class from its config and load its weights (or seeded random ones)."""
    if class_name not in MODEL_CLASSES:
        raise UnsupportedError(
            f"{folder.name}: class '{class_name}' is not supported (supported: {', '.join(MODEL_CLASSES)}); "
            "edgediff never imports code from a model folder"
        )
    config = _read_json(folder / "config.json")
    loader, config_class = MODEL_CLASSES[class_name]
    cls = loader(class_name)
    weights = find_weights(folder)
    if not weights and not random_weights:
        raise ModelLoadError(
            f"{folder} has a config but no weights (looked for *.safetensors / *.bin); "
            "pass --random-weights to build the architecture with random weights"
        )

    def build():
        return cls.from_config(config) if config_class is None else cls(loader(config_class).from_dict(config))

    return build_with_weights(folder, class_name, build, [] if random_weights else weights, RANDOM_WEIGHTS_SEED)


def build_with_weights(folder: Path, class_name: str, build, weights: list[Path], seed: int):
    """Build a module from its (checked) config with a seeded generator, then load `weights` (none: keep the
    seeded random ones) strictly through the safe readers: every mismatch is a ModelLoadError naming the folder."""
    import torch

    torch.manual_seed(seed)
    try:
        module = build()
    except (TypeError, ValueError, KeyError, AttributeError, AssertionError, IndexError, ZeroDivisionError) as exc:
        raise ModelLoadError(f"{folder / 'config.json'}: {class_name} cannot be built from it "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if weights:
        state: dict[str, Any] = {}
        for shard in weights:
            state.update(load_state_dict(shard))
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        if not hasattr(module, "text_model"):  # CLIPTextModel saved by transformers < 5.6, loaded by a flattened one
            state = {k.removeprefix("text_model."): v for k, v in state.items()}
        try:
            result = module.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # size mismatches: the weights are another model's
            raise ModelLoadError(f"{folder}: weights do not fit config.json: "
                                 f"{' '.join(str(exc).split())[:300]}") from None
        missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing or result.unexpected_keys:
            raise ModelLoadError(
                f"{folder}: weights do not match the config ({len(missing)} missing, "
                f"{len(result.unexpected_keys)} unexpected; first: {(missing + result.unexpected_keys)[0]})"
            )
    return module.float().eval().requires_grad_(False)


def load_pipeline_folder(path: Path, random_weights: bool = False) -> LoadedModel:
    index = _read_json(path / "model_index.json")
    model = LoadedModel(source=str(path), kind="pipeline", random_weights=random_weights)
    for part in PIPELINE_PARTS:
        entry = index.get(part)
        if not entry or entry[1] is None or not (path / part).is_dir():
            continue
        setattr(model, part, _build_module(path / part, entry[1], random_weights))
    if model.unet is None:
        raise ModelLoadError(f"{path}: model_index.json names no unet folder; is this a diffusion pipeline?")
    if (path / "tokenizer" / "vocab.json").exists():
        model.tokenizer_dir = path / "tokenizer"
    if (path / "tokenizer_2" / "vocab.json").exists():
        model.tokenizer_2_dir = path / "tokenizer_2"
    model.pipeline_config = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
    if (path / "scheduler" / "scheduler_config.json").exists():
        config = _read_json(path / "scheduler" / "scheduler_config.json")
        model.scheduler_class = config.get("_class_name") or (index.get("scheduler") or [None, None])[1]
        model.scheduler_config = config
    if (path / "edgediff.json").exists():
        model.defaults = _read_json(path / "edgediff.json")
    return model


def load_model_folder(path: Path, random_weights: bool = False) -> LoadedModel:
    config = _read_json(path / "config.json")
    class_name = config.get("_class_name", "")
    module = _build_module(path, class_name, random_weights)
    if class_name == "UNet2DConditionModel":
        return LoadedModel(source=str(path), kind="unet", unet=module, random_weights=random_weights)
    return LoadedModel(source=str(path), kind="vae", vae=module, random_weights=random_weights)


def load_custom(module_path: str, weights: Path | None, random_weights: bool = False,
                kwargs: dict[str, Any] | None = None) -> LoadedModel:
    """A user-named class (e.g. `edgediff.nets.taef2:TAEF2Decoder`) plus a weights file."""
    if weights is None and not random_weights:
        raise ModelLoadError(f"custom network {module_path} needs --weights FILE "
                             "(or --random-weights to test the architecture with random weights)")
    if ":" not in module_path:
        raise ModelLoadError(f"--module must look like 'package.module:ClassName', got '{module_path}'")
    mod_name, class_name = module_path.split(":", 1)
    try:
        cls = getattr(importlib.import_module(mod_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"cannot import {module_path}: {exc}") from None
    import torch

    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    module = cls(**(kwargs or {}))
    if weights is not None and not random_weights:
        state = load_state_dict(Path(weights))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"{weights} does not fit {module_path}: {str(exc).splitlines()[0]}") from None
    return LoadedModel(
        source=module_path, kind="custom", custom=module.float().eval().requires_grad_(False),
        random_weights=random_weights,
    )


def load_model(model: str | Path | None, random_weights: bool = False) -> LoadedModel:
    """Check the folder at the door (edgediff.model.folder), then build what it holds; a single checkpoint file
    goes to its own loader (edgediff/model/single_file.py)."""
    path = resolve_model_path(model)
    if path.is_file():  # a CompVis / A1111 / ComfyUI checkpoint
        from edgediff.model.single_file import load_single_file

        return load_single_file(path, random_weights)
    facts = check_model_folder(path)
    if facts.kind == "pipeline":
        return load_pipeline_folder(facts.root, random_weights)
    return load_model_folder(facts.root, random_weights)
