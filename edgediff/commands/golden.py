"""`edgediff bundle-golden`: reference tensors for the iOS / Android apps' self-tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgediff.commands import _flags
from edgediff.commands.generate import add_sampling_args
from edgediff.contract import Manifest
from edgediff.errors import ModelLoadError
from edgediff.outputs import check_output, staged_output
from edgediff.runtime import BundlePipeline, SessionOptions
from edgediff.runtime.golden import DEFAULT_PROMPT, write_golden


def register(sub) -> None:
    p = sub.add_parser(
        "bundle-golden",
        help="write golden files (token ids, scheduler tables, intermediate tensors) for the apps",
        description="Run BUNDLE once for a fixed prompt and seed with the torch-free runtime and write token ids, "
        "the scheduler tables and the tensors at each stage into OUTPUT (default: BUNDLE/golden).",
    )
    p.add_argument("bundle", type=Path, help="bundle folder with manifest.json")
    p.add_argument("--output", "-o", type=Path, help="golden folder (default: BUNDLE/golden)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"prompt (default: {DEFAULT_PROMPT!r})")
    add_sampling_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.output is not None:
        check_output(args.output, "folder")
    manifest = Manifest.read(args.bundle, backend=args.backend, verify_checksums=_flags.checksums_wanted(args))
    out = args.output or manifest.root / "golden"
    if args.output is None and out.is_symlink():  # the default is inside the bundle, and writes stay there
        raise ModelLoadError(f"{out} is a symlink; bundle-golden does not write through links in a bundle: remove "
                             "it or pass --output")
    check_output(out, "folder")
    pipe = BundlePipeline.for_manifest(manifest, SessionOptions())
    with staged_output(out) as staging:  # a killed run leaves no golden folder that looks complete
        write_golden(pipe, staging, prompt=args.prompt, seed=args.seed, steps=args.steps, guidance=args.guidance,
                     negative_prompt=args.negative_prompt)
    print(f"wrote {out / 'golden.json'} ({len(list((out / 'tensors').iterdir()))} tensors, image "
          f"{out / 'image.png'})", file=sys.stderr)
    return 0
