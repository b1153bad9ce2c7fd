"""The image sizes a bundle makes, and the door `generate --height --width` goes through.

A bundle is converted for one size today (the manifest's pipeline.height and width; latent_shape is that size
over the VAE's downscale). Every size request passes `pick_size`, so a size that is not a multiple of the latent
factor, or that the bundle lacks, is refused naming the sizes it has, before anything runs.
"""

from __future__ import annotations

from edgediff.contract import Manifest
from edgediff.errors import ImageInputError


def bundle_sizes(manifest: Manifest) -> list[tuple[int, int]]:
    """(height, width) pairs the bundle's artifacts were built for."""
    pipe = manifest.require_pipeline()
    return [(int(pipe["height"]), int(pipe["width"]))]


def latent_factor(manifest: Manifest) -> int:
    """Pixels per latent cell (the VAE's downscale, 8 for Stable Diffusion)."""
    height = int(manifest.require_pipeline()["height"])
    return max(1, height // int(manifest.latent_shape[2]))


def describe(sizes: list[tuple[int, int]]) -> str:
    return ", ".join(f"{w}x{h}" for h, w in sizes) + " (width x height)"


def pick_size(manifest: Manifest, height: int | None, width: int | None) -> tuple[int, int]:
    """The requested size if the bundle has it; the bundle's first size when neither is given."""
    sizes = bundle_sizes(manifest)
    if height is None and width is None:
        return sizes[0]
    if height is None or width is None:
        raise ImageInputError(f"give both --height and --width (this bundle makes {describe(sizes)})")
    factor = latent_factor(manifest)
    if height % factor or width % factor:
        raise ImageInputError(f"{width}x{height} is not a multiple of {factor} (the latent factor); this bundle "
                              f"makes {describe(sizes)}")
    if (height, width) not in sizes:
        raise ImageInputError(f"this bundle has no {width}x{height} artifacts; it makes {describe(sizes)} "
                              "(convert with that size to get one)")
    return height, width
