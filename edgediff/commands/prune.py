"""`edgediff prune`: remove UNet blocks (BK-SDM presets or an explicit spec) and write a diffusers UNet folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.errors import ModelLoadError, RecipeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove UNet blocks (BK-SDM presets or an explicit spec); writes a diffusers UNet folder",
        description=(
            "Remove ResNet/attention pairs, attention, the mid block or inner stages from a UNet2DConditionModel. "
            "The student keeps the teacher's weights for what remains and is written as an ordinary diffusers "
            "UNet folder (config.json + diffusion_pytorch_model.safetensors)."
        ),
    )
    parser.add_argument("model", nargs="?", default=None,
                        help="diffusers pipeline folder, its unet/ folder, or a name under models/ (default model)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", choices=["bk-base", "bk-small", "bk-tiny"],
                      help="BK-SDM architecture: base (one pair less per stage), small (+ no mid block), "
                           "tiny (+ no innermost stage)")
    what.add_argument("--spec", type=Path,
                      help="JSON file with a PruneSpec: remove_down, remove_up, drop_attention_down, "
                           "drop_attention_up, drop_mid, drop_inner_stages")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the pruned UNet")
    parser.add_argument("--random-weights", action="store_true",
                        help="build the pruned architecture with seeded random weights (no teacher weights needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    parser.set_defaults(func=run)


def unet_folder(model: str | None) -> Path:
    """The folder holding the UNet's config.json: MODEL itself or MODEL/unet."""
    from edgediff.model.load import resolve_model_path

    path = resolve_model_path(model)
    for folder in (path / "unet", path):
        config = folder / "config.json"
        if config.exists() and json.loads(config.read_text()).get("_class_name") == "UNet2DConditionModel":
            return folder
    raise ModelLoadError(
        f"{path} holds no UNet2DConditionModel (looked for {path}/unet/config.json and {path}/config.json)"
    )


def read_spec(path: Path):
    from edgediff.slim.prune import PruneSpec

    try:
        return PruneSpec.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise RecipeError(f"spec file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def run(args: argparse.Namespace) -> int:
    from edgediff.slim import prune

    folder = unet_folder(args.model)
    config = json.loads((folder / "config.json").read_text())
    spec = prune.preset_spec(config, args.preset) if args.preset else read_spec(args.spec)
    student_config = prune.pruned_config(config, spec)
    teacher_params = prune.parameter_count(config)

    if args.random_weights:
        import torch
        from diffusers import UNet2DConditionModel

        torch.manual_seed(args.seed)
        student = UNet2DConditionModel.from_config(student_config)
    else:
        from edgediff.model.load import load_model_folder

        teacher = load_model_folder(folder).unet
        student = prune.prune_unet(teacher, spec)
        del teacher
    student_params = sum(p.numel() for p in student.parameters())
    prune.save_student(
        student.eval(), args.output, spec, str(folder),
        {"preset": args.preset, "random_weights": bool(args.random_weights),
         "teacher_parameters": teacher_params, "student_parameters": student_params},
    )
    print(f"teacher {folder}: {teacher_params:,} parameters")
    for line in spec.describe():
        print(f"  removed {line}")
    print(f"student: {student_params:,} parameters ({student_params / teacher_params:.1%} of the teacher)"
          f"{' with random weights' if args.random_weights else ''}")
    print(f"wrote {args.output}")
    return 0
