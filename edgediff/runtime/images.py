"""Images into a bundle: image-to-image and inpainting in the torch-free runtime, as diffusers does them.

What diffusers' StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline do, step for step:
- the image is read as RGB at exactly the bundle's size (no resizing: a bundle is converted for one size, and
  a silent resize would change the picture), scaled from [0, 255] to [-1, 1] (VaeImageProcessor);
- the mask is read as greyscale at the image's size, scaled to [0, 1] and binarised at 0.5 (white = repaint),
  as diffusers' mask processor does; the masked image is `image * (mask < 0.5)`; the latent-sized mask is the
  nearest-neighbour downsample (torch's `interpolate` default);
- the bundle's `vae_encoder` gives the latent distribution's parameters (mean and log-variance on channels) and
  the latents are a sample of it, `(mean + std * eps - shift) * scaling_factor` (diffusers' `retrieve_latents`
  with sample_mode="sample"); an older bundle whose encoder gives only the mean uses the mean;
- `strength` < 1 starts part-way down the schedule (`schedulers.partial`) from the image latents noised to
  that level; inpainting at strength 1 starts from pure noise like text to image;
- a 9-channel (inpainting) UNet gets `[scaled latents, mask, masked-image latents]` on channels each step; a
  4-channel UNet inpaints by blending: after each step the known region is reset to the image latents noised
  to the next step's level.

Modes: RGB is used as is; greyscale (L), palette (P) and fully opaque RGBA / LA are converted to RGB (nothing is
lost); an image with transparent pixels is refused (what colour lies behind them is the user's choice, not
ours), as are other modes (CMYK, 16-bit, float). A mask in any of these modes is converted to greyscale.

Seed convention (extends `pipeline.initial_noise`'s): one `np.random.default_rng(seed)` draws float32
standard normals of latent_shape in diffusers' call order:
  image-to-image: the encoder's sample of the image, then the start noise, then the per-step noises (if any);
  inpainting:     the image's encoder sample (only at strength < 1 or with a 4-channel UNet), the start noise,
                  the masked image's encoder sample, then the per-step noises.
To reproduce an image with diffusers, make its `randn_tensor` (the VAE's and the pipeline's) return draws from
the same generator in call order (tests/test_images.py does exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.errors import ImageInputError
from edgediff.runtime.schedulers import TableScheduler
from edgediff.runtime.schedulers.partial import PartialStart, partial_start, start_step
from edgediff.runtime.sessions import open_component

MAX_PIXELS = 4096 * 4096  # refuse before decoding anything larger (a decompression bomb is a tiny file)
_CONVERTIBLE = ("RGB", "L", "P", "RGBA", "LA", "1", "PA")


def _open(path: Path, what: str):
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{what} {path} does not exist or is not a file")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageInputError(f"{what} {path} is not an image PIL can read (PNG, JPEG, WebP, BMP, ...)") from None
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{what} {path}: {exc}") from None
    if image.width * image.height > MAX_PIXELS:
        raise ImageInputError(f"{what} {path} is {image.width}x{image.height}, larger than any bundle size")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data after a valid header
        raise ImageInputError(f"{what} {path} cannot be decoded ({exc}); is the file complete?") from None
    return image


def _to_mode(image, target: str, path: Path, what: str):
    """RGB or L from the modes that convert without loss or guesswork; transparency and others are refused."""
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode not in _CONVERTIBLE:
        raise ImageInputError(f"{what} {path} has mode {mode}; save it as 8-bit RGB or greyscale (PNG or JPEG)")
    if mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ImageInputError(f"{what} {path} has transparent pixels ({int((alpha < 255).sum())} of {alpha.size}); "
                                  "flatten it onto a background first (edgediff will not choose the colour behind them)")
    return image if mode == target else image.convert(target)


def _check_size(image, height: int, width: int, path: Path, what: str, sizes: str) -> None:
    if (image.height, image.width) != (height, width):
        raise ImageInputError(f"{what} {path} is {image.width}x{image.height} (width x height) but the bundle makes "
                              f"{sizes}; resize or crop it to that size first")


def read_image(path: str | Path, height: int, width: int, sizes: str = "") -> np.ndarray:
    """The image as diffusers' VaeImageProcessor gives it to the VAE: float32 [1, 3, H, W] in [-1, 1]."""
    path = Path(path)
    image = _open(path, "--image")
    _check_size(image, height, width, path, "--image", sizes or f"{width}x{height}")
    rgb = np.asarray(_to_mode(image, "RGB", path, "--image"), dtype=np.float32) / np.float32(255.0)
    return (np.float32(2.0) * rgb - np.float32(1.0)).transpose(2, 0, 1)[None].astype(np.float32)


