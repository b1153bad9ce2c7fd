"""Single-file checkpoints (`model.safetensors` / `.ckpt` as CompVis, A1111 and ComfyUI save them), fully offline.
SDXL base and refiner files are detected here and mapped by single_file_sdxl.py.

The family is read from tensor names and shapes: SD 1.x carries a Hugging Face CLIP text encoder
(`cond_stage_model.transformer.*`) and convolutional attention projections, SD 2.x an OpenCLIP one
(`cond_stage_model.model.*`) and linear projections; a 9-channel UNet input is an inpainting variant. Every
width, depth and block type is measured from the shapes; what shapes cannot tell (activation, norm groups, head
sizes, scheduler) comes from the real configs of SD 1.5 and SD 2.1 shipped in `configs/`, so nothing is fetched.
Keys are mapped onto diffusers modules with diffusers' own converters (pure functions given a config), and every
module is loaded strictly: a tensor too many or too few is an error, never a silently random weight.

SD 2.x ships as ε-prediction (512 px) and v-prediction (768 px) with identical tensors. The choice, in order:
`model.prediction_type` in the recipe, a `v_pred` marker tensor (ComfyUI), an A1111 sidecar `<name>.yaml` with
`parameterization: "v"`, then ComfyUI's heuristic (the spread of one norm bias); the manifest records which one
decided.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError, RecipeError, UnsupportedError
from edgediff.model import single_file_sdxl as sdxl_file
from edgediff.model.tensor_file import SUFFIXES, TensorFile, open_tensor_file

CONFIGS = Path(__file__).with_name("configs")
UNET = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
CLIP = "cond_stage_model.transformer."  # SD 1.x: CLIP ViT-L/14 in Hugging Face layout
OPEN_CLIP = "cond_stage_model.model."  # SD 2.x: OpenCLIP ViT-H/14 in its own layout
PREDICTION_TYPES = ("epsilon", "v_prediction")
HEAD_CHANNELS = 64  # SD 2.x attention heads and every CLIP text encoder use 64 channels per head
SD1_HEADS = 8  # SD 1.x uses 8 heads at every width
V_PREDICTION_STD = 0.09  # ComfyUI's threshold on the spread of output_blocks.11's first norm bias
V_PROBE = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
FAMILIES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL base", "sdxl-refiner": "SDXL refiner"}


def is_single_file(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in SUFFIXES


@dataclass
class Detection:
    """What a checkpoint is, and the diffusers configs that rebuild it."""

    family: str  # "sd1", "sd2", "sdxl" or "sdxl-refiner"
    variant: str  # "" (text to image), "inpainting", or "<n>-channel input"
    prediction_type: str
    prediction_from: str
    configs: dict[str, dict[str, Any]]  # unet / vae / text_encoder (the parts present) / scheduler
    keys: dict[str, list[str]]  # the file's tensor names per part
    ignored: int = 0  # tensors outside the parts (EMA copies, training buffers)
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        extra = [self.variant] if self.variant else []
        if self.family == "sd2" and not self.variant:
            extra.append("v-prediction" if self.prediction_type == "v_prediction" else "ε-prediction")
        return FAMILIES[self.family] + (f" ({', '.join(extra)})" if extra else "")

    def record(self) -> dict[str, Any]:
        """The manifest's `source.single_file`."""
        return {"family": self.family, "title": self.title, "variant": self.variant,
                "prediction_type": self.prediction_type, "prediction_from": self.prediction_from,
                "components": sorted(self.keys), "ignored_tensors": self.ignored, "notes": self.notes}


# ---- detection -------------------------------------------------------------------------------------------------


