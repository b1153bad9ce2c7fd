"""`edgediff generate`: text to image from a converted bundle with the torch-free runtime."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from edgediff.commands import _flags
from edgediff.errors import RecipeError
from edgediff.outputs import atomic_file, check_output
from edgediff.runtime import BundlePipeline, SessionOptions, control
from edgediff.runtime.images import ImageInputs
from edgediff.runtime.schedulers import resolve_class_name
from edgediff.runtime.sizes import use_size


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="make an image from a bundle (no PyTorch needed)",
        description="Run a converted bundle end to end (tokenizer, text encoder, UNet loop, VAE decoder) with numpy "
        "and the bundle's runtime. Seeds draw the initial latent with numpy: np.random.default_rng(SEED).",
    )
    p.add_argument("bundle", type=Path, help="bundle folder (DIR/<backend>/ with manifest.json, or DIR with one backend)")
    p.add_argument("--prompt", "-p", help="text prompt")
    p.add_argument("--prompts-file", type=Path, help="batch mode: one prompt per line (blank lines and # comments skipped)")
    p.add_argument("--output", "-o", type=Path, help="image file (single prompt) or folder (batch; default: images/)")
    add_sampling_args(p, seed_help="seed of the initial noise (batch: prompt i uses SEED + i)")
    p.add_argument("--scheduler", help="override the scheduler: ddim, euler, euler_a, heun, dpm++2m, unipc, deis, tcd, lcm, "
                   "pndm or a diffusers class name (these run with the bundle's scheduler config), or a preset that also "
                   "sets config keys: euler-karras, heun-karras, dpm++2m-karras, dpm++2m-sde, dpm++2m-sde-karras, "
                   "unipc-karras")
    p.add_argument("--image", type=Path, help="image-to-image: start from this picture (the bundle's exact size; "
                   "RGB, greyscale or opaque RGBA); with --mask, inpainting")
    p.add_argument("--mask", type=Path, help="inpainting: white repaints, black keeps (the image's size)")
    p.add_argument("--strength", type=_flags.strength, help="how far from --image to go, in (0, 1] (default 0.8, "
                   "inpainting 1)")
    p.add_argument("--height", type=_flags.int_in(8, 8192, "a height in pixels"), help="image height: one the "
                   "bundle was converted for (default: the bundle's)")
    p.add_argument("--width", type=_flags.int_in(8, 8192, "a width in pixels"), help="image width (see --height)")
    p.add_argument("--threads", type=_flags.threads, help="intra-op threads for the runtime")
    p.add_argument("--providers", help="onnxruntime providers, comma-separated (default: the best available)")
    p.add_argument("--timings-json", type=Path, help="write per-stage timings of every image to this JSON file")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_control_args(p)
    p.set_defaults(func=run)


def add_control_args(p: argparse.ArgumentParser) -> None:
    """ControlNet bundles (convert --controlnet): the control image and how its hint is made."""
    p.add_argument("--control-image", type=Path, help="control image of the bundle's size (ControlNet bundles)")
    p.add_argument("--control-kind", choices=control.KINDS, default="raw",
                   help="raw: the image is the hint (an edge / pose / scribble map); canny: extract canny edges "
                        "from a photo; depth: a grayscale depth map (8 or 16 bit, near = bright) (default: raw)")
    p.add_argument("--control-scale", type=_flags._float_in(0.0, control.MAX_SCALE, "a finite control scale "
                   f"between 0 and {control.MAX_SCALE:g}"), default=1.0,
                   help="ControlNet conditioning scale (default 1.0)")
    p.add_argument("--canny-low", type=_flags._float_in(0.0, 1e4, "a finite threshold >= 0"), default=100.0,
                   help="canny: low hysteresis threshold (default 100, as cv2.Canny in the ControlNet examples)")
    p.add_argument("--canny-high", type=_flags._float_in(0.0, 1e4, "a finite threshold >= 0"), default=200.0,
                   help="canny: high hysteresis threshold (default 200)")


def control_input(args: argparse.Namespace, pipe: BundlePipeline) -> control.ControlInput | None:
    """The prepared control image, or None; a control image for a bundle without ControlNet is an error."""
    if args.control_image is None:
        return None
    if pipe.control is None:
        raise RecipeError(f"--control-image: bundle {pipe.manifest.root} has no ControlNet; convert the model with "
                          "--controlnet FOLDER")
    height, width = pipe.control.image_size
    if height is None or width is None:
        raise RecipeError("--control-image: the bundle's ControlNet has no fixed image size")
    return control.read_control(args.control_image, args.control_kind, height, width, args.control_scale,
                                args.canny_low, args.canny_high)


def add_sampling_args(p: argparse.ArgumentParser, seed_help: str = "seed of the initial noise") -> None:
    """The options every command that runs a bundle shares (generate, bundle-golden)."""
    p.add_argument("--negative-prompt", default="", help="negative prompt (default: empty)")
    p.add_argument("--seed", type=_flags.seed, default=0, help=seed_help)
    p.add_argument("--steps", type=_flags.steps, help="denoising steps (default: the manifest's)")
    p.add_argument("--guidance", type=_flags.guidance, help="classifier-free guidance scale (default: the manifest's)")
    p.add_argument("--backend", help="pick one backend when BUNDLE holds several")
    _flags.add_checksum_flag(p)


def read_prompts(path: Path) -> list[str]:
    """Non-empty lines that are not # comments."""
    if not path.is_file():
        raise RecipeError(f"prompts file {path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"prompts file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start})") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise RecipeError(f"{path} holds no prompts (one per line; lines starting with # are skipped)")
    return prompts


def _jobs(args: argparse.Namespace) -> list[tuple[str, int, Path]]:
    if bool(args.prompt) == bool(args.prompts_file):
        raise RecipeError("give exactly one of --prompt TEXT or --prompts-file FILE")
    if args.prompt:
        output = args.output or Path("image.png")
        if output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            raise RecipeError(f"--output {output} needs an image extension (.png, .jpg, ...)")
        check_output(output, "file")
        return [(args.prompt, args.seed, output)]
    folder = args.output or Path("images")
    if folder.suffix:
        raise RecipeError(f"in batch mode --output is a folder, got {folder}")
    check_output(folder, "folder")
    prompts = read_prompts(args.prompts_file)
    if args.seed + len(prompts) - 1 > _flags.MAX_SEED:
        raise RecipeError(f"--seed {args.seed} + {len(prompts)} prompts passes the largest seed {_flags.MAX_SEED}")
    return [(p, args.seed + i, folder / f"{i:04d}.png") for i, p in enumerate(prompts)]


def run(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    if args.timings_json:
        check_output(args.timings_json, "file", flag="--timings-json")
    if args.scheduler:
        resolve_class_name(args.scheduler)  # fail before loading the bundle
    if (args.mask or args.strength is not None) and not args.image:
        raise RecipeError("--mask and --strength need --image")
    if args.control_image is not None:
        control.open_image(args.control_image)  # fail before loading the bundle
    options = SessionOptions(
        threads=args.threads,
        providers=[p.strip() for p in args.providers.split(",")] if args.providers else None,
    )
    pipe = BundlePipeline.load(args.bundle, backend=args.backend, options=options,
                               verify_checksums=_flags.checksums_wanted(args))
    hint = control_input(args, pipe)  # the control image checked against the bundle before any work
    print(
        f"loaded {pipe.manifest.backend} bundle {pipe.manifest.root} ({pipe.manifest.precision}) in {pipe.load_ms:.0f} ms",
        file=sys.stderr,
    )
    use_size(pipe, args.height, args.width)  # refuses a size the bundle lacks, listing its sizes; else uses it
    images = ImageInputs.from_files(pipe, args.image, args.mask, args.strength) if args.image else None
    records = []
    for prompt, seed, output in jobs:
        result = pipe.generate(
            prompt, seed=seed, steps=args.steps, guidance=args.guidance, negative_prompt=args.negative_prompt,
            scheduler=args.scheduler, progress=not args.quiet, images=images,
            control=hint,
        )
        with atomic_file(output) as tmp:  # a killed run leaves no truncated image under the real name
            Image.fromarray(result.image).save(tmp, format=Image.registered_extensions()[output.suffix.lower()])
        print(f"{output}: {prompt!r} seed {seed}, {result.steps} steps ({result.scheduler}), guidance {result.guidance}")
        print(f"  {result.timings.describe()}")
        records.append(
            {"prompt": prompt, "seed": seed, "output": str(output), "steps": result.steps, "guidance": result.guidance,
             "scheduler": result.scheduler, "unet_step_ms": [round(v, 3) for v in result.timings.unet_step_ms],
             **result.timings.summary()}
        )
    if args.timings_json:
        with atomic_file(args.timings_json) as tmp:
            tmp.write_text(json.dumps(records, indent=2) + "\n")
    return 0
