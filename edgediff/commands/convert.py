"""`edgediff convert`: every stage, from a model folder to a verified, profiled bundle."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgediff.backends.base import BACKEND_MODULES
from edgediff.contract import MANIFEST_FILE, read_strict_json
from edgediff.errors import RecipeError
from edgediff.model.folder import check_model_folder
from edgediff.model.lora import parse_lora_argument
from edgediff.orchestrator import convert
from edgediff.outputs import MIN_FREE_BYTES, check_output, clean_leftovers
from edgediff.plan import resolve, resolve_recipe
from edgediff.profile.record import read_records
from edgediff.recipe import LoraEntry, check_recipe, load_recipe, set_field, to_toml
from edgediff.report import HEADERS, component_rows, text_table


def register(sub) -> None:
    p = sub.add_parser("convert", help="load, slim, lower, verify, profile and bundle a model",
                       description="Convert MODEL (a path, a name under models/, or the embedded default) "
                                   "into DIR/<backend>/ with manifest.json and report.md.")
    p.add_argument("model", nargs="?", default=None,
                   help="model folder, name under models/, or single-file checkpoint (.safetensors / .ckpt of "
                        "SD 1.x / 2.x) (default: shapes-sd)")
    add_recipe_arguments(p)
    p.add_argument("--output", "-o", type=Path, default=None, help="output folder (default: out/<model name>)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and do nothing else")
    p.set_defaults(func=run)


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", type=Path, help="recipe TOML file (CLI flags override its fields)")
    p.add_argument("--target", help="backend or device target name (onnxruntime, litert, coreml, or targets/NAME)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    p.add_argument("--random-weights", action="store_true",
                   help="build a folder that has configs but no weights with seeded random weights")
    p.add_argument("--module", help="custom network class 'package.module:Class' (with --weights)")
    p.add_argument("--weights", help="weights file of the custom network")
    p.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                   help="fuse a LoRA (kohya / A1111 / ComfyUI or diffusers / PEFT file) into the text encoder and "
                        "UNet at STRENGTH (default 1); repeatable; replaces the recipe's [[model.loras]]")
    p.add_argument("--controlnet", metavar="FOLDER",
                   help="a diffusers ControlNetModel folder of the model's family: adds the controlnet component "
                        "and residual inputs to the unet (generate --control-image)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--size", action="append", default=[], metavar="WIDTHxHEIGHT",
                   help="a size the bundle makes, e.g. 512x768 (width x height); repeatable: the first is the "
                        "default, generate --height --width picks one; replaces the recipe's pipeline.sizes")
    p.add_argument("--components", help="comma-separated: text_encoder,unet,vae_decoder,vae_encoder")
    p.add_argument("--no-profile", action="store_true", help="skip host profiling")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any recipe field, e.g. --set verify.samples=5 (repeatable)")


def recipe_from_args(args: argparse.Namespace):
    """The recipe file with CLI flags applied on top; every flag maps to one recipe field."""
    recipe = load_recipe(args.recipe)
    if args.model:
        recipe.model.source = args.model
    if args.random_weights:
        recipe.model.random_weights = True
    if args.module:
        recipe.model.module = args.module
    if args.weights:
        recipe.model.weights = args.weights
    if args.lora:
        recipe.model.loras = [LoraEntry(*parse_lora_argument(item)) for item in args.lora]
    if getattr(args, "controlnet", None):
        recipe.model.controlnet = args.controlnet
    if args.target:
        if args.target in BACKEND_MODULES:
            recipe.backend.name = args.target
        else:
            recipe.backend.target = args.target
    if args.precision:
        recipe.backend.precision = args.precision
    if args.height:
        recipe.pipeline.height = args.height
    if args.width:
        recipe.pipeline.width = args.width
    if getattr(args, "size", None):
        recipe.pipeline.sizes = list(args.size)
    if args.components:
        recipe.pipeline.components = [c.strip() for c in args.components.split(",") if c.strip()]
    if args.no_profile:
        recipe.profile.enabled = False
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise RecipeError(f"--set expects SECTION.KEY=VALUE, got '{item}'")
        set_field(recipe, key.strip(), value.strip())
    try:
        return check_recipe(recipe)
    except RecipeError as exc:
        source = f"--recipe {args.recipe}, the flags and --set" if args.recipe else "the flags and --set"
        raise RecipeError(f"{exc} (from {source})") from None


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    resolved = resolve_recipe(recipe)  # every value and model file checked here, before torch is imported
    if args.dry_run:  # exactly what would run, every default and added step resolved (= the bundle's recipe.toml)
        print(to_toml(resolved), end="")
        return 0
    source = Path(resolved.model.source) if resolved.model.source else None
    if source is None:  # a custom network named on the command line
        name, need = resolved.model.module.split(":")[-1].lower(), MIN_FREE_BYTES
    elif source.is_file():  # a single checkpoint file
        name, need = source.stem, 2 * source.stat().st_size + MIN_FREE_BYTES
    else:
        name, need = source.name, check_model_folder(source).output_bytes_estimate()
    output = args.output or Path("out") / name
    check_output(output, "folder", need_bytes=need)
    clean_leftovers(Path(output) / resolved.backend.name)  # a killed run's staging folder, reported on stderr
    start = time.perf_counter()
    plan = resolve(recipe)
    if plan.model.random_weights:
        print(f"note: {plan.model.source} uses seeded random weights (architecture test; images will be noise)",
              file=sys.stderr)
    final = convert(plan, output, log=lambda m: print(m, file=sys.stderr))
    manifest = read_strict_json(final / MANIFEST_FILE)
    records = read_records(final / "profile.json") if (final / "profile.json").exists() else []
    print(text_table(HEADERS, component_rows(manifest, records)))
    e2e = manifest.get("verify", {}).get("end_to_end", {})
    if e2e.get("status") in ("passed", "failed"):
        psnr = e2e["psnr_db"] if e2e.get("psnr_db") is not None else "inf (identical images)"
        print(f"end to end: image PSNR {psnr} dB vs PyTorch ({e2e['status']})")
    elif e2e:
        print(f"end to end: skipped ({e2e.get('reason')})")
    print(f"wrote {final} in {time.perf_counter() - start:.0f} s (report: {final / 'report.md'})")
    return 0
