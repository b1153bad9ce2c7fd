"""Several image sizes in one bundle: the sizes a recipe asks for, and a component's tensor specs at each size.

A component is built (and slimmed) once, at the bundle's first size; its other sizes reuse the same module with
the spatial axes of its 4-D inputs and outputs rescaled. Which axes are spatial is read from the specs: the last
two dims of a 4-D tensor equal to the pixel size or the latent size (pixels / the VAE's downscale). Backends
read `Component.sizes` and realise them their own way (ONNX Runtime: dynamic spatial axes; LiteRT: one
signature per size; Core ML: enumerated shapes), always with one copy of the weights.

Sizes are written WIDTHxHEIGHT in recipes and on the command line (as image tools do) and kept as
(height, width) pairs in code and in the manifest (`pipeline.sizes`), matching pipeline.height / width order.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from edgediff.contract import TensorSpec
from edgediff.errors import RecipeError

Size = tuple[int, int]  # (height, width) in pixels
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")
MAX_SIZES = 8  # each size is one more signature / enumerated shape / verification run


def parse_size(text: str, where: str = "size") -> Size:
    """'WIDTHxHEIGHT' -> (height, width)."""
    match = _SIZE.match(str(text))
    if not match:
        raise RecipeError(f"{where} must be WIDTHxHEIGHT in pixels such as 512x768, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    return height, width


def size_name(size: Size) -> str:
    """(height, width) -> 'WIDTHxHEIGHT', the spelling users type."""
    return f"{size[1]}x{size[0]}"


def check_sizes(texts: list[str], max_side: int, where: str = "pipeline.sizes") -> list[Size]:
    """Parsed, checked sizes (multiples of 8 up to max_side, no repeats, at most MAX_SIZES)."""
    sizes = [parse_size(t, where) for t in texts]
    for h, w in sizes:
        if not (0 < h <= max_side and 0 < w <= max_side and h % 8 == 0 and w % 8 == 0):
            raise RecipeError(f"{where}: {w}x{h} must have both sides positive multiples of 8 up to {max_side}")
    if len(set(sizes)) != len(sizes):
        raise RecipeError(f"{where} lists a size twice: {', '.join(texts)}")
    if len(sizes) > MAX_SIZES:
        raise RecipeError(f"{where} lists {len(sizes)} sizes; at most {MAX_SIZES} (each one is converted and verified)")
    return sizes


def bundle_size_list(height: int, width: int, extra: list[str]) -> list[Size]:
    """The bundle's sizes: (height, width) first, then the recipe's other sizes in their order."""
    first = (height, width)
    return [first] + [s for s in check_sizes(extra, 1 << 14) if s != first]


def _spatial_factor(spec: TensorSpec, first: Size, factors: tuple[int, ...]) -> int | None:
    """The downscale k for which the spec's last two dims are first / k, or None when it has no spatial axes."""
    if len(spec.shape) != 4 or not all(isinstance(d, int) for d in spec.shape[-2:]):
        return None
    a, b = int(spec.shape[-2]), int(spec.shape[-1])
    for k in factors:
        if a * k == first[0] and b * k == first[1]:
            return k
    return None


