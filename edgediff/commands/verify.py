"""`edgediff verify BUNDLE`: re-check an output folder against its source; non-zero exit on any failure."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-check a bundle against its PyTorch source",
                       description="Re-runs every artifact of BUNDLE against the PyTorch components rebuilt from "
                                   "the bundle's recipe.toml; exits 1 naming each failing component.")
    p.add_argument("bundle", type=Path)
    p.add_argument("--samples", type=int, help="seeded inputs per component (default: the recipe's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgediff import pipeline, verify
    from edgediff.bundle import artifact_from_entry, check_files, read_manifest
    from edgediff.recipe import load_recipe
    from edgediff.report import text_table

    manifest = read_manifest(args.bundle)
    check_files(args.bundle, manifest)
    recipe = load_recipe(args.bundle / "recipe.toml")
    if args.samples:
        recipe.verify.samples = args.samples
    plan = pipeline.resolve(recipe)
    artifacts = {name: artifact_from_entry(args.bundle, name, entry) for name, entry in manifest["components"].items()}
    plan.components = [c for c in plan.components if c.name in artifacts]
    results = pipeline.verify_artifacts(plan, artifacts)
    rows = [[r.component, r.status, f"{r.metrics.psnr_db:.1f}" if r.metrics else "–",
             f"{r.metrics.cosine:.6f}" if r.metrics else "–", r.reason] for r in results]
    print(text_table(["component", "status", "PSNR dB", "cosine", "note"], rows))
    verify.gate(results, plan.limits)
    print(f"{args.bundle}: all {len(results)} components match their PyTorch source"
          if all(r.status == "passed" for r in results) else f"{args.bundle}: no failures (some checks skipped)")
    return 0
