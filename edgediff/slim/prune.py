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
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from edgediff.errors import ModelLoadError, RecipeError, UnsupportedError

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

PRESETS = ("bk-base", "bk-small", "bk-tiny")


@dataclass(frozen=True)
class PruneSpec:
    """What to remove from a teacher UNet, in the teacher's indices (see the module docstring)."""

    remove_down: tuple[tuple[int, int], ...] = ()
    remove_up: tuple[tuple[int, int], ...] = ()
    drop_attention_down: tuple[int, ...] = ()
    drop_attention_up: tuple[int, ...] = ()
    drop_mid: bool = False
    drop_inner_stages: int = 0

    def __post_init__(self) -> None:
        # Canonical order so that equal specs compare and hash equal whatever order they were built in.
        object.__setattr__(self, "remove_down", tuple(sorted(set(map(tuple, self.remove_down)))))
        object.__setattr__(self, "remove_up", tuple(sorted(set(map(tuple, self.remove_up)))))
        object.__setattr__(self, "drop_attention_down", tuple(sorted(set(self.drop_attention_down))))
        object.__setattr__(self, "drop_attention_up", tuple(sorted(set(self.drop_attention_up))))

    def merged(self, other: "PruneSpec") -> "PruneSpec":
        """Both specs' removals together."""
        return PruneSpec(
            remove_down=self.remove_down + other.remove_down,
            remove_up=self.remove_up + other.remove_up,
            drop_attention_down=self.drop_attention_down + other.drop_attention_down,
            drop_attention_up=self.drop_attention_up + other.drop_attention_up,
            drop_mid=self.drop_mid or other.drop_mid,
            drop_inner_stages=max(self.drop_inner_stages, other.drop_inner_stages),
        )

    def is_empty(self) -> bool:
        return self == PruneSpec()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("remove_down", "remove_up"):
            data[key] = [list(p) for p in data[key]]
        for key in ("drop_attention_down", "drop_attention_up"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PruneSpec":
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RecipeError(
                f"unknown prune field(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(
            remove_down=tuple(tuple(p) for p in data.get("remove_down", ())),
            remove_up=tuple(tuple(p) for p in data.get("remove_up", ())),
            drop_attention_down=tuple(data.get("drop_attention_down", ())),
            drop_attention_up=tuple(data.get("drop_attention_up", ())),
            drop_mid=bool(data.get("drop_mid", False)),
            drop_inner_stages=int(data.get("drop_inner_stages", 0)),
        )

    def describe(self) -> list[str]:
        """One human line per removal, e.g. 'down_blocks.1 pair 1'."""
        lines = [f"down_blocks.{s} pair {d}" for s, d in self.remove_down]
        lines += [f"up_blocks.{b} pair {d}" for b, d in self.remove_up]
        lines += [f"down_blocks.{s} attention" for s in self.drop_attention_down]
        lines += [f"up_blocks.{b} attention" for b in self.drop_attention_up]
        if self.drop_mid:
            lines.append("mid_block")
        if self.drop_inner_stages:
            lines.append(f"{self.drop_inner_stages} innermost stage(s)")
        return lines


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


# ----------------------------------------------------------------------------------------------- config


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


# ------------------------------------------------------------------------------------------------ presets


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


# ------------------------------------------------------------------------------------------------ surgery

_BLOCK_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$")
_SAMPLER_KEY = re.compile(r"^(down_blocks|up_blocks)\.(\d+)\.((?:down|up)samplers\..*)$")


def teacher_key(layout: Layout, student_key: str) -> str:
    """Name of the teacher tensor a student tensor is copied from."""
    m = _BLOCK_KEY.match(student_key)
    if m:
        kind, index, part, sub, rest = m.groups()
        plan = (layout.down if kind == "down_blocks" else layout.up)[int(index)]
        kept = plan.resnets if part == "resnets" else plan.attentions
        if kept is None:
            raise ModelLoadError(f"{student_key}: the plan has no attention in {kind}.{index}")
        return f"{kind}.{plan.teacher_index}.{part}.{kept[int(sub)]}.{rest}"
    m = _SAMPLER_KEY.match(student_key)
    if m:
        kind, index, rest = m.groups()
        plan = (layout.down if kind == "down_blocks" else layout.up)[int(index)]
        return f"{kind}.{plan.teacher_index}.{rest}"
    return student_key


def student_state_dict(teacher_state: dict[str, Any], layout: Layout, student_keys: list[str],
                       student_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Pick the teacher tensors the student keeps; refuse any shape that does not fit, saying which."""
    state = {}
    for key in student_keys:
        source = teacher_key(layout, key)
        if source not in teacher_state:
            raise UnsupportedError(f"student tensor {key} has no teacher counterpart {source}")
        tensor = teacher_state[source]
        if tuple(tensor.shape) != tuple(student_shapes[key]):
            raise UnsupportedError(
                f"{key} needs shape {tuple(student_shapes[key])} but the teacher's {source} is {tuple(tensor.shape)}: "
                "this removal changes the channels the surviving block sees (e.g. the first pair of a stage that "
                "widens the channels, or the mid block after dropping a stage of another width); remove a "
                "different depth, or also drop the mid block"
            )
        state[key] = tensor
    return state


def prune_unet(teacher: Any, spec: PruneSpec, random_weights: bool = False, seed: int = 0) -> Any:
    """Build the student UNet2DConditionModel; it keeps the teacher's weights unless `random_weights`."""
    from diffusers import UNet2DConditionModel

    layout = plan_layout(teacher.config, spec)
    config = pruned_config(teacher.config, spec)
    torch.manual_seed(seed)
    student = UNet2DConditionModel.from_config(config)
    if student.dtype != teacher.dtype:
        student = student.to(teacher.dtype)
    if random_weights:
        return student.eval()
    student_sd = student.state_dict()
    state = student_state_dict(
        teacher.state_dict(), layout, list(student_sd), {k: tuple(v.shape) for k, v in student_sd.items()}
    )
    student.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=True)
    return student.train(teacher.training)


def save_student(student: Any, output: Path, spec: PruneSpec, teacher_source: str, extra: dict[str, Any]) -> Path:
    """Write the pruned UNet as an ordinary diffusers folder (config.json + safetensors) plus a prune record."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(str(output), safe_serialization=True)
    record = {"teacher": teacher_source, "spec": spec.to_dict(), "removed": spec.describe(), **extra}
    (output / "edgediff_prune.json").write_text(json.dumps(record, indent=2) + "\n")
    return output


# ------------------------------------------------------------------------------------------ sub-network view


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


# ---------------------------------------------------------------------------------------- published configs


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


# ------------------------------------------------------------------------------------- removable units

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


# ------------------------------------------------------------------------------------- latency-driven search


@dataclass
class SearchStep:
    """One accepted move of the search, with the architecture's estimated latency and measured quality."""

    step: int
    action: str  # "start", "remove", "re-add", "swap"
    unit: list[str]
    removed: list[str]
    latency_ms: float
    quality: float
    score: float | None = None  # quality lost per millisecond saved (remove), or gained (re-add / swap)


@dataclass
class SearchResult:
    spec: PruneSpec
    trace: list[SearchStep]
    budget_ms: float
    reached: bool
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "removed": self.spec.describe(), "budget_ms": self.budget_ms,
                "reached": self.reached, "evaluations": self.evaluations,
                "trace": [asdict(s) for s in self.trace]}


