"""A reference text-to-image loop over pluggable components, for end-to-end parity checks.

The same loop runs once with the PyTorch components and once with the lowered artifacts, with the same
tokens, scheduler and initial noise, so the image PSNR between the two isolates the artifacts' error. It
follows diffusers' StableDiffusionPipeline step for step (CFG as uncond-then-cond batch, scaled latents).
Initial noise is drawn with numpy (`edgediff.runtime.pipeline.initial_noise`), the convention the torch-free runtime uses.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from edgediff.errors import RecipeError
from edgediff.runtime.pipeline import initial_noise

Call = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class SamplingSettings:
    prompt: str
    seed: int
    steps: int
    guidance_scale: float
    batched_cfg: bool = True


def guidance_scale_embedding(w: float, dim: int, batch: int) -> np.ndarray:
    """Sinusoidal embedding of (guidance - 1) for UNets with time_cond_proj_dim (LCM students)."""
    w = np.full((batch,), w * 1000.0, dtype=np.float64)
    half = dim // 2
    freqs = np.exp(np.arange(half) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = np.concatenate([np.sin(emb), np.cos(emb)], axis=1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb.astype(np.float32)


def tokenize(tokenizer_dir, prompts: list[str], length: int = 77) -> np.ndarray:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="np")
    return ids["input_ids"].astype(np.int64)


def generate(
    text_encoder: Call, unet: Call, vae_decoder: Call, *, input_ids: np.ndarray, uncond_ids: np.ndarray,
    scheduler, settings: SamplingSettings, latent_shape: tuple[int, ...], scaling_factor: float,
    unet_batch: int, time_cond_dim: int = 0, progress: Callable | None = None,
) -> np.ndarray:
    """Run the loop; returns the decoded image [1, 3, H, W] in [-1, 1]. `scheduler` is a diffusers scheduler."""
    import torch

    cond = text_encoder({"input_ids": input_ids})["last_hidden_state"]
    use_cfg = settings.guidance_scale > 1.0 and not time_cond_dim
    uncond = text_encoder({"input_ids": uncond_ids})["last_hidden_state"] if use_cfg else None
    scheduler.set_timesteps(settings.steps)
    latents = torch.from_numpy(initial_noise(settings.seed, latent_shape)) * scheduler.init_noise_sigma
    extra = {}
    if time_cond_dim:
        extra["timestep_cond"] = guidance_scale_embedding(settings.guidance_scale - 1.0, time_cond_dim, unet_batch)
    steps = scheduler.timesteps
    # Schedulers that re-noise between steps (LCM, SDE solvers) must draw the same noise on every run.
    step_kwargs = {}
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = torch.Generator().manual_seed(settings.seed)
    for t in (progress(steps) if progress else steps):
        model_in = scheduler.scale_model_input(latents, t).numpy()
        if use_cfg:
            pred_uncond, pred_cond = _unet_pair(unet, model_in, float(t), uncond, cond, unet_batch, extra)
            noise = pred_uncond + settings.guidance_scale * (pred_cond - pred_uncond)
        else:
            noise = _unet_call(unet, model_in, float(t), cond, extra)
        latents = scheduler.step(torch.from_numpy(noise), t, latents, return_dict=False, **step_kwargs)[0]
    return vae_decoder({"latent": (latents / scaling_factor).numpy().astype(np.float32)})["image"]


def _unet_call(unet: Call, sample, t: float, states, extra) -> np.ndarray:
    batch = sample.shape[0]
    inputs = {"sample": sample, "timestep": np.full((batch,), t, np.float32), "encoder_hidden_states": states}
    inputs.update({k: v[:batch] for k, v in extra.items()})
    return unet(inputs)["noise_pred"]


def _unet_pair(unet: Call, sample, t, uncond, cond, unet_batch, extra):
    if unet_batch == 2:
        both = _unet_call(unet, np.concatenate([sample, sample]), t, np.concatenate([uncond, cond]), extra)
        return both[:1], both[1:]
    return _unet_call(unet, sample, t, uncond, extra), _unet_call(unet, sample, t, cond, extra)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> [H, W, 3] uint8."""
    return (np.clip(image[0].transpose(1, 2, 0) / 2 + 0.5, 0, 1) * 255).round().astype(np.uint8)


def image_psnr_record(images: dict[str, Any], settings: Any) -> dict[str, Any]:
    """The end-to-end record of two decoded images (PyTorch's, the artifacts'), judged against the threshold."""
    ref, got = (to_uint8(images[k]).astype(np.float64) for k in ("pytorch", "artifact"))
    mse = float(np.mean((ref - got) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    return {"status": "passed" if psnr >= settings.min_image_psnr_db else "failed",
            "psnr_db": round(psnr, 2) if math.isfinite(psnr) else psnr, "min_psnr_db": settings.min_image_psnr_db,
            "prompt": settings.prompt, "seed": settings.seed, "steps": settings.steps,
            "guidance_scale": settings.guidance_scale, "images": images}


def make_scheduler(class_name: str, config: Mapping[str, Any]):
    """The diffusers scheduler the PyTorch side of the end-to-end check runs."""
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None or not hasattr(cls, "from_config"):
        raise RecipeError(f"unknown scheduler '{class_name}' (use a diffusers scheduler class name)")
    return cls.from_config(dict(config))
