"""Comparing a UNet config with a published one, field by field after diffusers' defaults are filled in.

Separate because only checks against published architectures (BK-SDM) use it, not the pruning itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch

from edgediff.slim.prune.layout import _per_block, _plain_config

# diffusers is imported inside the functions that build models: it costs seconds and prints warnings on
# import, and this package is imported by every recipe run (edgediff.slim.steps registers the `prune` step).

# Config fields that define the architecture (compared key by key against published configs).
ARCHITECTURE_FIELDS = (
    "act_fn", "attention_head_dim", "block_out_channels", "center_input_sample", "class_embed_type",
    "conv_in_kernel", "conv_out_kernel", "cross_attention_dim", "down_block_types", "downsample_padding",
    "dual_cross_attention", "encoder_hid_dim", "flip_sin_to_cos", "freq_shift", "in_channels",
    "layers_per_block", "mid_block_scale_factor", "mid_block_type", "norm_eps", "norm_num_groups",
    "num_attention_heads", "num_class_embeds", "only_cross_attention", "out_channels",
    "projection_class_embeddings_input_dim", "resnet_out_scale_factor", "resnet_skip_time_act",
    "resnet_time_scale_shift", "sample_size", "time_cond_proj_dim", "time_embedding_type",
    "transformer_layers_per_block", "up_block_types", "upcast_attention", "use_linear_projection",
)


@dataclass
class ConfigDiff:
    """Architecture fields where two UNet configs disagree (after diffusers' defaults are applied)."""

    differences: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def same(self) -> bool:
        return not self.differences


def _normalised(config: dict[str, Any]) -> dict[str, Any]:
    """Fill in diffusers' defaults and expand per-block scalars so equal architectures compare equal."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # the registered config of a built model has every default filled in
        full = dict(UNet2DConditionModel.from_config(_plain_config(config)).config)
    n = len(full["down_block_types"])
    for key in ("layers_per_block", "attention_head_dim", "cross_attention_dim", "only_cross_attention",
                "transformer_layers_per_block"):
        full[key] = _per_block(full.get(key), n)
    if full.get("num_attention_heads") is None:
        full["num_attention_heads"] = full["attention_head_dim"]
    full["num_attention_heads"] = _per_block(full["num_attention_heads"], n)
    return json.loads(json.dumps(full, default=list))


def compare_configs(ours: dict[str, Any], reference: dict[str, Any]) -> ConfigDiff:
    a, b = _normalised(ours), _normalised(reference)
    diff = ConfigDiff()
    for key in ARCHITECTURE_FIELDS:
        if a.get(key) != b.get(key):
            diff.differences[key] = (a.get(key), b.get(key))
    return diff
