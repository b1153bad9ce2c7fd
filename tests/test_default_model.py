"""The committed default model (models/shapes-sd) loads in diffusers and draws what it is asked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgediff.evaluate import DEFAULT_GUIDANCE, DEFAULT_MODEL
from edgediff.runtime.pipeline import initial_noise
from edgediff.shapes import dataset
from edgediff.shapes.judge import accuracy, load_judge, predict
from edgediff.shapes.metrics import prompt_accuracy

SD15_TOKENIZER = Path("/work/shared/architectures/stable-diffusion-v1-5/tokenizer")


@pytest.fixture(scope="module")
def pipe():
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    p = StableDiffusionPipeline.from_pretrained(DEFAULT_MODEL, safety_checker=None, requires_safety_checker=False)
    p.set_progress_bar_config(disable=True)
    return p


def test_folder_is_a_small_safetensors_sd_pipeline():
    folder = DEFAULT_MODEL
    for part in ("tokenizer", "text_encoder", "unet", "vae", "scheduler", "judge"):
        assert (folder / part).is_dir(), part
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.ckpt"))
    assert len(list(folder.rglob("*.safetensors"))) >= 4
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 20 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert unet["sample_size"] == 8 and "CrossAttnDownBlock2D" in unet["down_block_types"]
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert len(vae["block_out_channels"]) == 4 and vae["latent_channels"] == 4
    assert vae["scaling_factor"] != 1.0  # measured after VAE training, not the placeholder
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["beta_schedule"], sched["beta_start"], sched["beta_end"], sched["num_train_timesteps"]) == ("scaled_linear", 0.00085, 0.012, 1000)
    if SD15_TOKENIZER.is_dir():
        for name in ("vocab.json", "merges.txt"):
            assert (folder / "tokenizer" / name).read_bytes() == (SD15_TOKENIZER / name).read_bytes()


def test_judge_reads_real_images():
    judge = load_judge(DEFAULT_MODEL / "judge")
    images, specs = dataset.batch(4242, 0, 400)
    acc = accuracy(judge, images, specs)
    assert acc["all"] >= 0.99, acc


def test_generated_images_match_their_prompts(pipe):
    """An untrained or broken model scores ~0 here (about 1 in 224 by chance); the trained one gets most right."""
    import torch

    n = 12
    specs = [dataset.sample_spec(777, i) for i in range(n)]
    latents = torch.from_numpy(np.concatenate([initial_noise(100 + i, (1, 4, 8, 8)) for i in range(n)]))
    with torch.inference_mode():
        out = pipe(prompt=[s.caption for s in specs], latents=latents, num_inference_steps=20,
                   guidance_scale=DEFAULT_GUIDANCE, output_type="np").images
    images = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    assert images.shape == (n, 64, 64, 3)
    preds, _ = predict(load_judge(DEFAULT_MODEL / "judge"), images)
    scores = prompt_accuracy(preds, specs)
    # The model scores ~85% on the 200-prompt set; 12 prompts leave room for sampling noise, not for a broken model.
    assert scores["prompt_accuracy"] >= 0.6, scores
