"""The default-model training stages run end to end at toy length, export a loadable diffusers folder and resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edgediff.errors import RecipeError
from edgediff.train.default_model import DiffusionTrainSettings, TrainSettings, VAETrainSettings, train


def _settings(tmp_path, diffusion_steps: int) -> TrainSettings:
    return TrainSettings(
        run_dir=tmp_path / "run",
        output=tmp_path / "model",
        checkpoint_every=1,
        stages=("vae", "latents", "decoder", "diffusion", "export"),
        vae=VAETrainSettings(steps=2, decoder_steps=1, batch_size=4, scale_samples=256),
        diffusion=DiffusionTrainSettings(steps=diffusion_steps, batch_size=4, latent_samples=32),
    )


def test_toy_run_exports_a_pipeline_and_resumes(tmp_path):
    from diffusers import StableDiffusionPipeline

    settings = _settings(tmp_path, diffusion_steps=2)
    train(settings)
    pipe = StableDiffusionPipeline.from_pretrained(settings.output, safety_checker=None, requires_safety_checker=False)
    assert pipe.vae.config.scaling_factor != 1.0 and pipe.unet.config.sample_size == 8
    assert (settings.output / "tokenizer" / "merges.txt").is_file()
    assert not list(settings.output.rglob("*.bin"))
    log = (settings.run_dir / "train.log").read_text()
    assert "diffusion: done, 2 steps" in log

    # A longer run in the same folder picks the checkpoint up instead of starting over.
    (settings.run_dir / "diffusion_done.json").unlink()
    train(replace(settings, diffusion=replace(settings.diffusion, steps=3), stages=("vae", "latents", "decoder", "diffusion")))
    log = (settings.run_dir / "train.log").read_text()
    assert "vae: already trained, skipping" in log and "diffusion: resuming at step 2" in log
    assert json.loads((settings.run_dir / "diffusion_done.json").read_text())["steps"] == 3


def test_train_command_rejects_unknown_stage(tmp_path):
    from edgediff.cli import build_parser
    from edgediff.commands.train_default import run

    args = build_parser().parse_args(["train-default", "--run-dir", str(tmp_path), "--stages", "vae,bogus"])
    with pytest.raises(RecipeError):
        run(args)
