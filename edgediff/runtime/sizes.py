"""The image sizes a bundle makes, and the door `generate --height --width` goes through.

A bundle makes pipeline.height x width (latent_shape is that size over the VAE's downscale) and, when it was
converted with several sizes (recipe pipeline.sizes, convert --size), every (height, width) in pipeline.sizes,
the first being height x width. Every size request passes `pick_size`, so a size that is not a multiple of the
latent factor, or that the bundle lacks, is refused naming the sizes it has, before anything runs; `use_size`
then points a loaded pipeline at it (the sessions pick the matching graph, signature or enumerated shape from
the inputs' shapes).
"""

from __future__ import annotations

from typing import Any

from edgediff.contract import Manifest
from edgediff.errors import ImageInputError, ModelLoadError


def bundle_sizes(manifest: Manifest) -> list[tuple[int, int]]:
    """(height, width) pairs the bundle's artifacts were built for, the default first."""
    pipe = manifest.require_pipeline()
    first = (int(pipe["height"]), int(pipe["width"]))
    listed = pipe.get("sizes")
    if listed is None:  # a single-size bundle (and every bundle written before sizes existed)
        return [first]
    if not isinstance(listed, list) or not listed or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v
                                                        <= 1 << 14 for v in s) for s in listed):
        raise ModelLoadError(f"{manifest.root}/manifest.json: pipeline.sizes must be a list of [height, width] "
                             "pairs of pixel counts; the manifest was altered")
    sizes = [(int(h), int(w)) for h, w in listed]
    if sizes[0] != first:
        raise ModelLoadError(f"{manifest.root}/manifest.json: pipeline.sizes starts with {sizes[0]}, not "
                             f"pipeline.height x width {first}; the manifest was altered")
    return sizes


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


def use_size(pipe: Any, height: int | None, width: int | None) -> tuple[int, int]:
    """Check the size (`pick_size`) and make the loaded pipeline generate at it: its latent shape changes, and
    each session picks the graph, signature or enumerated shape of that size from its inputs' shapes."""
    h, w = pick_size(pipe.manifest, height, width)
    factor = latent_factor(pipe.manifest)
    shape = tuple(pipe.manifest.latent_shape)
    pipe.latent_shape = (shape[0], shape[1], h // factor, w // factor)
    return h, w


def current_size(pipe: Any) -> tuple[int, int]:
    """The (height, width) a loaded pipeline generates now (the first size until `use_size`)."""
    factor = latent_factor(pipe.manifest)
    return int(pipe.latent_shape[2]) * factor, int(pipe.latent_shape[3]) * factor
