"""The recipe's `tiny_decoder` step: a TAESD-style decoder distilled from the model's own VAE decoder.

Once the UNet is small and takes few steps, the VAE decoder dominates the time per image (13-16 of 33 ms for
the default model's 4-step student); SnapGen, SDXS and MobileDiffusion all shrink it. The architecture is
TAESD's decoder (diffusers' `DecoderTiny`: tanh clamp, conv + ReLU residual blocks, nearest upsampling, no
normalisation or attention) read from the TAESD config in `architectures/taesd` - its block counts, activation
and upsampling - at a width the recipe may lower (the default model's images are 64x64, where TAESD's 64
channels would cost more than the decoder they replace).

Training: latents of the model's own training data (edgediff.slim.data, encoded by the model's VAE) and a share
of them perturbed with noise (a sampler's latents are never exactly an encoder's), target = the model's decoder
on the same latents, loss = mean squared error on the image. Resumable (the shared Accelerate loop's
checkpoints in the stage cache entry). The result is checked against the teacher decoder on held-out latents
(`min_teacher_psnr_db`, from the recipe) and replaces the `vae_decoder` component with the same inputs and
outputs, so the bundle, the runtime and the apps need no change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgediff.errors import ModelLoadError, QualityError, RecipeError, StageIncomplete
from edgediff.slim import stage_cache

_REPO = Path(__file__).resolve().parents[2]
# The shared architectures folder sits beside the repository (or beside the folder of worktrees).
CONFIG_CANDIDATES = tuple(base / "shared" / "architectures" / "taesd" / "config.json"
                          for base in (Path.cwd().parent, _REPO.parent, _REPO.parent.parent))
_NOT_KEYED = ("max_minutes", "checkpoint_every", "log_every", "config")


@dataclass
class TinyDecoderSettings:
    """Options of `[[slim.steps]] kind = "tiny_decoder"`."""

    config: str = ""  # a TAESD config.json (AutoencoderTiny); "" = architectures/taesd beside the repo
    channels: int = 0  # width of every stage; 0 = the config's decoder_block_out_channels
    blocks: list[int] = field(default_factory=list)  # residual blocks per stage; [] = the config's
    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    noise_fraction: float = 0.5  # share of each batch whose latents get Gaussian noise added
    noise_std: float = 0.2  # in scaled-latent units (the UNet's space)
    data: str = ""  # "" = the shapes task; else an image folder with metadata.jsonl (edgediff.slim.data)
    dataset_seed: int = 0
    cache_size: int = 2048
    holdout: int = 256  # held-out latents (dataset seed + 1) the teacher check uses
    min_teacher_psnr_db: float = 22.0  # the tiny decoder's image vs the teacher decoder's, worst batch mean
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    max_minutes: float = 0.0  # wall-time budget of one run (0 = none); rerun to continue


def settings_from_options(options: dict[str, Any]) -> TinyDecoderSettings:
    names = set(TinyDecoderSettings.__dataclass_fields__)
    unknown = sorted(set(options) - names)
    if unknown:
        raise RecipeError(f"unknown tiny_decoder option(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    settings = TinyDecoderSettings(**options)
    if settings.max_steps < 1 or settings.batch_size < 1 or settings.channels < 0:
        raise RecipeError("tiny_decoder: max_steps and batch_size must be >= 1 and channels >= 0")
    return settings


def architecture(settings: TinyDecoderSettings, latent_channels: int, out_channels: int, stages: int) -> dict:
    """DecoderTiny keyword arguments from the TAESD config, with the recipe's width and block overrides."""
    found = [Path(settings.config)] if settings.config else [p for p in CONFIG_CANDIDATES if p.is_file()]
    path = found[0] if found else CONFIG_CANDIDATES[0]
    if not path.is_file():
        raise ModelLoadError(f"the TAESD config {path} does not exist; give the tiny_decoder step "
                             'config = "path/to/taesd/config.json" (an AutoencoderTiny config)')
    cfg = json.loads(path.read_text())
    blocks = list(settings.blocks or cfg["num_decoder_blocks"])
    widths = [settings.channels] * len(blocks) if settings.channels else list(cfg["decoder_block_out_channels"])
    if len(blocks) != stages or len(set(widths)) != 1:
        raise RecipeError(f"tiny_decoder: the model's VAE upsamples in {stages - 1} stages, so the decoder needs "
                          f"{stages} block counts of one width (got blocks {blocks}, widths {widths})")
    return {"in_channels": latent_channels, "out_channels": out_channels, "num_blocks": tuple(blocks),
            "block_out_channels": tuple(widths), "upsampling_scaling_factor": int(cfg["upsampling_scaling_factor"]),
            "act_fn": cfg["act_fn"], "upsample_fn": cfg["upsample_fn"]}


class TinyDecoder(torch.nn.Module):
    """Unscaled latent (what the `vae_decoder` component takes) -> image in [-1, 1]."""

    def __init__(self, arch: dict, scaling_factor: float):
        super().__init__()
        from diffusers.models.autoencoders.vae import DecoderTiny

        self.scaling_factor = float(scaling_factor)
        self.decoder = DecoderTiny(**arch)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent * self.scaling_factor)  # the decoder sees unit-variance (UNet-space) latents


def _stages(vae: Any) -> int:
    return len(vae.config.block_out_channels)


