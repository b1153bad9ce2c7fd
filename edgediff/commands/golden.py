"""`edgediff bundle-golden`: reference tensors for the iOS / Android apps' self-tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgediff.commands.generate import add_sampling_args
from edgediff.runtime import BundlePipeline
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
    pipe = BundlePipeline.load(args.bundle, backend=args.backend)
    out = args.output or pipe.manifest.root / "golden"
    path = write_golden(pipe, out, prompt=args.prompt, seed=args.seed, steps=args.steps, guidance=args.guidance,
                        negative_prompt=args.negative_prompt)
    print(f"wrote {path} ({len(list((out / 'tensors').iterdir()))} tensors, image {out / 'image.png'})", file=sys.stderr)
    return 0