def detect(tf: TensorFile, prediction_type: str = "") -> Detection:
    """Family, variant and configs of a checkpoint from its tensor names and shapes (plus one tensor for the
    SD 2.x v-prediction heuristic). Raises with what was recognised and what is missing."""
    if prediction_type and prediction_type not in PREDICTION_TYPES:
        raise RecipeError(f"model.prediction_type '{prediction_type}' is unknown (valid: {', '.join(PREDICTION_TYPES)}"
                          ", or \"\" to detect)")
    shapes = tf.shapes
    _refuse_other_formats(tf)
    if sdxl_file.is_sdxl_file(shapes):
        return _detect_sdxl(tf, prediction_type)
    keys = _split_parts(shapes)
    if "unet" not in keys:
        raise _no_family(tf, keys)
    unet = _strip(shapes, UNET)
    text = "clip" if "text_encoder" in keys and keys["text_encoder"][0].startswith(CLIP) else (
        "open_clip" if "text_encoder" in keys else "")
    linear = _projection_is_linear(unet)
    family = {"clip": "sd1", "open_clip": "sd2"}.get(text) or ("sd2" if linear else "sd1")
    if linear is not None and linear != (family == "sd2"):
        raise ModelLoadError(
            f"{tf.path.name}: the text encoder is {'CLIP (SD 1.x)' if text == 'clip' else 'OpenCLIP (SD 2.x)'} but "
            f"the UNet's attention projections are {'linear (SD 2.x)' if linear else 'convolutions (SD 1.x)'}; "
            "this mix is no family edgediff knows")
    unet_cfg = _unet_config(unet, family, tf.path.name)
    in_channels = unet_cfg["in_channels"]
    variant = "" if in_channels == 4 else "inpainting" if in_channels == 9 else f"{in_channels}-channel input"
    prediction, reason = _prediction(tf, family, variant, prediction_type)
    native = 768 if family == "sd2" and prediction == "v_prediction" and not variant else 512
    unet_cfg["sample_size"] = native // 8
    configs = {"unet": unet_cfg,
               "scheduler": _family_config(family, "scheduler") | {"prediction_type": prediction}}
    if "vae" in keys:
        configs["vae"] = _vae_config(_strip(shapes, _vae_prefix(keys["vae"])), family)
    if "text_encoder" in keys:
        configs["text_encoder"] = _text_config(shapes, text, family)
    ignored = len(shapes) - sum(len(v) for v in keys.values())
    notes = [] if "vae" in keys and "text_encoder" in keys else [
        f"the file has no {' and no '.join(p for p in ('vae', 'text_encoder') if p not in keys)}"]
    return Detection(family, variant, prediction, reason, configs, keys, ignored, notes)


def _detect_sdxl(tf: TensorFile, prediction_type: str) -> Detection:
    """SDXL base / refiner (single_file_sdxl.py): both text encoders, the UNet with label_emb, the VAE."""
    keys = sdxl_file.split_parts(tf.shapes)
    if "unet" not in keys:
        raise _no_family(tf, keys)
    fam = sdxl_file.family(keys)
    configs: dict[str, dict[str, Any]] = {"text_encoder_2": sdxl_file.big_g_config(tf.shapes)}
    if "text_encoder" in keys:
        configs["text_encoder"] = sdxl_file.clip_l_config(tf.shapes)
    measured = _unet_config(_strip(tf.shapes, UNET), "sd2", tf.path.name)  # widths, levels, linear projections
    configs["unet"] = sdxl_file.unet_config(measured, _strip(tf.shapes, UNET), fam,
                                            configs["text_encoder_2"]["projection_dim"], f"{tf.path.name} (UNet)")
    prediction = prediction_type or "epsilon"
    reason = "recipe (model.prediction_type)" if prediction_type else f"{FAMILIES[fam]} default"
    configs["scheduler"] = sdxl_file.read_config("scheduler.json") | {"prediction_type": prediction}
    if "vae" in keys:
        configs["vae"] = _vae_config(_strip(tf.shapes, "first_stage_model."), "sdxl")
    ignored = len(tf.shapes) - sum(len(v) for v in keys.values())
    notes = [] if "vae" in keys else ["the file has no vae"]
    return Detection(fam, "", prediction, reason, configs, keys, ignored, notes)


