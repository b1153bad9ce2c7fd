"""`edgediff eval`: prompt accuracy and Frechet distance of a diffusers folder or a bundle on the shapes task."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.commands import _flags


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgediff.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS

    p = subparsers.add_parser(
        "eval",
        help="prompt accuracy + Frechet distance (shapes judge) of a model folder or bundle",
        description="Generates a fixed, seeded prompt set from the shapes dataset and reads every image back "
        "with the shapes judge. A folder with manifest.json runs through the edgediff runtime; any other "
        "folder is loaded as a diffusers StableDiffusionPipeline and run in PyTorch.",
    )
    p.add_argument("model", nargs="?", default=None, help="diffusers folder or bundle folder (default: models/shapes-sd)")
    p.add_argument("--steps", type=_flags.steps, default=None,
                   help=f"denoising steps (default: the model's edgediff.json or bundle manifest, else {DEFAULT_STEPS})")
    p.add_argument("--guidance", type=_flags.guidance, default=None,
                   help=f"guidance scale (default: the model's edgediff.json or bundle manifest, else {DEFAULT_GUIDANCE})")
    p.add_argument("--prompts", type=_flags.int_in(2, 100_000, "a number of prompts between 2 and 100000"),
                   default=200, help="prompt/seed pairs (default: %(default)s)")
    p.add_argument("--seed", type=_flags.int_in(0, 2**31 - 1, "a seed between 0 and 2147483647"), default=0,
                   help="selects the prompt set and image seeds (default: %(default)s)")
    p.add_argument("--judge", type=Path, default=None, help="judge folder (default: MODEL/judge, else models/shapes-sd/judge)")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    p.add_argument("--threads", type=_flags.threads, default=1,
                   help="torch CPU threads for the diffusers path (default: %(default)s; tiny models run best on one)")
    p.add_argument("--grid", type=Path, default=None, help="also save the first 32 generated images as a PNG grid")
    _flags.add_checksum_flag(p)
    p.set_defaults(func=run)


def model_defaults(model: Path) -> tuple[int, float]:
    """Steps and guidance the model asks for: a bundle's manifest, else the folder's edgediff.json
    (e.g. a distilled 4-step student), else the evaluation defaults."""
    from edgediff.contract import Manifest
    from edgediff.evaluate import DEFAULT_GUIDANCE, DEFAULT_STEPS
    from edgediff.model.folder import check_model_folder
    from edgediff.runtime.pipeline import check_pipeline_section

    if (model / "manifest.json").is_file():  # the one manifest reader; the runtime checks the sha256 when it loads
        pipe = check_pipeline_section(Manifest.read(model, verify_checksums=False))
        return (int(pipe["scheduler"].get("num_inference_steps") or DEFAULT_STEPS),
                float(pipe.get("guidance", {}).get("scale", DEFAULT_GUIDANCE)))
    # every config, checked before diffusers is handed the folder (it would import the libraries it names)
    defaults = check_model_folder(model).configs.get("edgediff", {})
    return int(defaults.get("steps", DEFAULT_STEPS)), float(defaults.get("guidance", DEFAULT_GUIDANCE))


def run(args: argparse.Namespace) -> int:
    from edgediff.errors import ModelLoadError
    from edgediff.evaluate import DEFAULT_MODEL, EvalSettings, evaluate, image_grid, write_json
    from edgediff.outputs import check_output

    model = Path(args.model) if args.model else DEFAULT_MODEL
    if not model.is_dir():
        raise ModelLoadError(f"{model} is not a folder; pass a diffusers model folder or a bundle folder")
    for flag, path in (("--json", args.json), ("--grid", args.grid)):
        if path is not None:
            check_output(path, "file", flag=flag)
    steps, guidance = model_defaults(model)
    if args.threads >= 1:
        import torch

        torch.set_num_threads(args.threads)
    settings = EvalSettings(steps=args.steps if args.steps is not None else steps,
                            guidance=args.guidance if args.guidance is not None else guidance,
                            prompts=args.prompts, seed=args.seed)
    result, images = evaluate(model, settings, judge_dir=args.judge, keep_images=args.grid is not None,
                              verify_checksums=_flags.checksums_wanted(args) if (model / "manifest.json").is_file()
                              else True)
    print(f"model:             {result.model} ({result.kind}, {result.scheduler})")
    print(f"settings:          steps={settings.steps} guidance={settings.guidance} prompts={settings.prompts} seed={settings.seed}")
    print(f"prompt_accuracy:   {result.prompt_accuracy:.4f}  (shape, shape colour and background colour all match)")
    print(f"frechet_distance:  {result.frechet_distance:.4f}  (judge feature space, vs real renders)")
    print("per attribute:     " + ", ".join(f"{k.removesuffix('_accuracy')} {v:.3f}" for k, v in result.attributes.items()))
    print(f"time:              {result.seconds:.1f} s")
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.grid is not None and images is not None:
        from PIL import Image

        args.grid.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_grid(images[:32], columns=8)).save(args.grid)
        print(f"wrote {args.grid}")
    else:
        print(json.dumps({"prompt_accuracy": result.prompt_accuracy, "frechet_distance": result.frechet_distance}))
    return 0