def specs_at(specs: tuple[TensorSpec, ...], first: Size, size: Size, factors: tuple[int, ...]) -> tuple[TensorSpec, ...]:
    """The specs with their spatial axes at `size` instead of `first`."""
    out = []
    for spec in specs:
        k = _spatial_factor(spec, first, factors)
        if k is None:
            out.append(spec)
            continue
        if size[0] % k or size[1] % k:
            raise RecipeError(f"{size_name(size)} is not a multiple of {k} (the latent factor)")
        out.append(dataclasses.replace(spec, shape=(*spec.shape[:-2], size[0] // k, size[1] // k)))
    return tuple(out)


def at_size(component: Any, size: Size) -> Any:
    """The same component (same module, same int8 plan) with its specs at `size`; itself at its first size."""
    sizes = tuple(getattr(component, "sizes", ()) or ())
    if not sizes or size == sizes[0]:
        return component
    factors = tuple(getattr(component, "size_factors", ()) or (1, 8))
    return dataclasses.replace(component, inputs=specs_at(component.inputs, sizes[0], size, factors),
                               outputs=specs_at(component.outputs, sizes[0], size, factors))


def spatial_inputs(component: Any) -> dict[str, dict[int, list[int]]]:
    """For each input whose spatial axes change across the component's sizes: axis -> the values it takes."""
    sizes = tuple(getattr(component, "sizes", ()) or ())
    found: dict[str, dict[int, list[int]]] = {}
    variants = [at_size(component, s).inputs for s in sizes]
    for index, spec in enumerate(component.inputs):
        for axis in range(len(spec.shape)):
            values = sorted({int(v[index].shape[axis]) for v in variants})
            if len(values) > 1:
                found.setdefault(spec.name, {})[axis] = values
    return found


def torch_dynamic_shapes(component: Any) -> tuple[Any, ...] | None:
    """torch.export dynamic_shapes (positional, in input order) for the spatial axes that vary across sizes.

    Each axis is a multiple of the gcd of the values it takes, so a UNet's 'size divisible by the upsampling
    factor' check stays a static fact for the exporter instead of a guard it cannot prove."""
    axes = spatial_inputs(component)
    if not axes:
        return None
    from torch.export import Dim

    dims: dict[tuple[int, ...], Any] = {}
    shapes = []
    for spec in component.inputs:
        per_axis = {}
        for axis, values in axes.get(spec.name, {}).items():
            g = math.gcd(*values)
            key = (axis, g, values[0] // g, values[-1] // g)
            if key not in dims:  # the same axis of several inputs (a latent and a mask) shares one symbol
                dims[key] = g * Dim(f"{'hw'[axis - 2] if axis >= 2 else 'd'}{len(dims)}", min=max(1, values[0] // g),
                                    max=max(2, values[-1] // g)) if g > 1 else \
                    Dim(f"{'hw'[axis - 2] if axis >= 2 else 'd'}{len(dims)}", min=values[0], max=values[-1])
            per_axis[axis] = dims[key]
        shapes.append(per_axis or None)
    return tuple(shapes)


def attach(components: list[Any], sizes: list[Size], vae_scale: int) -> list[Any]:
    """Give every component the bundle's sizes (no-op for one size). Components without spatial inputs (text
    encoders) keep none: they are the same at every size."""
    if len(sizes) <= 1:
        return components
    for component in components:
        if component.name not in ("text_encoder", "unet", "vae_decoder", "vae_encoder"):
            raise RecipeError(f"several sizes (pipeline.sizes, --size) apply to Stable Diffusion pipelines; "
                              f"component '{component.name}' has one size: convert it once per size")
        if any(s.name == "time_ids" for s in component.inputs):
            raise RecipeError("an SDXL bundle has one size for now (its time ids carry the size): convert it once "
                              "per size (drop pipeline.sizes / --size)")
        if component.name == "controlnet":
            raise RecipeError("a ControlNet bundle has one size for now: convert it once per size "
                              "(drop pipeline.sizes / --size, or convert without --controlnet)")
        probe = dataclasses.replace(component, sizes=tuple(sizes), size_factors=(1, vae_scale))
        if spatial_inputs(probe):
            component.sizes, component.size_factors = tuple(sizes), (1, vae_scale)
    return components


def signature_name(size: Size, first: Size) -> str:
    """LiteRT signature of a size: the first size keeps 'serving_default' (what single-size readers open)."""
    from edgediff.runtime.sessions import SIZE_SIGNATURE_PREFIX

    return "serving_default" if size == first else f"{SIZE_SIGNATURE_PREFIX}{size_name(size)}"


def sizes_meta(component: Any, how: str, **extra: Any) -> dict[str, Any]:
    """The artifact's meta.sizes: which sizes its file holds and how (empty for a single-size component)."""
    if len(getattr(component, "sizes", ()) or ()) <= 1:
        return {}
    return {"sizes": {"sizes": [[h, w] for h, w in component.sizes], "how": how, **extra}}
