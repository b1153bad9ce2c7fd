"""LoRAs fused into the text encoder and UNet before slimming and lowering, so every later stage (verify included)
sees one plain model with the LoRAs baked in.

Files come in two layouts: diffusers / PEFT (`unet.<module>.lora_A.weight`, `text_encoder.…`) and kohya's, which
A1111 and ComfyUI use (`lora_unet_<module_with_underscores>.lora_down.weight`, `.lora_up.weight`, `.alpha`,
`lora_te_…` for the text encoder). diffusers converts both and PEFT fuses them (`set_adapters` with the strengths,
then `fuse_lora`), exactly as a diffusers pipeline would; edgediff adds what that path leaves silent: every layer
of the file must exist in this model with matching shapes (a LoRA for another family is refused, naming the
layer), nothing may be dropped on the way, and the file is read with the same header checks as a checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgediff.contract import sha256_file
from edgediff.errors import ModelLoadError, RecipeError, UnsupportedError
from edgediff.model.tensor_file import open_tensor_file

KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
# the "down" (A) matrix of one layer, in every layout diffusers reads: kohya, PEFT, old diffusers
DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", "lora.down.weight", "lora_linear_layer.down.weight")
# LyCORIS and other adapters that are not a plain low-rank pair: refused by name, never half-applied
UNSUPPORTED = {"hada_": "LoHa", "lokr_": "LoKr", "dora_scale": "DoRA", "lora_magnitude_vector": "DoRA",
               "lora_mid": "LoCon with CP decomposition"}
UNSUPPORTED_ENDINGS = {".diff": "full-weight difference", ".diff_b": "full-weight difference"}
UNET_ROOTS = ("down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "conv_out.", "time_embedding.")
PEFT_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])\.weight$")


@dataclass
class Lora:
    """One LoRA file, converted to diffusers names and checked against the model."""

    path: Path
    strength: float
    layout: str  # "kohya" or "diffusers"
    state: dict[str, Any]  # diffusers names, `unet.` / `text_encoder.` prefixes
    alphas: dict[str, float] | None
    metadata: dict[str, Any] | None
    layers: dict[str, list[str]]  # component -> module paths it changes
    sha256: str

    def record(self) -> dict[str, Any]:
        """The manifest's entry in `source.loras`."""
        return {"file": self.path.name, "sha256": self.sha256, "strength": self.strength, "layout": self.layout,
                "layers": {part: len(paths) for part, paths in self.layers.items()}}


def parse_lora_argument(text: str) -> tuple[str, float]:
    """`--lora FILE[:STRENGTH]`: the strength is whatever follows the last colon, if it is a number."""
    file, sep, tail = text.rpartition(":")
    if sep and file:
        try:
            return file, check_strength(float(tail), text)
        except ValueError:
            pass
    return text, 1.0


def check_strength(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise RecipeError(f"LoRA strength of {where} must be a finite number, got {value}")
    return float(value)


def resolve_lora_file(file: str) -> Path:
    path = Path(file).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"LoRA file {file} does not exist (give its path in --lora or [[model.loras]] file)")
    return path.resolve()


def apply_loras(model, entries: list[tuple[str, float]]) -> list[Lora]:
    """Fuse the LoRAs (file, strength) into `model`'s text encoder and UNet, in place; records them in
    `model.details["loras"]`. Typed errors name the file and the layer that does not fit."""
    if not entries:
        return []
    if model.unet is None:
        raise UnsupportedError(f"LoRAs change a UNet and its text encoder; {model.source} is a {model.kind} model")
    loras = [read_lora(resolve_lora_file(file), strength, model) for file, strength in entries]
    _fuse(model, loras)
    model.details["loras"] = [lora.record() for lora in loras]
    return loras


