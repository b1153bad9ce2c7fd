"""What a `PruneSpec` means for a given UNet config: validation, the student's block plan and config.

Everything else (surgery, views, units, presets) starts from `plan_layout` / `pruned_config`, so the rules
of what diffusers can express live once, here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from edgediff.errors import RecipeError, UnsupportedError
from edgediff.slim.prune.spec import PruneSpec

# diffusers is imported inside the functions that build models: it costs seconds and prints warnings on
# import, and this package is imported by every recipe run (edgediff.slim.steps registers the `prune` step).

# Block types whose attention can be dropped, and what they become. The attention-free block has the very
# same ResNets / samplers (same parameter names and shapes), so the surviving weights copy over unchanged.
WITHOUT_ATTENTION = {
    "CrossAttnDownBlock2D": "DownBlock2D",
    "CrossAttnUpBlock2D": "UpBlock2D",
}
ATTENTION_BLOCK_TYPES = frozenset(WITHOUT_ATTENTION)
KNOWN_BLOCK_TYPES = ATTENTION_BLOCK_TYPES | frozenset(WITHOUT_ATTENTION.values())

# Per-block config fields indexed like `down_block_types` (sliced when inner stages go) ...
DOWN_INDEXED_FIELDS = (
    "block_out_channels",
    "attention_head_dim",
    "num_attention_heads",
    "cross_attention_dim",
    "only_cross_attention",
    "transformer_layers_per_block",
)
# ... and indexed like `up_block_types`.
UP_INDEXED_FIELDS = ("reverse_transformer_layers_per_block",)


@dataclass(frozen=True)
class BlockPlan:
    """One student block: which teacher block it comes from and which of its parts survive, in order."""

    teacher_index: int
    resnets: tuple[int, ...]
    attentions: tuple[int, ...] | None  # None: the student block has no attention
    block_type: str
    keeps_sampler: bool  # downsampler (down) / upsampler (up)


@dataclass(frozen=True)
class Layout:
    """The student's structure in terms of the teacher's modules: what surgery copies and views rewire."""

    down: tuple[BlockPlan, ...]
    up: tuple[BlockPlan, ...]
    mid: bool


def _plain_config(config: Any) -> dict[str, Any]:
    """A mutable dict copy of a diffusers config (FrozenDict or dict), lists instead of tuples."""
    data = json.loads(json.dumps(dict(config), default=list))
    if data.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise UnsupportedError(
            f"pruning works on UNet2DConditionModel configs, got {data.get('_class_name')}; "
            "point MODEL at a diffusers pipeline folder or its unet/ folder"
        )
    return data


def _per_block(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def down_layer_counts(config: dict[str, Any]) -> list[int]:
    """ResNet count of each down block (layers_per_block may be an int or a per-block list)."""
    return [int(v) for v in _per_block(config.get("layers_per_block", 2), len(config["down_block_types"]))]


def up_layer_counts(config: dict[str, Any]) -> list[int]:
    """ResNet count of each up block: diffusers always builds one more than the mirrored down stage."""
    return [n + 1 for n in reversed(down_layer_counts(config))]


def _check_depths(kind: str, removals: tuple[tuple[int, int], ...], counts: list[int], stages: range) -> None:
    for stage, depth in removals:
        if stage not in range(len(counts)):
            raise RecipeError(f"{kind}_blocks.{stage} does not exist (the UNet has {len(counts)} {kind} blocks)")
        if stage not in stages:
            raise RecipeError(f"{kind}_blocks.{stage} is removed whole by drop_inner_stages; do not prune inside it")
        if depth not in range(counts[stage]):
            raise RecipeError(
                f"{kind}_blocks.{stage} has {counts[stage]} pairs (depths 0..{counts[stage] - 1}), no depth {depth}"
            )


def plan_layout(config: Any, spec: PruneSpec) -> Layout:
    """Validate `spec` against the teacher config and work out the student's structure."""
    cfg = _plain_config(config)
    down_types, up_types = list(cfg["down_block_types"]), list(cfg["up_block_types"])
    n = len(down_types)
    k = spec.drop_inner_stages
    if not 0 <= k < n:
        raise RecipeError(f"drop_inner_stages must be in 0..{n - 1} for a UNet with {n} stages, got {k}")
    for name in down_types + up_types:
        if name not in KNOWN_BLOCK_TYPES:
            raise UnsupportedError(
                f"block type {name} is not supported by pruning (supported: {', '.join(sorted(KNOWN_BLOCK_TYPES))})"
            )
    down_counts, up_counts = down_layer_counts(cfg), up_layer_counts(cfg)
    kept_down, kept_up = range(0, n - k), range(k, n)
    _check_depths("down", spec.remove_down, down_counts, kept_down)
    _check_depths("up", spec.remove_up, up_counts, kept_up)
    for kind, stages, types, kept in (
        ("down", spec.drop_attention_down, down_types, kept_down),
        ("up", spec.drop_attention_up, up_types, kept_up),
    ):
        for s in stages:
            if s not in range(n):
                raise RecipeError(f"{kind}_blocks.{s} does not exist (the UNet has {n} {kind} blocks)")
            if s not in kept:
                raise RecipeError(f"{kind}_blocks.{s} is removed whole by drop_inner_stages")
            if types[s] not in ATTENTION_BLOCK_TYPES:
                raise RecipeError(f"{kind}_blocks.{s} ({types[s]}) has no attention to drop")

    removed_down = Counter(s for s, _ in spec.remove_down)
    removed_up = Counter(b for b, _ in spec.remove_up)
    for s in kept_down:
        if down_counts[s] - removed_down[s] < 1:
            raise RecipeError(f"down_blocks.{s} would have no pair left; keep at least one")
        mirror = n - 1 - s
        if removed_down[s] != removed_up[mirror]:
            raise RecipeError(
                f"down_blocks.{s} loses {removed_down[s]} pair(s) but its mirror up_blocks.{mirror} loses "
                f"{removed_up[mirror]}: a diffusers UNet2DConditionModel config ties them (an up block has one "
                "pair more than its down stage), so remove the same number from both"
            )

    down_plans = []
    for s in kept_down:
        keep = tuple(d for d in range(down_counts[s]) if (s, d) not in spec.remove_down)
        has_attn = down_types[s] in ATTENTION_BLOCK_TYPES and s not in spec.drop_attention_down
        down_plans.append(BlockPlan(
            teacher_index=s, resnets=keep, attentions=keep if has_attn else None,
            block_type=down_types[s] if has_attn or down_types[s] not in WITHOUT_ATTENTION
            else WITHOUT_ATTENTION[down_types[s]],
            keeps_sampler=s < n - k - 1,
        ))
    up_plans = []
    for b in kept_up:
        keep = tuple(d for d in range(up_counts[b]) if (b, d) not in spec.remove_up)
        has_attn = up_types[b] in ATTENTION_BLOCK_TYPES and b not in spec.drop_attention_up
        up_plans.append(BlockPlan(
            teacher_index=b, resnets=keep, attentions=keep if has_attn else None,
            block_type=up_types[b] if has_attn or up_types[b] not in WITHOUT_ATTENTION
            else WITHOUT_ATTENTION[up_types[b]],
            keeps_sampler=b < n - 1,
        ))
    has_mid = cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None and not spec.drop_mid
    return Layout(down=tuple(down_plans), up=tuple(up_plans), mid=has_mid)


