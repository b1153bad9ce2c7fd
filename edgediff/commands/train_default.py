"""`edgediff train-default`: train the embedded default model (shapes-sd) from scratch, resumably."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from edgediff.errors import RecipeError


def register(subparsers: argparse._SubParsersAction) -> None:
    from edgediff.train.settings import STAGE_NAMES, DiffusionTrainSettings, TrainSettings, VAETrainSettings

    d, v, t = DiffusionTrainSettings(), VAETrainSettings(), TrainSettings()
    p = subparsers.add_parser(
        "train-default",
        help="train the embedded default model (tiny SD on the shapes dataset) and its judge",
        description="Stages judge, vae, latents, diffusion, export; each checkpoints into --run-dir and "
        "resumes there, and a finished stage is skipped on rerun.",
    )
    p.add_argument("--run-dir", type=Path, default=t.run_dir, help="checkpoints and logs (default: %(default)s)")
    p.add_argument("--output", type=Path, default=t.output, help="diffusers folder to write (default: %(default)s)")
    p.add_argument("--seed", type=int, default=t.seed, help="dataset and torch seed (default: %(default)s)")
    p.add_argument("--threads", type=int, default=t.threads, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--stages", default=",".join(t.stages), help=f"comma list from {','.join(STAGE_NAMES)} (default: all)")
    p.add_argument("--vae-steps", type=int, default=v.steps, help="VAE optimiser steps (default: %(default)s)")
    p.add_argument("--diffusion-steps", type=int, default=d.steps, help="UNet + text encoder steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="diffusion batch size (default: %(default)s)")
    p.add_argument("--latent-samples", type=int, default=d.latent_samples, help="images encoded for diffusion training")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgediff.train.default_model import STAGES, DiffusionTrainSettings, TrainSettings, VAETrainSettings, train

    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise RecipeError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if min(args.vae_steps, args.diffusion_steps, args.batch_size, args.latent_samples) < 1:
        raise RecipeError("--vae-steps, --diffusion-steps, --batch-size and --latent-samples must be positive")
    settings = TrainSettings(
        run_dir=args.run_dir,
        output=args.output,
        seed=args.seed,
        threads=args.threads,
        stages=stages,
        vae=replace(VAETrainSettings(), steps=args.vae_steps),
        diffusion=replace(
            DiffusionTrainSettings(), steps=args.diffusion_steps, batch_size=args.batch_size, latent_samples=args.latent_samples
        ),
    )
    train(settings)
    return 0