def read_lora(path: Path, strength: float, model) -> Lora:
    """Read, convert to diffusers names and check one LoRA file against the model (nothing is changed yet)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    tf = open_tensor_file(path)
    raw = _normalise_prefixes(tf.load_all(), path)
    layout = "kohya" if all(k.startswith(KOHYA_PREFIXES) for k in raw) else "diffusers"
    expected = sum(k.endswith(DOWN_SUFFIXES) for k in raw)
    try:
        with _quiet():
            state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(dict(raw),
                                                                           unet_config=model.unet.config)
    except (ValueError, KeyError, IndexError) as exc:
        raise UnsupportedError(f"LoRA {path.name}: diffusers cannot read its layout ({str(exc).strip()[:300]})") from None
    metadata = _adapter_metadata(tf.metadata, path) if layout == "diffusers" else None
    layers = _check_layers(path, state, model)
    found = sum(len(v) for v in layers.values())
    if found != expected:
        raise ModelLoadError(f"LoRA {path.name}: {expected} layers in the file but {found} after conversion to "
                             "diffusers names; its layout is not one edgediff can apply faithfully")
    return Lora(path, strength, layout, state, alphas or None, metadata, layers, sha256_file(path))


def _normalise_prefixes(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Refuse adapter types that are not LoRA, and name bare PEFT UNet keys the way diffusers expects."""
    for marker, kind in list(UNSUPPORTED.items()) + list(UNSUPPORTED_ENDINGS.items()):
        hit = next((k for k in raw if (k.endswith(marker) if marker in UNSUPPORTED_ENDINGS else marker in k)), None)
        if hit:
            raise UnsupportedError(f"LoRA {path.name} is a {kind} adapter ({hit}); edgediff fuses LoRA only "
                                   "(lora_down / lora_up or lora_A / lora_B)")
    if any(k.startswith(("text_encoder_2.", "lora_te2_")) for k in raw):
        raise UnsupportedError(f"LoRA {path.name} changes a second text encoder: it is an SDXL LoRA, and edgediff "
                               "fuses SD 1.x / 2.x LoRAs only so far; fuse it into the SDXL checkpoint with "
                               "another tool first")
    out = {}
    for key, value in raw.items():
        key = key.removeprefix("base_model.model.")  # PeftModel.save_pretrained of a bare UNet
        if key.startswith(UNET_ROOTS):
            key = "unet." + key
        out[key] = value
    if not out:
        raise ModelLoadError(f"LoRA {path.name} holds no tensors")
    return out