def _split_parts(shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {}
    for key in shapes:
        if key.startswith(UNET):
            parts.setdefault("unet", []).append(key)
        elif key.startswith(VAE_PREFIXES):
            parts.setdefault("vae", []).append(key)
        elif key.startswith((CLIP, OPEN_CLIP)) and not key.endswith("position_ids"):
            parts.setdefault("text_encoder", []).append(key)
    if "text_encoder" in parts and len({k.startswith(CLIP) for k in parts["text_encoder"]}) > 1:
        raise ModelLoadError("the checkpoint holds both a CLIP (SD 1.x) and an OpenCLIP (SD 2.x) text encoder; "
                             "it is no single family")
    return parts


def _refuse_other_formats(tf: TensorFile) -> None:
    keys = list(tf.shapes)
    name = tf.path.name
    if keys and all(k.startswith(("lora_", "lycoris_")) or ".lora_" in k or ".alpha" in k for k in keys):
        raise ModelLoadError(f"{name} is a LoRA, not a model: pass it with --lora {name}[:STRENGTH] next to its "
                             "base model")


def _no_family(tf: TensorFile, keys: dict[str, list[str]]) -> ModelLoadError:
    found = [f"{part} ({len(names)} tensors under {names[0].split('.')[0]}.*)" for part, names in keys.items()]
    probes = {"unet": UNET + "input_blocks.0.0.weight", "vae": "first_stage_model.decoder.conv_in.weight",
              "text_encoder": f"{CLIP}text_model.* or {OPEN_CLIP}*"}
    missing = [f"{part} ({probe})" for part, probe in probes.items() if part not in keys]
    prefixes = sorted({k.split(".")[0] for k in tf.shapes})
    hint = ""
    if "conv_in.weight" in tf.shapes or any(k.startswith("down_blocks.") for k in tf.shapes):
        hint = ("; its names are diffusers' own: put it in a model folder with its config.json "
                "(e.g. unet/diffusion_pytorch_model.safetensors) instead")
    return ModelLoadError(
        f"{tf.path.name} matches no supported family ({', '.join(FAMILIES.values())} and their inpainting "
        f"variants): recognised {'; '.join(found) or 'nothing'}; missing {'; '.join(missing)}; the file's top-level "
        f"names are {', '.join(prefixes[:8]) or 'none'}{' …' if len(prefixes) > 8 else ''}{hint}")


def _strip(shapes: dict[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _indices(shapes: dict[str, Any], prefix: str) -> list[int]:
    """Distinct integers right after `prefix` (`input_blocks.` -> the input block numbers)."""
    found = set()
    for key in shapes:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _need(shapes: dict[str, Any], where: str, *names: str) -> None:
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ModelLoadError(f"{where}: the checkpoint lacks {', '.join(missing)}; it is incomplete or no SD model")


def _projection_is_linear(unet: dict[str, tuple[int, ...]]) -> bool | None:
    proj = next((shape for key, shape in unet.items() if key.endswith(".proj_in.weight")), None)
    return None if proj is None else len(proj) == 2


def _family_config(family: str, part: str) -> dict[str, Any]:
    return json.loads((CONFIGS / family / f"{part}.json").read_text())


def _unet_config(s: dict[str, tuple[int, ...]], family: str, name: str) -> dict[str, Any]:
    where = f"{name} (UNet)"
    _need(s, where, "input_blocks.0.0.weight", "out.2.weight", "time_embed.0.weight")
    n_in, n_out = len(_indices(s, "input_blocks.")), len(_indices(s, "output_blocks."))
    downs = [i for i in range(n_in) if f"input_blocks.{i}.0.op.weight" in s]
    layers = downs[0] - 1 if downs else n_in - 1
    levels = len(downs) + 1
    if layers < 1 or n_in != 1 + levels * layers + len(downs) or n_out != levels * (layers + 1):
        raise ModelLoadError(f"{where}: {n_in} input and {n_out} output blocks fit no UNet layout of "
                             "levels × layers_per_block")
    firsts = [1 + level * (layers + 1) for level in range(levels)]
    _need(s, where, *(f"input_blocks.{i}.0.out_layers.3.weight" for i in firsts))
    channels = [s[f"input_blocks.{i}.0.out_layers.3.weight"][0] for i in firsts]
    down_attn = [f"input_blocks.{i}.1.proj_in.weight" in s for i in firsts]
    up_attn = [f"output_blocks.{b * (layers + 1)}.1.proj_in.weight" in s for b in range(levels)]
    depth = [len(_indices(s, f"input_blocks.{i}.1.transformer_blocks.")) for i, a in zip(firsts, down_attn) if a]
    mid = _indices(s, "middle_block.")
    if mid and "middle_block.1.proj_in.weight" not in s:
        raise UnsupportedError(f"{where}: a middle block without attention is no SD 1.x / 2.x UNet")
    cross = next((shape[1] for key, shape in s.items() if key.endswith(".attn2.to_k.weight")), None)
    if cross is None:
        raise ModelLoadError(f"{where}: no cross-attention layer (attn2.to_k); not a text-conditioned UNet")
    cfg = _family_config(family, "unet")
    if family == "sd1":
        heads: Any = SD1_HEADS
    else:
        odd = [c for c, a in zip(channels, down_attn) if a and c % HEAD_CHANNELS]
        if odd:
            raise ModelLoadError(f"{where}: SD 2.x attention uses {HEAD_CHANNELS}-channel heads, but blocks have "
                                 f"{odd} channels")
        heads = [max(c // HEAD_CHANNELS, 1) for c in channels]
    cfg.update(
        in_channels=s["input_blocks.0.0.weight"][1], out_channels=s["out.2.weight"][0],
        block_out_channels=channels, layers_per_block=layers, cross_attention_dim=cross, attention_head_dim=heads,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in down_attn],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in up_attn],
        use_linear_projection=family == "sd2",
    )
    if not mid:
        cfg["mid_block_type"] = None  # BK-SDM-style UNets without a middle block
    if any(d != 1 for d in depth):
        cfg["transformer_layers_per_block"] = [d or 1 for d in depth] if len(depth) == levels else max(depth)
    return cfg


def _vae_prefix(names: list[str]) -> str:
    return next(p for p in VAE_PREFIXES if names[0].startswith(p))


def _vae_config(s: dict[str, tuple[int, ...]], family: str) -> dict[str, Any]:
    where = "VAE"
    _need(s, where, "encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight")
    levels = len(_indices(s, "encoder.down."))
    _need(s, where, *(f"encoder.down.{i}.block.0.conv2.weight" for i in range(levels)))
    cfg = _family_config(family, "vae")
    cfg.update(
        in_channels=s["encoder.conv_in.weight"][1], out_channels=s["decoder.conv_out.weight"][0],
        latent_channels=s["decoder.conv_in.weight"][1], layers_per_block=len(_indices(s, "encoder.down.0.block.")),
        block_out_channels=[s[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in range(levels)],
        down_block_types=["DownEncoderBlock2D"] * levels, up_block_types=["UpDecoderBlock2D"] * levels,
    )
    if "encoder.mid.attn_1.q.weight" not in s:
        cfg["mid_block_add_attention"] = False
    return cfg


def _text_config(shapes: dict[str, tuple[int, ...]], text: str, family: str) -> dict[str, Any]:
    if text == "clip":
        s, where = _strip({_clip_name(k): v for k, v in shapes.items()}, CLIP + "text_model."), "CLIP text encoder"
        names = ("embeddings.token_embedding.weight", "embeddings.position_embedding.weight",
                 "encoder.layers.0.mlp.fc1.weight")
        layers_prefix, extra_layers = "encoder.layers.", 0
    else:
        s, where = _strip(shapes, OPEN_CLIP), "OpenCLIP text encoder"
        names = ("token_embedding.weight", "positional_embedding", "transformer.resblocks.0.mlp.c_fc.weight")
        # SD 2.x conditions on the penultimate layer: the checkpoint's last block is never run (diffusers drops it)
        layers_prefix, extra_layers = "transformer.resblocks.", 1
    _need(s, where, *names)
    vocab, hidden = s[names[0]]
    if hidden % HEAD_CHANNELS:
        raise ModelLoadError(f"{where}: width {hidden} is not a multiple of the {HEAD_CHANNELS}-channel heads")
    layers = len(_indices(s, layers_prefix)) - extra_layers
    if layers < 1:
        raise ModelLoadError(f"{where}: the checkpoint holds no usable transformer layer")
    cfg = _family_config(family, "text_encoder")
    cfg.update(vocab_size=vocab, hidden_size=hidden, max_position_embeddings=s[names[1]][0],
               intermediate_size=s[names[2]][0], num_hidden_layers=layers,
               num_attention_heads=hidden // HEAD_CHANNELS)
    return cfg


def _clip_name(key: str) -> str:
    """Some SD 1.x files name the CLIP tensors without `text_model.` (older transformers); ComfyUI adds it back."""
    if key.startswith(CLIP) and not key.startswith(CLIP + "text_model."):
        return CLIP + "text_model." + key[len(CLIP):]
    return key


def _prediction(tf: TensorFile, family: str, variant: str, chosen: str) -> tuple[str, str]:
    """(prediction type, what decided it). The resolved recipe pins the detected type, so a bundle's recipe.toml
    reproduces it; the reason keeps saying where it came from."""
    detected, reason = _detect_prediction(tf, family, variant)
    if not chosen:
        return detected, reason
    if chosen == detected:
        return chosen, f"{reason}; pinned in the recipe"
    return chosen, f"recipe (model.prediction_type), overriding {detected} from {reason}"


def _detect_prediction(tf: TensorFile, family: str, variant: str) -> tuple[str, str]:
    if "v_pred" in tf.shapes:
        return "v_prediction", "the file's v_pred marker tensor"
    sidecar = tf.path.with_suffix(".yaml")
    if sidecar.is_file() and sidecar.stat().st_size < 1 << 20:
        found = re.search(r"^\s*parameterization\s*:\s*[\"']?(\w+)", sidecar.read_text(errors="replace"), re.M)
        value = found.group(1) if found else "eps"
        return ("v_prediction" if value == "v" else "epsilon"), f"{sidecar.name} (parameterization: {value})"
    if family == "sd2" and not variant and V_PROBE in tf.shapes:
        std = float(tf.load([V_PROBE])[V_PROBE].float().std(unbiased=False))
        kind = "v_prediction" if std > V_PREDICTION_STD else "epsilon"
        return kind, (f"heuristic: std of {V_PROBE.removeprefix(UNET)} is {std:.3f} "
                      f"({'>' if kind == 'v_prediction' else '<='} {V_PREDICTION_STD}); set model.prediction_type "
                      "to override")
    return "epsilon", f"{FAMILIES[family]}{' ' + variant if variant else ''} default"


# ---- loading ---------------------------------------------------------------------------------------------------


def inspect(path: Path, prediction_type: str = "") -> Detection:
    """Detection from the file's header alone (what `--dry-run` and recipe defaults need)."""
    return detect(open_tensor_file(Path(path)), prediction_type)


def load_single_file(path: Path, random_weights: bool = False, prediction_type: str = ""):
    """A LoadedModel from one checkpoint file: each part mapped to diffusers names and loaded strictly."""
    import torch

    from edgediff.model.loaded import RANDOM_WEIGHTS_SEED, LoadedModel

    path = Path(path)
    tf = open_tensor_file(path)
    found = detect(tf, prediction_type)
    scheduler = found.configs["scheduler"]
    model = LoadedModel(source=str(path), kind="pipeline", random_weights=random_weights,
                        scheduler_class=scheduler["_class_name"], scheduler_config=scheduler)
    if found.family.startswith("sdxl"):
        folders = sdxl_file.tokenizer_folders()
        model.tokenizer_dir = folders["tokenizer"] if "text_encoder" in found.keys else None
        model.tokenizer_2_dir = folders["tokenizer_2"]
        model.pipeline_config = sdxl_file.read_config("model_index.json" if found.family == "sdxl"
                                                      else "model_index_refiner.json")
    else:
        model.tokenizer_dir = tokenizer_folder(found.family)
    model.details = {"single_file": found.record()}
    for part in ("text_encoder", "text_encoder_2", "unet", "vae"):
        if part not in found.keys:
            continue
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        # UNet and VAE are built without memory and take the file's tensors as they are: a full-size UNet is never
        # held twice. The text encoder is built for real (its position ids are a buffer no file carries).
        empty = not random_weights and not part.startswith("text_encoder")
        with torch.device("meta") if empty else contextlib.nullcontext():
            module = _build(part, found.configs[part])
        if not random_weights:
            state = _convert(part, tf, found, module)
            _load_strict(module, state, f"{path.name} ({part})", assign=empty)
        setattr(model, part, module.float().eval().requires_grad_(False))
    return model


def _build(part: str, config: dict[str, Any]):
    if part.startswith("text_encoder"):
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        return (CLIPTextModelWithProjection if part == "text_encoder_2" else CLIPTextModel)(
            CLIPTextConfig.from_dict(config))
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return (UNet2DConditionModel if part == "unet" else AutoencoderKL).from_config(config)


def _convert(part: str, tf: TensorFile, found: Detection, module) -> dict[str, Any]:
    """The part's tensors under diffusers names (diffusers' converters: pure functions of the tensors + config)."""
    from diffusers.loaders import single_file_utils as sf

    tensors = tf.load(found.keys[part])
    if found.family.startswith("sdxl") and part.startswith("text_encoder"):
        state = sdxl_file.convert_text(part, tensors, module, tf.shapes)
        return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()
                if not k.endswith("position_ids")}
    if part == "text_encoder":
        tensors = {_clip_name(k): v for k, v in tensors.items()}
    if part == "unet":
        state = sf.convert_ldm_unet_checkpoint(tensors, found.configs["unet"])
    elif part == "vae":
        state = sf.convert_ldm_vae_checkpoint(tensors, found.configs["vae"])
    elif found.family == "sd1":
        state = sf.convert_ldm_clip_checkpoint(tensors)
    else:
        last = found.configs["text_encoder"]["num_hidden_layers"]  # the unused final block, see _text_config
        unused = f"{OPEN_CLIP}transformer.resblocks.{last}."
        tensors = {k: v for k, v in tensors.items() if not k.startswith(unused)}
        state = sf.convert_open_clip_checkpoint(module, tensors, prefix=OPEN_CLIP)
    if part == "text_encoder" and not hasattr(module, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()
            if v is not None and not k.endswith(("position_ids", "text_projection.weight"))}


def _load_strict(module, state: dict[str, Any], where: str, assign: bool = False) -> None:
    try:
        result = module.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc)[:300])
        raise ModelLoadError(f"{where}: the tensors do not fit the detected architecture ({first})") from None
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"{where}: the mapped tensors do not fill the detected architecture ({len(missing)} missing, "
            f"{len(result.unexpected_keys)} left over; first: {(missing + list(result.unexpected_keys))[0]}); the "
            "checkpoint is incomplete or a variant edgediff does not know")
    empty = [name for name, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if empty:
        raise ModelLoadError(f"{where}: {len(empty)} tensors of the architecture got no value (first: {empty[0]})")


@functools.cache
def tokenizer_folder(family: str) -> Path:
    """A CLIP tokenizer folder for the family: the shared BPE files plus the family's special tokens (SD 2.x
    pads with "!", SD 1.x with <|endoftext|>), assembled once per process in a temporary folder."""
    return sdxl_file.assemble_tokenizer(CONFIGS / family, f"edgediff-tokenizer-{family}-")

