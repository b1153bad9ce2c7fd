"""Architecture pruning of a diffusers UNet2DConditionModel: block surgery, BK-SDM presets, sub-network views.

A `PruneSpec` names what to remove from a teacher UNet, always in the teacher's own indices:

- `remove_down=((stage, depth), ...)`: the ResNet (+ attention) pair number `depth` of `down_blocks[stage]`;
- `remove_up=((block, depth), ...)`: the pair number `depth` of `up_blocks[block]` (diffusers order: 0 is the
  innermost, lowest-resolution up block);
- `drop_attention_down` / `drop_attention_up`: stages whose transformer (self + cross attention) blocks go,
  turning CrossAttnDownBlock2D into DownBlock2D (CrossAttnUpBlock2D into UpBlock2D), ResNets kept;
- `drop_mid`: the mid block (`mid_block_type: null`);
- `drop_inner_stages=k`: the k innermost resolution stages (their down and up blocks); the new innermost down
  block loses its downsampler, exactly as BK-SDM-Tiny does.

The student is a plain UNet2DConditionModel (its config says everything, it loads in any diffusers), so it must
be expressible by diffusers' config: an up block always has one layer more than its mirrored down stage.
Removing k pairs from down stage s therefore requires removing k pairs from up block n-1-s.

Weights: every surviving module keeps the teacher's tensors bit for bit. Inside a stage the surviving pairs keep
their order and are renumbered. The BK-SDM presets remove the *last* pair of each down stage and the
*second-to-last* pair of each up block (the last up pair is the only one that takes the stage-input skip, so it
must survive); for SD 1.x/2.x this is exactly BK-SDM's initialisation (down keeps pair 0; up keeps pairs 0
and 2, as in Nota's `copy_weight_from_teacher`).

`subnet_view(teacher, spec)` temporarily rewires the teacher's own modules into the student's structure without
copying anything: its forward equals the pruned student's forward. Robust training (random block skipping) and
the latency-driven search use it to try an architecture without building it.

Layout: `spec` (PruneSpec), `layout` (what a spec means for a config: the student's blocks and config),
`presets` (BK-SDM), `surgery` (building and saving the pruned UNet), `view` (subnet_view), `compare`
(against published configs), `units` (the smallest valid removals), `search` (the greedy latency-driven
search), `quality` (how the search scores a candidate), `search_run` (`edgediff prune --latency-budget`
end to end) and `recipe_step` (the recipe's `prune` step, registered on import).
"""

from edgediff.slim.prune.compare import compare_configs
from edgediff.slim.prune.layout import (
    ATTENTION_BLOCK_TYPES,
    Layout,
    down_layer_counts,
    parameter_count,
    plan_layout,
    pruned_config,
    up_layer_counts,
)
from edgediff.slim.prune.presets import PRESETS, preset_spec
from edgediff.slim.prune.recipe_step import prune_slim_step
from edgediff.slim.prune.search import greedy_search
from edgediff.slim.prune.search_run import SearchSettings, run_search
from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.surgery import prune_unet, save_student, teacher_key
from edgediff.slim.prune.units import combine_units, keeps_text_path, removal_units, spec_error
from edgediff.slim.prune.view import subnet_view

__all__ = [
    "ATTENTION_BLOCK_TYPES", "PRESETS", "Layout", "PruneSpec", "SearchSettings", "combine_units", "compare_configs",
    "down_layer_counts", "greedy_search", "keeps_text_path", "parameter_count", "plan_layout", "preset_spec",
    "prune_slim_step", "prune_unet", "pruned_config", "removal_units", "run_search", "save_student", "spec_error",
    "subnet_view", "teacher_key", "up_layer_counts",
]