def pruned_config(config: Any, spec: PruneSpec) -> dict[str, Any]:
    """The student's UNet2DConditionModel config (a plain dict ready for `from_config`)."""
    cfg = _plain_config(config)
    layout = plan_layout(cfg, spec)
    n, k = len(cfg["down_block_types"]), spec.drop_inner_stages
    out = {key: value for key, value in cfg.items() if not key.startswith("_")}
    out["down_block_types"] = [p.block_type for p in layout.down]
    out["up_block_types"] = [p.block_type for p in layout.up]
    counts = [len(p.resnets) for p in layout.down]
    out["layers_per_block"] = counts[0] if len(set(counts)) == 1 else counts
    for key in DOWN_INDEXED_FIELDS:
        if isinstance(cfg.get(key), list):
            out[key] = cfg[key][: n - k]
    for key in UP_INDEXED_FIELDS:
        if isinstance(cfg.get(key), list):
            out[key] = cfg[key][k:]
    if not layout.mid:
        out["mid_block_type"] = None
    return out


def parameter_count(config: dict[str, Any]) -> int:
    """Parameters of a UNet2DConditionModel config, built on the meta device (no memory, no weights)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        model = UNet2DConditionModel.from_config(_plain_config(config))
    return sum(p.numel() for p in model.parameters())