def read_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """The mask as diffusers' mask processor gives it: float32 [1, 1, H, W], 1 where the image is repainted."""
    path = Path(path)
    image = _open(path, "--mask")
    if (image.height, image.width) != (height, width):
        raise ImageInputError(f"--mask {path} is {image.width}x{image.height} but the image is {width}x{height}; "
                              "the mask must cover the image pixel for pixel (white = repaint, black = keep)")
    grey = np.asarray(_to_mode(image, "L", path, "--mask"), dtype=np.float32) / np.float32(255.0)
    return (grey >= 0.5).astype(np.float32)[None, None]


def downsample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch.nn.functional.interpolate(mask, size=(height, width)) in its default 'nearest' mode."""
    rows = np.minimum(np.floor(np.arange(height) * (mask.shape[2] / height)).astype(int), mask.shape[2] - 1)
    cols = np.minimum(np.floor(np.arange(width) * (mask.shape[3] / width)).astype(int), mask.shape[3] - 1)
    return mask[:, :, rows][:, :, :, cols].astype(np.float32)


@dataclass
class ImageInputs:
    """An image (and for inpainting a mask) with the strength to apply: what `BundlePipeline.generate` takes as
    `images=` and runs through the hooks below. Arrays are preprocessed (`read_image`, `read_mask`)."""

    image: np.ndarray
    mask: np.ndarray | None = None
    strength: float = 0.8
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        start_step(1000, self.strength)  # the range check, before anything runs
        if self.mask is not None and self.mask.shape[2:] != self.image.shape[2:]:
            raise ImageInputError(f"the mask is {self.mask.shape[3]}x{self.mask.shape[2]} but the image is "
                                  f"{self.image.shape[3]}x{self.image.shape[2]}")

    @classmethod
    def from_files(cls, pipe: Any, image: str | Path, mask: str | Path | None = None,
                   strength: float | None = None) -> "ImageInputs":
        """Read and check the files against the bundle; strength defaults as diffusers' (0.8 img2img, 1 inpainting)."""
        from edgediff.runtime.sizes import bundle_sizes, current_size, describe

        height, width = current_size(pipe)  # the size generate --height --width picked (use_size), else the first
        pixels = read_image(image, height, width, describe(bundle_sizes(pipe.manifest)))
        masked = read_mask(mask, height, width) if mask is not None else None
        return cls(pixels, masked, (1.0 if mask is not None else 0.8) if strength is None else float(strength))

    # ---- hooks called by BundlePipeline.generate ------------------------------------------------------------

    def start(self, pipe: Any, sched: TableScheduler, rng: np.random.Generator,
              latents: np.ndarray | None) -> tuple[TableScheduler, np.ndarray, np.ndarray]:
        """(the scheduler for the kept steps, the start noise, the initial latents); encodes the image(s)."""
        check_bundle(pipe, self)
        shape = pipe.latent_shape
        steps = int(sched.tables["num_inference_steps"])
        part: PartialStart = partial_start(sched.class_name if sched.name == sched.class_name else sched.name,
                                           pipe.scheduler_config, steps, self.strength, full=sched.tables)
        inpaint, nine = self.mask is not None, pipe.unet_channels != shape[1]
        full_strength = self.strength == 1.0 and inpaint
        image_latents = None
        if not inpaint or not full_strength or not nine:  # diffusers encodes the image only when it needs it
            image_latents = encode(pipe, self.image, rng)
        noise = (rng.standard_normal(shape, dtype=np.float32) if latents is None
                 else np.asarray(latents, dtype=np.float32).reshape(shape))
        if full_strength:
            x = (noise * np.float32(sched.init_noise_sigma)).astype(np.float32)
        else:
            assert image_latents is not None
            x = part.add_noise(image_latents, noise, 0)
        if inpaint:
            assert self.mask is not None
            masked = encode(pipe, self.image * (self.mask < 0.5).astype(np.float32), rng)
            small = downsample_nearest(self.mask, shape[2], shape[3])
            self._state = {"mask": small, "masked_latents": masked, "nine": nine, "noise": noise,
                           "image_latents": image_latents, "part": part}
        else:
            self._state = {"nine": False}
        return TableScheduler(part.tables), noise, x

    def unet_sample(self, model_input: np.ndarray) -> np.ndarray:
        """A 9-channel UNet's input: [scaled latents, mask, masked-image latents] on channels."""
        if not self._state.get("nine"):
            return model_input
        return np.concatenate([model_input, self._state["mask"], self._state["masked_latents"]], axis=1)

    def after_step(self, index: int, count: int, latents: np.ndarray) -> np.ndarray:
        """A 4-channel UNet inpaints by keeping the known region at the image's latents (noised to the next step)."""
        s = self._state
        if "mask" not in s or s["nine"]:
            return latents
        known = s["image_latents"]
        if index < count - 1:
            known = s["part"].add_noise(known, s["noise"], index + 1)
        mask = s["mask"]
        return ((np.float32(1.0) - mask) * known + mask * latents).astype(np.float32)


