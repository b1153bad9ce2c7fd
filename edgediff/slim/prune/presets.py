"""BK-SDM's architectures (bk-base, bk-small, bk-tiny) as `PruneSpec`s for any UNet config.

Separate from the layout rules: a preset is a choice of removals, not a rule about what is removable.
"""

from __future__ import annotations

from typing import Any

from edgediff.errors import RecipeError
from edgediff.slim.prune.layout import _plain_config, down_layer_counts, up_layer_counts
from edgediff.slim.prune.spec import PruneSpec

PRESETS = ("bk-base", "bk-small", "bk-tiny")


def preset_spec(config: Any, preset: str) -> PruneSpec:
    """BK-SDM's architectures for any UNet whose stages have at least two pairs.

    bk-base: one pair less in every down stage (its last) and every up block (its second-to-last);
    bk-small: bk-base without the mid block; bk-tiny: bk-small without the innermost stage.
    """
    if preset not in PRESETS:
        raise RecipeError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    cfg = _plain_config(config)
    down_counts, up_counts = down_layer_counts(cfg), up_layer_counts(cfg)
    n = len(down_counts)
    k = 1 if preset == "bk-tiny" else 0
    if preset == "bk-tiny" and n < 2:
        raise RecipeError("bk-tiny removes the innermost stage; this UNet has only one")
    thin = [s for s in range(n - k) if down_counts[s] < 2]
    if thin:
        raise RecipeError(
            f"the BK-SDM presets remove one pair per stage, but down_blocks {thin} already have a single pair; "
            "write an explicit PruneSpec for this UNet instead"
        )
    remove_down = tuple((s, down_counts[s] - 1) for s in range(n - k))
    remove_up = tuple((b, up_counts[b] - 2) for b in range(k, n))
    return PruneSpec(
        remove_down=remove_down, remove_up=remove_up,
        drop_mid=preset in ("bk-small", "bk-tiny"), drop_inner_stages=k,
    )
