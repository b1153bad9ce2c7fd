"""The smallest valid removals of a UNet and whether a spec can be applied, checked on meta tensors.

Separate because robust training and the search both draw from these units, and neither needs weights.
"""

from __future__ import annotations

import json
from typing import Any

import torch

from edgediff.errors import RecipeError, UnsupportedError
from edgediff.slim.prune.layout import (
    ATTENTION_BLOCK_TYPES,
    _plain_config,
    down_layer_counts,
    plan_layout,
    pruned_config,
    up_layer_counts,
)
from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.surgery import student_state_dict

# diffusers is imported inside the functions that build models: it costs seconds and prints warnings on
# import, and this package is imported by every recipe run (edgediff.slim.steps registers the `prune` step).

_META_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}


def _meta_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a config's model, built once on the meta device and cached."""
    from diffusers import UNet2DConditionModel

    key = json.dumps(config, sort_keys=True, default=list)
    if key not in _META_SHAPES:
        with torch.device("meta"):
            model = UNet2DConditionModel.from_config(config)
        _META_SHAPES[key] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _META_SHAPES[key]


def spec_error(config: Any, spec: PruneSpec) -> str | None:
    """Why `spec` cannot be applied to this UNet (None when it can): rules and tensor shapes, no weights."""
    try:
        cfg = _plain_config(config)
        layout = plan_layout(cfg, spec)
        teacher = _meta_shapes({k: v for k, v in cfg.items() if not k.startswith("_")})
        student = _meta_shapes(pruned_config(cfg, spec))
        meta = {k: torch.empty(shape, device="meta") for k, shape in teacher.items()}
        student_state_dict(meta, layout, list(student), student)
    except (RecipeError, UnsupportedError) as exc:
        return str(exc)
    return None


def removal_units(config: Any, inner_stage: bool = True) -> list[PruneSpec]:
    """Every smallest removal that still gives a valid diffusers UNet: one pair from a down stage together
    with one from its mirror up block (each valid depth combination), one stage's attention (down or up),
    the mid block, and (`inner_stage`) the innermost resolution stage (down + up block, with the sampler
    pair that leads to it, and the mid block too when it does not fit the next stage's width: all a UNet
    with one pair per stage, like the default model, can lose besides attention). These are what robust training skips at random and what the search removes."""
    cfg = _plain_config(config)
    n = len(cfg["down_block_types"])
    down_counts, up_counts = down_layer_counts(cfg), up_layer_counts(cfg)
    candidates = []
    for s in range(n):
        if down_counts[s] < 2:
            continue
        for d in range(down_counts[s]):
            for u in range(up_counts[n - 1 - s]):
                candidates.append(PruneSpec(remove_down=((s, d),), remove_up=((n - 1 - s, u),)))
    candidates += [PruneSpec(drop_attention_down=(s,)) for s in range(n)
                   if cfg["down_block_types"][s] in ATTENTION_BLOCK_TYPES]
    candidates += [PruneSpec(drop_attention_up=(b,)) for b in range(n)
                   if cfg["up_block_types"][b] in ATTENTION_BLOCK_TYPES]
    if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") is not None:
        candidates.append(PruneSpec(drop_mid=True))
    if inner_stage and n > 1:  # with the mid block when it does not fit the next stage's width
        inner = PruneSpec(drop_inner_stages=1)
        candidates.append(inner if spec_error(cfg, inner) is None else inner.merged(PruneSpec(drop_mid=True)))
    return [c for c in candidates if spec_error(cfg, c) is None]


def keeps_text_path(config: Any, spec: PruneSpec) -> bool:
    """Whether some cross-attention survives: without any, a text-to-image UNet cannot see the prompt (the
    first search on the default model removed them all and prompt accuracy fell from 85.5% to 0.5%)."""
    layout = plan_layout(config, spec)
    if layout.mid and _plain_config(config).get("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn":
        return True
    return any(p.attentions for p in layout.down + layout.up)


def combine_units(config: Any, base: PruneSpec, units: list[PruneSpec]) -> PruneSpec:
    """Add units to `base` one by one, skipping any that would make the spec invalid."""
    spec = base
    for unit in units:
        merged = spec.merged(unit)
        if merged != spec and spec_error(config, merged) is None:
            spec = merged
    return spec
