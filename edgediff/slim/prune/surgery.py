"""Building the pruned student: teacher-to-student tensor names, the weight copy, and the saved folder.

Separate from the view: surgery makes a new model with copied weights, the view borrows the teacher's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from edgediff.errors import ModelLoadError, UnsupportedError
from edgediff.slim.prune.layout import Layout, plan_layout, pruned_config
from edgediff.slim.prune.spec import PruneSpec

# diffusers is imported inside the functions that build models: it costs seconds and prints warnings on
# import, and this package is imported by every recipe run (edgediff.slim.steps registers the `prune` step).

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