def encode(pipe: Any, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scaled latents of `image` ([1, 3, H, W] in [-1, 1]) through the bundle's vae_encoder: a seeded sample of
    its latent distribution when the encoder gives mean and log-variance, else its output."""
    if pipe.vae_encoder is None:
        pipe.vae_encoder = open_component(pipe.manifest, "vae_encoder", pipe.options)
    session = pipe.vae_encoder
    out = session.run({session.inputs[0].name: image.astype(np.float32)})[session.outputs[0].name]
    channels = pipe.latent_shape[1]
    if out.shape[1] == 2 * channels:
        mean, logvar = out[:, :channels], np.clip(out[:, channels:], -30.0, 20.0)
        std = np.exp(np.float32(0.5) * logvar).astype(np.float32)
        sample = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
    else:
        sample = out
    shift = np.float32(pipe.vae_shift_factor)
    return (np.float32(pipe.vae_scaling_factor) * (sample - shift if shift else sample)).astype(np.float32)


def check_bundle(pipe: Any, inputs: ImageInputs | None) -> None:
    """What the bundle needs for this request: an encoder for images, a mask for an inpainting UNet."""
    shape = pipe.latent_shape
    nine = pipe.unet_channels != shape[1]
    if inputs is None:
        if nine:
            raise ImageInputError(f"this bundle's UNet is an inpainting UNet ({pipe.unet_channels} input channels): "
                                  "give --image and --mask")
        return
    if "vae_encoder" not in pipe.manifest.components:
        raise ImageInputError("this bundle has no vae_encoder, which images need; re-convert it with "
                              "--components text_encoder,unet,vae_decoder,vae_encoder")
    if nine and inputs.mask is None:
        raise ImageInputError(f"this bundle's UNet is an inpainting UNet ({pipe.unet_channels} input channels): "
                              "give --mask with --image")
    if nine and pipe.unet_channels != 2 * shape[1] + 1:
        raise ImageInputError(f"the UNet takes {pipe.unet_channels} channels; inpainting needs {2 * shape[1] + 1} "
                              "(latents, mask, masked-image latents)")
    from edgediff.runtime.sizes import current_size

    height, width = current_size(pipe)
    if inputs.image.shape[2:] != (height, width):
        raise ImageInputError(f"the image is {inputs.image.shape[3]}x{inputs.image.shape[2]} but the bundle makes "
                              f"{width}x{height}")
