"""SDXL single-file checkpoints (base and refiner, as Stability's `sd_xl_base_1.0.safetensors`, A1111 and ComfyUI
save them), detected and mapped offline like SD 1.x / 2.x in single_file.py.

The original layout:
- `conditioner.embedders.0.transformer.*`: CLIP ViT-L in Hugging Face layout (the base's `text_encoder`),
- `conditioner.embedders.1.model.*` (base) or `conditioner.embedders.0.model.*` (refiner): OpenCLIP ViT-bigG in its
  own layout (`text_encoder_2`: fused `in_proj_weight` split into q/k/v, `text_projection` transposed; all its
  blocks are used, SDXL reads the penultimate hidden state at run time),
- `model.diffusion_model.*` with `label_emb.0.*` (the added conditioning's MLP), `first_stage_model.*`.

Widths, depths (transformer_layers_per_block) and the text encoders come from the shapes. Heads cannot be read
from shapes: the real configs' head counts are used when the widths are SDXL's, else 64-channel heads. The time
id count is the family's (6 for the base, 5 with the aesthetic score for the refiner), and with the pooled width
it gives addition_time_embed_dim. Everything else comes from configs/sdxl/, so nothing is fetched.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgediff.errors import ModelLoadError

CONFIGS = Path(__file__).with_name("configs")
SDXL = CONFIGS / "sdxl"
PREFIX = "conditioner.embedders."
CLIP_L = PREFIX + "0.transformer."
UNET = "model.diffusion_model."
HEAD_CHANNELS = 64
TIME_IDS = {"sdxl": 6, "sdxl-refiner": 5}


def is_sdxl_file(shapes: dict[str, tuple[int, ...]]) -> bool:
    return any(k.startswith(PREFIX) for k in shapes) or UNET + "label_emb.0.0.weight" in shapes


def open_clip_prefix(shapes: dict[str, tuple[int, ...]]) -> str:
    """Where the OpenCLIP encoder lives: embedders.1 in the base (after CLIP-L), embedders.0 in the refiner."""
    for index in ("1", "0"):
        if f"{PREFIX}{index}.model.token_embedding.weight" in shapes:
            return f"{PREFIX}{index}.model."
    raise ModelLoadError(f"an SDXL checkpoint without its OpenCLIP text encoder ({PREFIX}N.model.token_embedding."
                         "weight): it is incomplete")


def read_config(name: str) -> dict[str, Any]:
    return json.loads((SDXL / name).read_text())


def split_parts(shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """Tensor names per diffusers part."""
    big_g = open_clip_prefix(shapes)
    parts: dict[str, list[str]] = {}
    for key in shapes:
        if key.startswith(UNET):
            parts.setdefault("unet", []).append(key)
        elif key.startswith("first_stage_model."):
            parts.setdefault("vae", []).append(key)
        elif key.startswith(CLIP_L) and not key.endswith("position_ids"):
            parts.setdefault("text_encoder", []).append(key)
        elif key.startswith(big_g):
            parts.setdefault("text_encoder_2", []).append(key)
    return parts


def family(parts: dict[str, list[str]]) -> str:
    return "sdxl" if "text_encoder" in parts else "sdxl-refiner"


def unet_config(base_cfg: dict[str, Any], s: dict[str, tuple[int, ...]], fam: str, pooled: int,
                where: str) -> dict[str, Any]:
    """SDXL's UNet config from its shapes, on top of what single_file's generic UNet detection measured."""
    cfg = read_config("unet.json" if fam == "sdxl" else "unet_refiner.json")
    measured = {k: base_cfg[k] for k in ("in_channels", "out_channels", "block_out_channels", "layers_per_block",
                                         "cross_attention_dim", "down_block_types", "up_block_types")}
    cfg.update(measured)
    if "label_emb.0.0.weight" not in s:
        raise ModelLoadError(f"{where}: no label_emb.0.0.weight (the added conditioning); not an SDXL UNet")
    total = s["label_emb.0.0.weight"][1]
    n_ids = TIME_IDS[fam]
    if (total - pooled) % n_ids or total <= pooled:
        raise ModelLoadError(f"{where}: label_emb takes {total} channels, which is no pooled width {pooled} plus "
                             f"{n_ids} time ids")
    cfg.update(projection_class_embeddings_input_dim=total, addition_time_embed_dim=(total - pooled) // n_ids)
    channels = cfg["block_out_channels"]
    if channels != read_config("unet.json" if fam == "sdxl" else "unet_refiner.json")["block_out_channels"]:
        cfg["attention_head_dim"] = [max(c // HEAD_CHANNELS, 1) for c in channels]
    levels, layers = len(channels), cfg["layers_per_block"]
    depths: list[int | None] = []  # transformer layers per level, None where the level has no attention
    for level in range(levels):
        first = 1 + level * (layers + 1)
        blocks = {int(k.split(".")[4]) for k in s if k.startswith(f"input_blocks.{first}.1.transformer_blocks.")}
        depths.append(len(blocks) or None)
    mid = len({int(k.split(".")[3]) for k in s if k.startswith("middle_block.1.transformer_blocks.")})
    used = {d for d in depths if d} | ({mid} if mid else set())
    if len(used) == 1:  # one depth everywhere (the refiner: 4)
        cfg["transformer_layers_per_block"] = used.pop()
    else:  # per level (the base: 1, 2, 10); diffusers gives the middle block the last level's depth
        if mid and mid != depths[-1]:
            raise ModelLoadError(f"{where}: the middle block has {mid} transformer layers, the last level "
                                 f"{depths[-1]}; diffusers' SDXL UNet ties them")
        cfg["transformer_layers_per_block"] = [d or 1 for d in depths]
    cfg["sample_size"] = 128
    return cfg


def clip_l_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    s = {k[len(CLIP_L):].removeprefix("text_model."): v for k, v in shapes.items() if k.startswith(CLIP_L)}
    return _text_config(read_config("text_encoder.json"), s["embeddings.token_embedding.weight"],
                        s["embeddings.position_embedding.weight"][0], s["encoder.layers.0.mlp.fc1.weight"][0],
                        _count(s, "encoder.layers."), None)


def big_g_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    p = open_clip_prefix(shapes)
    s = {k[len(p):]: v for k, v in shapes.items() if k.startswith(p)}
    for name in ("positional_embedding", "transformer.resblocks.0.mlp.c_fc.weight", "text_projection"):
        if name not in s:
            raise ModelLoadError(f"OpenCLIP text encoder: the checkpoint lacks {p}{name}; it is incomplete")
    return _text_config(read_config("text_encoder_2.json"), s["token_embedding.weight"], s["positional_embedding"][0],
                        s["transformer.resblocks.0.mlp.c_fc.weight"][0], _count(s, "transformer.resblocks."),
                        s["text_projection"][1])


def _text_config(cfg: dict[str, Any], embedding: tuple[int, ...], positions: int, intermediate: int, layers: int,
                 projection: int | None) -> dict[str, Any]:
    vocab, hidden = embedding
    if hidden % HEAD_CHANNELS and hidden > HEAD_CHANNELS:
        raise ModelLoadError(f"text encoder width {hidden} is not a multiple of the {HEAD_CHANNELS}-channel heads")
    cfg.pop("architectures", None)
    cfg.update(vocab_size=vocab, hidden_size=hidden, max_position_embeddings=positions,
               intermediate_size=intermediate, num_hidden_layers=layers,
               num_attention_heads=max(hidden // HEAD_CHANNELS, 1))
    if projection is not None:
        cfg["projection_dim"] = projection
    return cfg


def _count(s: dict[str, Any], prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in s if k.startswith(prefix)})


OPEN_CLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                   "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def convert_text(part: str, tensors: dict[str, Any], module, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The text encoders' tensors under transformers' names. CLIP-L is already in that layout; OpenCLIP's fused
    attention input projection is split into q/k/v and its text projection ([width, dim]) transposed into a
    Linear weight. `logit_scale` (contrastive training only) is dropped."""
    if part == "text_encoder":
        state = {k[len(CLIP_L):]: v for k, v in tensors.items()}
        state = {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}
    else:
        p = open_clip_prefix(shapes)
        t = {k[len(p):]: v for k, v in tensors.items()}
        state = {"text_model.embeddings.token_embedding.weight": t.pop("token_embedding.weight"),
                 "text_model.embeddings.position_embedding.weight": t.pop("positional_embedding"),
                 "text_model.final_layer_norm.weight": t.pop("ln_final.weight"),
                 "text_model.final_layer_norm.bias": t.pop("ln_final.bias"),
                 "text_projection.weight": t.pop("text_projection").T.contiguous()}
        t.pop("logit_scale", None)
        for key, value in t.items():
            parts = key.split(".")
            if parts[:2] != ["transformer", "resblocks"]:
                raise ModelLoadError(f"OpenCLIP text encoder: unexpected tensor {p}{key}")
            layer, rest = parts[2], ".".join(parts[3:])
            dst = f"text_model.encoder.layers.{layer}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]  # weight / bias
                for name, chunk in zip("qkv", value.chunk(3, dim=0)):
                    state[dst + f"self_attn.{name}_proj.{kind}"] = chunk.clone()
                continue
            block, kind = rest.rsplit(".", 1)
            if block not in OPEN_CLIP_BLOCK:
                raise ModelLoadError(f"OpenCLIP text encoder: unexpected tensor {p}{key}")
            state[dst + f"{OPEN_CLIP_BLOCK[block]}.{kind}"] = value
    if not hasattr(module, "text_model"):  # transformers >= 5.6 flattened the CLIP text models
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    return state


@functools.cache
def tokenizer_folders() -> dict[str, Path]:
    """CLIP's BPE files with each SDXL tokenizer's special tokens (the second pads with "!"), assembled once."""
    return {name: assemble_tokenizer(SDXL / name, f"edgediff-sdxl-{name}-") for name in ("tokenizer", "tokenizer_2")}


def assemble_tokenizer(special_tokens_dir: Path, prefix: str) -> Path:
    """CLIP's shipped BPE files plus one tokenizer's special-token files, in a temporary folder removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy2(CONFIGS / "clip-tokenizer" / name, folder / name)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(special_tokens_dir / name, folder / name)
    return folder