def greedy_search(config: Any, units: list[PruneSpec], quality: Any, latency: Any, budget_ms: float,
                  swap_rounds: int = 1, progress: bool = True, allowed: Any = None) -> SearchResult:
    """SnapFusion-style architecture evolution on a fixed set of weights.

    Remove, one at a time, the unit with the least quality lost per millisecond saved (`quality(spec)`:
    higher is better; `latency(spec)`: estimated ms) until the estimate is within `budget_ms`. Then give
    back what the budget allows: re-add any removed unit whose return keeps the budget and raises quality,
    and try swaps (one removed unit back, one other out) that keep the budget and raise quality.
    `allowed(spec)` (optional) rules architectures out, e.g. `keeps_text_path`.
    """
    from tqdm.auto import tqdm

    cache: dict[PruneSpec, float] = {}

    def q(spec: PruneSpec) -> float:
        if spec not in cache:
            cache[spec] = float(quality(spec))
        return cache[spec]

    def build(chosen: list[PruneSpec]) -> PruneSpec | None:
        spec = PruneSpec()
        for unit in chosen:
            spec = spec.merged(unit)
        if spec_error(config, spec) is not None or (allowed is not None and not allowed(spec)):
            return None
        return spec

    chosen: list[PruneSpec] = []
    spec = PruneSpec()
    trace = [SearchStep(0, "start", [], [], latency(spec), q(spec))]
    bar = tqdm(desc="search", disable=not progress, unit="move")
    while latency(spec) > budget_ms:
        best = None
        for unit in units:
            if unit in chosen:
                continue
            candidate = build(chosen + [unit])
            if candidate is None or candidate == spec:
                continue
            saved = latency(spec) - latency(candidate)
            if saved <= 0:
                continue
            score = (q(spec) - q(candidate)) / saved
            if best is None or (score, -saved) < best[:2]:  # ties: the bigger saving (fewer removals)
                best = (score, -saved, unit, candidate)
        if best is None:
            break
        score, _, unit, spec = best
        chosen.append(unit)
        trace.append(SearchStep(len(trace), "remove", unit.describe(), spec.describe(), latency(spec), q(spec), score))
        bar.update(1)

    reached = latency(spec) <= budget_ms
    improved = reached
    while improved:
        improved = False
        best = None
        for unit in chosen:  # re-add: one removal undone, budget still met
            rest = [u for u in chosen if u != unit]
            candidate = build(rest)
            if candidate is not None and latency(candidate) <= budget_ms and q(candidate) > q(spec):
                if best is None or q(candidate) > best[0]:
                    best = (q(candidate), "re-add", unit, rest, candidate)
        if best is None and swap_rounds > 0:
            swap_rounds -= 1
            for back in chosen:
                for out in units:
                    if out in chosen:
                        continue
                    pick = [u for u in chosen if u != back] + [out]
                    candidate = build(pick)
                    if candidate is not None and latency(candidate) <= budget_ms and q(candidate) > q(spec):
                        if best is None or q(candidate) > best[0]:
                            best = (q(candidate), "swap", back, pick, candidate)
        if best is not None:
            gain, action, unit, chosen, new_spec = best
            trace.append(SearchStep(len(trace), action, unit.describe(), new_spec.describe(), latency(new_spec),
                                    gain, gain - q(spec)))
            spec, improved = new_spec, True
            bar.update(1)
    bar.close()
    return SearchResult(spec=spec, trace=trace, budget_ms=budget_ms, reached=reached, evaluations=len(cache))