def _teacher_images(vae: Any, scaled: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(scaled / float(vae.config.scaling_factor), return_dict=False)[0]


def train(vae: Any, settings: TinyDecoderSettings, arch: dict, run_dir: Path) -> tuple[TinyDecoder, Any]:
    """Distil the decoder (resumable from run_dir's checkpoints); returns it and the loop result."""
    from edgediff.slim.data import training_data
    from edgediff.slim.distill.data import EncodedLatents, cache_file
    from edgediff.slim.training import LoopSettings, make_accelerator, reduce_mean, run_loop, step_generator

    loop = LoopSettings(output_dir=run_dir, max_steps=settings.max_steps, seed=settings.seed,
                        checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, cpu=True,
                        description="tiny decoder", max_seconds=settings.max_minutes * 60 or None)
    accelerator = make_accelerator(loop)
    scale = float(vae.config.scaling_factor)
    size = int(vae.config.sample_size) if isinstance(vae.config.sample_size, int) else int(vae.config.sample_size[0])
    source = training_data(settings.data, settings.dataset_seed, size)
    with accelerator.main_process_first():
        data = EncodedLatents(vae, source, settings.cache_size, cache_file(run_dir, source, settings.cache_size))
    student = TinyDecoder(arch, scale).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.learning_rate)
    student, optimizer = accelerator.prepare(student, optimizer)

    def step(i: int) -> dict[str, float]:
        gen = step_generator(settings.seed, accelerator.process_index, i)
        latents, _ = data.batch(gen, settings.batch_size, accelerator.device)
        noisy = torch.rand(latents.shape[0], generator=gen) < settings.noise_fraction
        noise = torch.randn(latents.shape, generator=gen) * settings.noise_std
        latents = latents + noise * noisy.view(-1, 1, 1, 1)
        target = _teacher_images(vae, latents)
        loss = torch.nn.functional.mse_loss(student(latents / scale), target)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        return {"loss": reduce_mean(accelerator, loss)}

    result = run_loop(accelerator, loop, step)
    return accelerator.unwrap_model(student).eval(), result


def teacher_psnr(vae: Any, student: TinyDecoder, settings: TinyDecoderSettings) -> dict[str, float]:
    """The tiny decoder's images vs the teacher decoder's on held-out latents (another dataset seed): mean and
    worst per-image PSNR, peak 2 (the [-1, 1] image range)."""
    from edgediff.slim.data import training_data
    from edgediff.slim.distill.data import EncodedLatents

    size = int(vae.config.sample_size) if isinstance(vae.config.sample_size, int) else int(vae.config.sample_size[0])
    held = EncodedLatents(vae, training_data(settings.data, settings.dataset_seed + 1, size), settings.holdout)
    scaled = held.latents
    with torch.no_grad():
        ref = _teacher_images(vae, scaled).clamp(-1, 1)
        got = student(scaled / float(vae.config.scaling_factor)).clamp(-1, 1)
    mse = ((ref - got) ** 2).flatten(1).mean(1).clamp(min=1e-12)
    psnr = 10 * torch.log10(4.0 / mse)
    return {"mean_psnr_db": round(float(psnr.mean()), 2), "worst_psnr_db": round(float(psnr.min()), 2),
            "image_psnr_db": round(float(10 * np.log10(4.0 / float(mse.mean()))), 2), "samples": len(scaled)}


def tiny_decoder_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `tiny_decoder`: train (or reuse) the distilled decoder and swap it in as `vae_decoder`."""
    settings = settings_from_options(options)
    if getattr(model, "vae", None) is None:
        raise RecipeError("the tiny_decoder step needs a model with a VAE (a diffusers pipeline)")
    vae = model.vae
    arch = architecture(settings, int(vae.config.latent_channels), int(vae.config.out_channels), _stages(vae))
    keyed = {k: v for k, v in asdict(settings).items() if k not in _NOT_KEYED}
    entry = stage_cache.entry("tiny_decoder", {"vae": stage_cache.module_digest(vae)}, {**keyed, "arch": arch})
    weights = entry.folder / "decoder.safetensors"
    decoder = TinyDecoder(arch, float(vae.config.scaling_factor))
    if entry.done:
        from safetensors.torch import load_file

        decoder.load_state_dict(load_file(str(weights)))
        record = entry.record()
        stage_cache.note("tiny_decoder", entry.key, True, teacher_check=record["teacher_check"])
    else:
        decoder, loop = train(vae, settings, arch, entry.work / "run")
        if loop.final_step < settings.max_steps:
            raise StageIncomplete(f"tiny_decoder stopped at step {loop.final_step} of {settings.max_steps} (the "
                                  f"{settings.max_minutes:g}-minute budget of one run); run the same command "
                                  f"again to continue from step {loop.final_step}")
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in decoder.state_dict().items()}, str(weights))
        record = {"teacher_check": teacher_psnr(vae, decoder, settings), "arch": arch,
                  "parameters": sum(p.numel() for p in decoder.parameters()), "train_steps": loop.final_step,
                  "started_at_step": loop.start_step, "min_teacher_psnr_db": settings.min_teacher_psnr_db}
        entry.finish(record)
        stage_cache.note("tiny_decoder", entry.key, False, teacher_check=record["teacher_check"])
    check = record["teacher_check"]
    if check["image_psnr_db"] < settings.min_teacher_psnr_db:
        raise QualityError(f"tiny_decoder: images {check['image_psnr_db']:.1f} dB PSNR against the model's own "
                           f"decoder < {settings.min_teacher_psnr_db:g} dB (the recipe's min_teacher_psnr_db): "
                           "train longer (max_steps) or wider (channels)")
    decoder = decoder.eval().requires_grad_(False)
    for component in components:
        if component.name == "vae_decoder":
            component.module = decoder
    return components
