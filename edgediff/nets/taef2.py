"""TAEF2: a tiny autoencoder distilled from the FLUX.2 VAE (madebyollin/taesd), written from its description.

Both halves are one `nn.Sequential` whose indices match the published state dicts (`0.weight`,
`3.conv.0.weight`, `3.pool.1.bias`, ...), so `load_state_dict(torch.load(path, weights_only=True))` works as is.
Latents have 32 channels at 1/8 resolution; the encoder takes RGB in [0, 1] and the decoder returns RGB roughly
in [0, 1] (clamp before display). Only torch is imported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

LATENT_CHANNELS = 32
WIDTH = 64
DOWNSCALE = 8


def _conv(c_in: int, c_out: int, bias: bool = True, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the raw latent: tanh(x / 3) * 3 keeps outliers from blowing up the first conv."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block: ReLU(conv(x) + skip(x)), with an optional GroupNorm'd 1x1 bottleneck added first."""

    def __init__(self, c_in: int, c_out: int, use_pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(_conv(c_in, c_out), nn.ReLU(), _conv(c_out, c_out), nn.ReLU(), _conv(c_out, c_out))
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.pool = None
        if use_pool:
            self.pool = nn.Sequential(nn.Conv2d(c_in, 4 * c_in, 1, bias=False), nn.GroupNorm(4, 4 * c_in), nn.ReLU(),
                                      nn.Conv2d(4 * c_in, c_in, 1, bias=False))
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


class TAEF2Encoder(nn.Sequential):
    """RGB [1, 3, H, W] in [0, 1] -> latent [1, 32, H/8, W/8]."""

    def __init__(self):
        c = WIDTH
        layers: list[nn.Module] = [_conv(3, c), Block(c, c)]
        for stage in range(3):
            gn = stage == 2
            layers += [_conv(c, c, bias=False, stride=2), Block(c, c, gn), Block(c, c, gn), Block(c, c, gn)]
        layers.append(_conv(c, LATENT_CHANNELS))
        super().__init__(*layers)


class TAEF2Decoder(nn.Sequential):
    """Latent [1, 32, h, w] -> RGB [1, 3, 8h, 8w], roughly in [0, 1]."""

    def __init__(self):
        c = WIDTH
        layers: list[nn.Module] = [Clamp(), _conv(LATENT_CHANNELS, c), nn.ReLU()]
        for stage in range(3):
            gn = stage == 0
            layers += [Block(c, c, gn), Block(c, c, gn), Block(c, c, gn),
                       nn.Upsample(scale_factor=2), _conv(c, c, bias=False)]
        layers += [Block(c, c), _conv(c, 3)]
        super().__init__(*layers)


def load_taef2(part: str, weights: str | Path) -> nn.Module:
    """`part` is "encoder" or "decoder"; weights are read with torch.load(weights_only=True)."""
    module = {"encoder": TAEF2Encoder, "decoder": TAEF2Decoder}[part]()
    module.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True), strict=True)
    return module.eval().requires_grad_(False)


def image_tensor(path: str | Path, width: int = 512, height: int | None = None) -> torch.Tensor:
    """A photo as [1, 3, H, W] in [0, 1]: resized to `width` (aspect kept), then the height center-cropped to
    `height` (fixed-shape artifacts need one size for every photo) or else to a multiple of 8."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    resized = max(DOWNSCALE, round(image.height * width / image.width))
    image = image.resize((width, resized), Image.Resampling.BICUBIC)
    crop = height if height is not None else resized - resized % DOWNSCALE
    if crop > resized or crop % DOWNSCALE:
        raise ValueError(f"{path}: cannot crop {resized} rows to {crop} (needs <= {resized}, a multiple of 8)")
    top = (resized - crop) // 2
    array = np.asarray(image, dtype=np.float32)[top:top + crop] / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None]


def psnr(reference, candidate) -> float:
    """PSNR in dB of images in [0, 1] (peak 1); the candidate is clamped to [0, 1] as a viewer would."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    got = np.clip(np.asarray(candidate, dtype=np.float64), 0.0, 1.0)
    mse = float(np.mean((ref - got) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))
