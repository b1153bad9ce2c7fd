"""Image inputs in slimming: what an inpainting UNet sees besides its latents, for int8 calibration.

An inpainting UNet (in_channels = 2 * latent channels + 1, e.g. 9) takes `[latents, mask, masked-image latents]`
on channels; calibrating it on noise in all 9 channels would measure ranges it never sees (a mask is 0 or 1,
masked-image latents are an encoded picture). `InpaintConditions` builds real ones the way diffusers'
StableDiffusionInpaintPipeline does: a seeded synthetic picture (a gradient with filled shapes: no data set
needed, and the encoder sees edges and flat colour like a photo's), a seeded rectangular mask covering a quarter
to two thirds of it, `vae.encode(picture * (mask < 0.5))` times the scaling factor, and the mask downsampled
nearest-neighbour to the latents. Each calibration run gets its own picture and mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError


def is_inpainting(unet_component: Any) -> bool:
    """A UNet whose sample has more channels than its output: latents + mask + masked-image latents."""
    return unet_component is not None and unet_component.inputs[0].shape[1] != unet_component.outputs[0].shape[1]


def refuse_image_unet(unet: Any, folder: Any) -> None:
    """Distillation, the pruning search and recovery train on text-to-image trajectories (4-channel latents);
    an inpainting UNet's extra input channels would be fed nothing meaningful, so they refuse it plainly."""
    cfg = unet.config
    if cfg.in_channels != cfg.out_channels:
        raise UnsupportedError(
            f"{folder}: the UNet takes {cfg.in_channels} input channels for {cfg.out_channels} latent ones (an "
            "inpainting UNet); distillation, the pruning search and recovery train text to image only. Prune it "
            "with a fixed preset or spec in a recipe's [[slim.steps]] instead, or distill its text-to-image twin")


def synthetic_picture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [1, 3, H, W] in [-1, 1]: a random two-colour gradient with three filled rectangles and discs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a, b = rng.uniform(-1, 1, (2, 3)).astype(np.float32)
    ramp = (x / max(width - 1, 1) + y / max(height - 1, 1)) / 2
    image = a[:, None, None] * (1 - ramp) + b[:, None, None] * ramp
    for _ in range(3):
        colour = rng.uniform(-1, 1, 3).astype(np.float32)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.1, 0.3) * min(height, width)
        inside = ((y - cy) ** 2 + (x - cx) ** 2 <= r * r) if rng.random() < 0.5 else (
            (np.abs(y - cy) <= r) & (np.abs(x - cx) <= r))
        image[:, inside] = colour[:, None]
    return image[None].astype(np.float32)


def synthetic_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [1, 1, H, W] of 0 / 1: one rectangle (1 = repaint) covering about 25-65 % of the picture."""
    mh, mw = (int(rng.uniform(0.5, 0.8) * d) for d in (height, width))
    top, left = int(rng.integers(0, height - mh + 1)), int(rng.integers(0, width - mw + 1))
    mask = np.zeros((1, 1, height, width), np.float32)
    mask[..., top:top + mh, left:left + mw] = 1.0
    return mask


class InpaintConditions:
    """The extra UNet channels of one calibration run, built with the model's own VAE (PyTorch)."""

    def __init__(self, model: Any, latent_shape: tuple[int, ...], unet_channels: int, seed: int):
        import torch

        from edgediff.model.components import vae_scale_factor, vae_scaling_factor
        from edgediff.runtime.images import downsample_nearest

        if unet_channels != 2 * latent_shape[1] + 1:
            raise UnsupportedError(f"the UNet takes {unet_channels} channels for {latent_shape[1]} latent ones; "
                                   "calibration knows inpainting UNets (latents, mask, masked-image latents) only")
        if model.vae is None:
            raise UnsupportedError("calibrating an inpainting UNet needs the model's VAE to encode masked pictures")
        scale = vae_scale_factor(model.vae)
        height, width = latent_shape[2] * scale, latent_shape[3] * scale
        rng = np.random.default_rng(seed + 20_000)
        picture, mask = synthetic_picture(height, width, rng), synthetic_mask(height, width, rng)
        with torch.inference_mode():
            encoded = model.vae.encode(torch.from_numpy(picture * (mask < 0.5)), return_dict=False)[0]
            mean = getattr(encoded, "mean", encoded)
        self.masked_latents = (mean.numpy() * vae_scaling_factor(model.vae)).astype(np.float32)
        self.mask = downsample_nearest(mask, latent_shape[2], latent_shape[3])

    def extend(self, sample: np.ndarray) -> np.ndarray:
        """`sample` (a batch of scaled latents) with the mask and masked-image latents on channels."""
        n = sample.shape[0]
        return np.concatenate([sample, np.repeat(self.mask, n, 0), np.repeat(self.masked_latents, n, 0)],
                              axis=1).astype(np.float32)
