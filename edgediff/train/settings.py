"""Training settings of the default model, torch-free so the CLI can list them on a device without PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgediff.train import architecture as arch_mod

STAGE_NAMES = ("judge", "vae", "latents", "decoder", "diffusion", "export", "card")


@dataclass(frozen=True)
class VAETrainSettings:
    steps: int = 1500
    batch_size: int = 16
    crop: int = 32  # train on random crops: the VAE is fully convolutional, so this is 4x cheaper per sample
    lr: float = 2e-3
    warmup: int = 50
    decoder_steps: int = 1500  # decoder-only fine-tune on the frozen encoder's latents
    kl_weight: float = 1e-6
    scale_samples: int = 512  # images used to measure the latent std (scaling factor)


@dataclass(frozen=True)
class DiffusionTrainSettings:
    steps: int = 3500
    batch_size: int = 64
    lr: float = 1e-3  # constant after warmup; the EMA weights are what ship
    warmup: int = 100
    snr_gamma: float = 5.0  # min-SNR loss weighting: faster convergence on a small budget
    caption_dropout: float = 0.1  # empty caption, so classifier-free guidance has an unconditional branch
    ema_decay: float = 0.999
    latent_samples: int = 8_000  # training images encoded once to latents


@dataclass(frozen=True)
class TrainSettings:
    run_dir: Path = Path("runs/shapes-sd")
    output: Path = Path("models/shapes-sd")
    seed: int = 0  # dataset and torch seed
    threads: int = 1  # tiny ops: extra threads only add barrier waits, badly so on a shared CPU
    checkpoint_every: int = 250
    architecture: arch_mod.Architecture = field(default_factory=arch_mod.Architecture)
    vae: VAETrainSettings = field(default_factory=VAETrainSettings)
    diffusion: DiffusionTrainSettings = field(default_factory=DiffusionTrainSettings)
    stages: tuple[str, ...] = STAGE_NAMES
