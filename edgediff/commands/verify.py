"""`edgediff verify BUNDLE`: re-check a bundle against its source; exit 1 on any failure."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgediff import verify
from edgediff.commands import _flags
from edgediff.contract import Manifest, inside
from edgediff.errors import RecipeError
from edgediff.model.sizes import at_size, size_name
from edgediff.phases import release_weights
from edgediff.plan import resolve
from edgediff.recipe import load_recipe
from edgediff.report import text_table
from edgediff.verify_sizes import several_sizes


def register(sub) -> None:
    p = sub.add_parser("verify", help="re-check a bundle against its PyTorch source",
                       description="Re-runs every artifact of BUNDLE (through the runtime's sessions, as generate "
                                   "and the apps run it) against the PyTorch components rebuilt from the bundle's "
                                   "recipe.toml; exits 1 naming each failing component.")
    p.add_argument("bundle", type=Path)
    p.add_argument("--samples", type=_flags.runs, help="seeded inputs per component (default: the recipe's)")
    p.add_argument("--module", help="the custom network class 'package.module:Class' a bundle of a custom network "
                                    "was made from: a bundle never names code to import, you do")
    _flags.add_checksum_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    manifest = Manifest.read(args.bundle, verify_checksums=_flags.checksums_wanted(args))  # inside, sizes, sha256
    recipe = load_recipe(inside(manifest.root, "recipe.toml", "recipe.toml"))  # checked by `read` via `files`
    if recipe.model.module and recipe.model.module != args.module:
        raise RecipeError(f"{args.bundle} was made from a custom network; a bundle cannot name code to run, so "
                          f"name it yourself if you trust it: --module {recipe.model.module!r}")
    if args.samples:
        recipe.verify.samples = args.samples
    plan = resolve(recipe)
    components = [c for c in plan.components if c.name in manifest.components]
    backend = plan.backend
    runnable = backend.can_run_here()
    references = verify.component_references(components, recipe.verify.samples) if runnable[0] else None
    if not several_sizes(components):  # two phases: PyTorch first, then one session at a time
        release_weights(plan.model, plan.components)  # (several sizes: the others are checked against PyTorch)
    results = verify.verify_artifacts(
        components, manifest.components, manifest.backend, backend.session_options(plan.options), plan.limits,
        recipe.verify.samples, runnable, references=references)
    labels = [r.component for r in results]
    for size in several_sizes(components)[1:]:  # a bundle with several sizes: every component at each one
        sized = [at_size(c, size) for c in components if c.sizes]  # a text encoder: the same at every size
        more = verify.verify_artifacts(sized, manifest.components, manifest.backend,
                                       backend.session_options(plan.options), plan.limits, recipe.verify.samples,
                                       runnable)
        results, labels = results + more, labels + [f"{r.component} at {size_name(size)}" for r in more]
    rows = [[label, r.status, f"{r.metrics.psnr_db:.1f}" if r.metrics else "–",
             f"{r.metrics.cosine:.6f}" if r.metrics else "–", r.reason] for label, r in zip(labels, results)]
    print(text_table(["component", "status", "PSNR dB", "cosine", "note"], rows))
    verify.gate(results, plan.limits)
    print(f"{args.bundle}: all {len(results)} components match their PyTorch source"
          if all(r.status == "passed" for r in results) else f"{args.bundle}: no failures (some checks skipped)")
    return 0
