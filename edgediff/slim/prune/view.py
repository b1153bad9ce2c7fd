"""`subnet_view`: the teacher's own modules rewired into a pruned structure, nothing copied.

Separate from surgery because it is used in a different way: inside training and search loops, many times,
on a live model whose parameters must stay shared.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

from edgediff.slim.prune.layout import BlockPlan, Layout, plan_layout
from edgediff.slim.prune.spec import PruneSpec


class SkipAttention(torch.nn.Module):
    """Stands in for a dropped Transformer2DModel inside a view: returns its input (attention is residual)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        return (hidden_states,)


@contextlib.contextmanager
def subnet_view(unet: Any, spec: PruneSpec) -> Iterator[Layout]:
    """Rewire `unet` in place into the pruned structure, sharing its modules; restore on exit.

    Inside the `with`, `unet(...)` computes exactly what `prune_unet(unet, spec)` would (same weights),
    and gradients flow into the shared teacher parameters: that is SnapFusion's robust training.
    """
    layout = plan_layout(unet.config, spec)
    saved: list[tuple[Any, str, Any]] = []

    def swap(obj: Any, name: str, value: Any) -> None:
        saved.append((obj, name, getattr(obj, name)))
        if isinstance(obj, torch.nn.Module) and name in obj._modules:
            obj._modules[name] = value
        else:
            setattr(obj, name, value)

    def rewire(blocks: torch.nn.ModuleList, plans: tuple[BlockPlan, ...], sampler: str) -> torch.nn.ModuleList:
        kept = []
        for plan in plans:
            block = blocks[plan.teacher_index]
            if plan.resnets != tuple(range(len(block.resnets))):
                swap(block, "resnets", torch.nn.ModuleList([block.resnets[i] for i in plan.resnets]))
            if getattr(block, "attentions", None) is not None:
                if plan.attentions is None:
                    swap(block, "attentions", torch.nn.ModuleList([SkipAttention() for _ in plan.resnets]))
                elif plan.attentions != tuple(range(len(block.attentions))):
                    swap(block, "attentions", torch.nn.ModuleList([block.attentions[i] for i in plan.attentions]))
            if not plan.keeps_sampler and getattr(block, sampler, None) is not None:
                swap(block, sampler, None)
            kept.append(block)
        return torch.nn.ModuleList(kept)

    try:
        down = rewire(unet.down_blocks, layout.down, "downsamplers")
        up = rewire(unet.up_blocks, layout.up, "upsamplers")
        if len(down) != len(unet.down_blocks):
            swap(unet, "down_blocks", down)
            swap(unet, "up_blocks", up)
            swap(unet, "num_upsamplers", sum(1 for p in layout.up if p.keeps_sampler))
        if not layout.mid and unet.mid_block is not None:
            swap(unet, "mid_block", None)
        yield layout
    finally:
        for obj, name, value in reversed(saved):
            if isinstance(obj, torch.nn.Module) and name in obj._modules:
                obj._modules[name] = value
            else:
                setattr(obj, name, value)