def plot_search(result: SearchResult, path: Path, teacher_ms: float, quality_label: str) -> Path:
    """Quality against estimated UNet latency for every accepted move (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [s.latency_ms for s in result.trace]
    ys = [s.quality for s in result.trace]
    ax.plot(xs, ys, "-o", color="tab:blue", markersize=4)
    for s in result.trace:
        label = "teacher" if s.action == "start" else f"{s.step}: {s.action} " + ", ".join(s.unit)
        ax.annotate(label, (s.latency_ms, s.quality), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axvline(result.budget_ms, color="tab:red", linestyle="--",
               label=f"budget {result.budget_ms:.1f} ms ({result.budget_ms / teacher_ms:.2f} x teacher)")
    ax.set_xlabel("estimated UNet latency (ms)")
    ax.set_ylabel(quality_label)
    ax.set_title("latency-driven block removal")
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


class OutputDistance:
    """quality(spec) = 1 - MSE(sub-network, full UNet) / Var(full UNet) on a fixed evaluation batch.

    The batch: shapes-dataset latents through the model's VAE, noised at `timesteps`, with their captions
    (and the empty prompt, the unconditional half of guidance). 1.0 means the full UNet's predictions."""

    label = "output agreement with the full UNet (1 - MSE / variance)"

    def __init__(self, pipe: Any, samples: int = 16, timesteps: tuple[int, ...] = (100, 400, 700, 950), seed: int = 0):
        from edgediff.slim.distill import PromptEncoder, ShapesLatents

        self.unet = pipe.unet.eval()
        data = ShapesLatents(pipe.vae, dataset_seed=seed + 90_000, cache_size=samples)
        prompts = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        gen = torch.Generator().manual_seed(seed)
        alphas = pipe.scheduler.alphas_cumprod.float()
        batches = []
        for t in timesteps:
            noise = torch.randn(data.latents.shape, generator=gen)
            a = alphas[t]
            x_t = a.sqrt() * data.latents + (1 - a).sqrt() * noise
            text = prompts(data.captions, "cpu")
            empty = prompts.empty(len(data.captions), "cpu")
            batches.append((torch.cat([x_t, x_t]), torch.full((2 * len(x_t),), float(t)), torch.cat([empty, text])))
        self.batches = batches
        self.reference = [self._run(b) for b in batches]

    @torch.no_grad()
    def _run(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.unet(batch[0], batch[1], encoder_hidden_states=batch[2], return_dict=False)[0]

    def __call__(self, spec: PruneSpec) -> float:
        with subnet_view(self.unet, spec):
            outs = [self._run(b) for b in self.batches]
        err = sum(float(((o - r) ** 2).mean()) for o, r in zip(outs, self.reference))
        var = sum(float(r.var()) for r in self.reference)
        return 1.0 - err / var


class JudgeQuality:
    """quality(spec) = prompt accuracy (%) that the shapes judge reads from images the sub-network generates
    (fixed prompts and seeds from `edgediff.evaluate`, the model's own scheduler, steps and guidance)."""

    label = "prompt accuracy (%) read by the shapes judge"

    def __init__(self, pipe: Any, judge_dir: Path, prompts: int = 48, steps: int = 25, guidance: float = 4.0,
                 seed: int = 0):
        from edgediff.evaluate import EvalSettings, prompt_set
        from edgediff.runtime.pipeline import initial_noise
        from edgediff.shapes.judge import load_judge

        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self.judge = load_judge(judge_dir)
        self.settings = EvalSettings(steps=steps, guidance=guidance, prompts=prompts, seed=seed)
        self.pairs = prompt_set(self.settings)
        cfg = pipe.unet.config
        shape = (1, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        self.latents = torch.from_numpy(np.concatenate([initial_noise(s, shape) for _, s in self.pairs]))

    def images(self, spec: PruneSpec) -> np.ndarray:
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        with subnet_view(self.pipe.unet, spec), torch.inference_mode():
            out = self.pipe(prompt=[s.caption for s, _ in self.pairs], latents=self.latents.clone(),
                            num_inference_steps=self.settings.steps, guidance_scale=self.settings.guidance,
                            height=size, width=size, output_type="np")
        return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)

    def __call__(self, spec: PruneSpec) -> float:
        from edgediff.shapes.judge import predict
        from edgediff.shapes.metrics import prompt_accuracy

        preds, _ = predict(self.judge, self.images(spec))
        return 100.0 * float(prompt_accuracy(preds, [s for s, _ in self.pairs])["prompt_accuracy"])


@dataclass
class SearchSettings:
    """`edgediff prune MODEL --latency-budget RATIO --target NAME`."""

    model: Path  # diffusers pipeline folder (ideally robust-trained: `edgediff prune MODEL --robust`)
    output: Path  # where the pruned UNet folder goes; the search record goes to output/search/
    latency_budget: float  # target UNet latency as a fraction of the full UNet's (0.66 = 1.5x faster)
    target: str = "host-cpu"
    latency_table: Path | None = None  # a saved table instead of measuring
    latency_engine: str = "backend"  # or "pytorch"
    quality: str = "auto"  # "judge", "output" or "auto" (judge when one is found)
    judge: Path | None = None
    search_prompts: int | None = None  # per candidate: judged prompts (default 48) or distance samples (16)
    search_steps: int | None = None  # default: the model's edgediff.json steps, else 25
    batched_cfg: bool = True
    swap_rounds: int = 1
    seed: int = 0
    latency_method: str = "ablation"  # or "blocks" (per-block figures; see latency_table)
    clock: str = "cpu"  # "cpu": process CPU time, robust to other processes' load; "wall" on an idle device
    threads: int = 1  # runtime threads while timing
    keep_text_path: bool = True  # never remove every cross-attention

    def __post_init__(self) -> None:
        self.model, self.output = Path(self.model), Path(self.output)
        if not 0.0 < self.latency_budget < 1.0:
            raise RecipeError(f"--latency-budget is the pruned UNet's latency as a fraction of the teacher's, in (0, 1); "
                              f"got {self.latency_budget} (0.66 asks for 1.5x faster)")
        if self.quality not in ("auto", "judge", "output"):
            raise RecipeError(f"quality must be auto, judge or output, got {self.quality!r}")


def run_search(settings: SearchSettings, progress: bool = True) -> tuple[SearchResult, Any, dict[str, Any]]:
    """Measure (or load) the latency table, search, save the trace, plot and the pruned UNet folder."""
    from edgediff.slim import latency_table as lt
    from edgediff.slim.distill import load_teacher, read_model_defaults

    pipe = load_teacher(settings.model)
    unet = pipe.unet.eval()
    config = dict(unet.config)
    defaults = read_model_defaults(settings.model)
    record_dir = settings.output / "search"
    record_dir.mkdir(parents=True, exist_ok=True)
    if settings.latency_table is not None:
        table = lt.LatencyTable.load(settings.latency_table)
    else:
        batch = 2 if defaults.get("batched_cfg", settings.batched_cfg) else 1
        args = lt.example_unet_args(unet, batch=batch, text_length=pipe.tokenizer.model_max_length, seed=settings.seed)
        table = lt.measure_table(unet, args, target=settings.target, engine=settings.latency_engine,
                                 work_dir=record_dir / "blocks", progress=progress, method=settings.latency_method,
                                 units=removal_units(config), clock=settings.clock, threads=settings.threads)
    table.save(record_dir / "latency_table.json")

    quality: Any
    judge_dir = None
    if settings.quality in ("auto", "judge"):
        from edgediff.errors import ModelLoadError as _Missing

        try:
            from edgediff.evaluate import find_judge

            judge_dir = find_judge(settings.model, settings.judge)
        except (_Missing, ImportError):
            if settings.quality == "judge":
                raise
    if judge_dir is not None:
        steps = settings.search_steps or int(defaults.get("steps", 25))
        quality = JudgeQuality(pipe, judge_dir, prompts=settings.search_prompts or 48, steps=steps,
                               guidance=float(defaults.get("guidance", 4.0)), seed=settings.seed)
    else:
        quality = OutputDistance(pipe, samples=settings.search_prompts or 16, seed=settings.seed)

    units = removal_units(config, inner_stage=table.method == "ablation")  # block figures cannot price a stage
    budget_ms = settings.latency_budget * float(table.unet_ms)
    allowed = (lambda spec: keeps_text_path(config, spec)) if settings.keep_text_path else None
    result = greedy_search(config, units, quality, lambda s: table.estimate_ms(config, s), budget_ms,
                           swap_rounds=settings.swap_rounds, progress=progress, allowed=allowed)
    record = {
        "model": str(settings.model), "target": settings.target, "latency_budget": settings.latency_budget,
        "teacher_unet_ms": table.unet_ms, "table_coverage": table.coverage, "backend": table.backend,
        "table_method": table.method, "clock": table.clock, "threads": table.threads,
        "table_load_average": table.load_average, "keep_text_path": settings.keep_text_path,
        "quality": quality.label, "judge": str(judge_dir) if judge_dir else None,
        "units": [u.describe() for u in units], **result.to_dict(),
    }
    (record_dir / "trace.json").write_text(json.dumps(record, indent=1) + "\n")
    plot_search(result, record_dir / "quality_latency.png", float(table.unet_ms), quality.label)
    student = prune_unet(unet, result.spec)
    save_student(student, settings.output, result.spec, str(settings.model),
                 {"search": str(record_dir / "trace.json"),
                  "estimated_ms": result.trace[-1].latency_ms, "teacher_ms": table.unet_ms})
    return result, table, record


# ------------------------------------------------------------------------------------------- recipe step


def prune_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `prune`: `preset = "bk-small"` or `spec = {...}` (surgery, teacher's weights), or
    `folder = "path"` (a UNet folder made by `edgediff prune`, e.g. searched and recovered). The model's UNet
    is replaced and the components rebuilt at the same shapes."""
    from edgediff.model.components import ComponentShapes, build_components, vae_scale_factor

    known = {"preset", "spec", "folder"}
    unknown = sorted(set(options) - known)
    if unknown or len(set(options) & known) != 1:
        raise RecipeError(f"the prune step takes exactly one of {sorted(known)}"
                          + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if getattr(model, "unet", None) is None:
        raise RecipeError("the prune step needs a model with a UNet2DConditionModel")
    if "folder" in options:
        from edgediff.model.load import load_model

        folder = Path(options["folder"])
        if (folder / "model_index.json").is_file():
            folder = folder / "unet"
        model.unet = load_model(str(folder)).unet
    else:
        spec = (preset_spec(model.unet.config, options["preset"]) if "preset" in options
                else PruneSpec.from_dict(dict(options["spec"])))
        model.unet = prune_unet(model.unet, spec).eval().requires_grad_(False)
    unet = next((c for c in components if c.name == "unet"), None)
    if unet is None:
        return components
    text = next((c for c in components if c.name == "text_encoder"), None)
    batch, _, h, w = unet.inputs[0].shape
    scale = vae_scale_factor(model.vae)
    shapes = ComponentShapes(h * scale, w * scale, batched_cfg=batch == 2,
                             text_length=text.inputs[0].shape[1] if text is not None else unet.inputs[2].shape[1])
    return build_components(model, [c.name for c in components], shapes)
