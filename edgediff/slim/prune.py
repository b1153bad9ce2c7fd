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


def removal_units(config: Any) -> list[PruneSpec]:
    """Every smallest removal that still gives a valid diffusers UNet: one pair from a down stage together
    with one from its mirror up block (each valid depth combination), one stage's attention (down or up),
    and the mid block. These are what robust training skips at random and what the search removes."""
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
    return [c for c in candidates if spec_error(cfg, c) is None]


def combine_units(config: Any, base: PruneSpec, units: list[PruneSpec]) -> PruneSpec:
    """Add units to `base` one by one, skipping any that would make the spec invalid."""
    spec = base
    for unit in units:
        merged = spec.merged(unit)
        if merged != spec and spec_error(config, merged) is None:
            spec = merged
    return spec