def _adapter_metadata(metadata: dict[str, str], path: Path) -> dict[str, Any] | None:
    """diffusers stores each component's LoraConfig (rank, alpha) as JSON in the safetensors metadata."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelLoadError(f"LoRA {path.name}: its lora_adapter_metadata is not valid JSON") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"LoRA {path.name}: its lora_adapter_metadata is not a JSON object")
    return value


def _check_layers(path: Path, state: dict[str, Any], model) -> dict[str, list[str]]:
    """Every LoRA layer, under the module names PEFT will use, must be a Linear / Conv2d of this model with
    matching sizes. Returns component -> module paths."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_diffusers,
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    layers: dict[str, list[str]] = {}
    for part in ("unet", "text_encoder"):
        sub = {k.removeprefix(f"{part}."): v for k, v in state.items() if k.startswith(f"{part}.")}
        if not sub:
            continue
        module = getattr(model, part)
        if module is None:
            raise UnsupportedError(f"LoRA {path.name} changes the {part}, which {model.source} does not have")
        try:
            if part == "unet" and not any("lora_A" in k for k in sub):
                sub = convert_unet_state_dict_to_peft(sub)
            elif part == "text_encoder":
                sub = convert_state_dict_to_peft(convert_state_dict_to_diffusers(sub))
                if not hasattr(module, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
                    sub = {k.removeprefix("text_model."): v for k, v in sub.items()}
        except ValueError as exc:
            raise UnsupportedError(f"LoRA {path.name}: unknown {part} key layout ({exc})") from None
        layers[part] = _check_part(path, part, sub, module)
    stray = sorted(k for k in state if not k.startswith(("unet.", "text_encoder.")))
    if stray:
        raise UnsupportedError(f"LoRA {path.name} has tensors for no known component (first: {stray[0]}); expected "
                               "unet.* / text_encoder.* (diffusers) or lora_unet_* / lora_te_* (kohya)")
    if not layers:
        raise ModelLoadError(f"LoRA {path.name} holds no LoRA layer")
    return layers


def _check_part(path: Path, part: str, sub: dict[str, Any], root) -> list[str]:
    import torch

    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in sub.items():
        match = PEFT_KEY.match(key)
        if not match:
            raise UnsupportedError(f"LoRA {path.name}: tensor {part}.{key} is no lora_A / lora_B weight")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor
    for name, pair in pairs.items():
        where = f"LoRA {path.name} does not fit this model at layer {part}.{name}"
        if set(pair) != {"A", "B"}:
            raise ModelLoadError(f"{where}: it has lora_{'A' if 'A' in pair else 'B'} but not its partner")
        try:
            layer = root.get_submodule(name)
        except AttributeError:
            raise ModelLoadError(f"{where}: the model has no such layer (a LoRA for another model family?)") from None
        a, b = pair["A"], pair["B"]
        if isinstance(layer, torch.nn.Linear):
            fits = (a.dim() == 2 and b.dim() == 2 and a.shape[1] == layer.in_features
                    and b.shape[0] == layer.out_features and a.shape[0] == b.shape[1])
            have = f"{layer.in_features} -> {layer.out_features} features"
        elif isinstance(layer, torch.nn.Conv2d):
            fits = (a.dim() == 4 and b.dim() == 4 and a.shape[1] == layer.in_channels
                    and tuple(a.shape[2:]) == tuple(layer.kernel_size) and b.shape[0] == layer.out_channels
                    and tuple(b.shape[2:]) == (1, 1) and a.shape[0] == b.shape[1])
            have = f"{layer.in_channels} -> {layer.out_channels} channels, kernel {tuple(layer.kernel_size)}"
        else:
            raise UnsupportedError(f"{where}: it is a {type(layer).__name__}; LoRA applies to Linear and Conv2d")
        if not fits:
            raise ModelLoadError(f"{where}: the layer maps {have}, the LoRA has down {tuple(a.shape)} and up "
                                 f"{tuple(b.shape)} (a LoRA for another model family?)")
    return sorted(pairs)


def _fuse(model, loras: list[Lora]) -> None:
    """Load every LoRA as a named PEFT adapter, weight them with their strengths, fuse, remove the adapters."""
    host = _host(model)
    names = [f"edgediff_lora_{i}" for i in range(len(loras))]
    with _quiet():
        for name, lora in zip(names, loras):
            try:
                if "unet" in lora.layers:
                    host.load_lora_into_unet(lora.state, network_alphas=lora.alphas, unet=model.unet,
                                             adapter_name=name, metadata=_part(lora.metadata, "unet"))
                if "text_encoder" in lora.layers:
                    host.load_lora_into_text_encoder(lora.state, network_alphas=lora.alphas,
                                                     text_encoder=model.text_encoder, adapter_name=name,
                                                     metadata=_part(lora.metadata, "text_encoder"))
            except (ValueError, RuntimeError, KeyError) as exc:
                raise ModelLoadError(f"LoRA {lora.path.name} could not be loaded: "
                                     f"{str(exc).strip().splitlines()[-1][:300]}") from None
            for part, paths in lora.layers.items():
                bound = _bound(getattr(model, part), name)
                if bound != set(paths):
                    lost = sorted(set(paths) - bound) or sorted(bound - set(paths))
                    raise ModelLoadError(f"LoRA {lora.path.name}: {len(bound)} of {len(paths)} {part} layers took "
                                         f"the adapter (first difference: {lost[0]})")
        host.set_adapters(names, [lora.strength for lora in loras])
        parts = [part for part in ("unet", "text_encoder") if any(part in lora.layers for lora in loras)]
        host.fuse_lora(components=parts, lora_scale=1.0, adapter_names=names)
        host.unload_lora_weights()
    for part in ("unet", "text_encoder"):
        module = getattr(model, part)
        if module is not None:
            module.eval().requires_grad_(False)


def _part(metadata: dict[str, Any] | None, part: str) -> dict[str, Any] | None:
    return metadata if metadata and any(k.startswith(f"{part}.") for k in metadata) else None


def _bound(module, adapter: str) -> set[str]:
    """Module paths where PEFT attached `adapter`."""
    return {name.removesuffix(".base_layer") for name, layer in module.named_modules()
            if adapter in getattr(layer, "lora_A", {})}


def _host(model):
    """The smallest object diffusers' LoRA mixin works on: our UNet and text encoder, no pipeline around them."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    class Host(StableDiffusionLoraLoaderMixin):
        hf_device_map = None  # asked by diffusers' offloading checks

        def __init__(self, unet, text_encoder):
            self.unet, self.text_encoder = unet, text_encoder

        @property
        def components(self) -> dict[str, Any]:
            return {"unet": self.unet, "text_encoder": self.text_encoder}

    return Host(model.unet, model.text_encoder)


@contextmanager
def _quiet() -> Iterator[None]:
    """diffusers / transformers / PEFT narrate adapter loading (load reports, "multiple adapters" warnings); the
    checks above say what matters, so their chatter is muted here."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "peft")]
    levels = [log.level for log in loggers]
    bars = transformers_logging.is_progress_bar_enabled()
    try:
        for log in loggers:
            log.setLevel(logging.CRITICAL)
        transformers_logging.disable_progress_bar()  # "Loading weights" bars for each text encoder adapter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()
