"""int8 calibration at every size of a bundle with several sizes (pipeline.sizes, convert --size).

A bundle with several sizes runs each int8 component at every one of them with the same quantization ranges, so
the ranges must be measured on what it sees at every size: a UNet's activations at 64x96 are not its activations
at 64x64 (attention over more tokens, other border statistics). The pipeline is captured once per size (each
capture cached like the first, keyed by its shapes); the plan (which layers stay float) is still searched at the
first size, where its sensitivity is measured, and the backends get range samples from every size: the first
size's as before plus as many from each other size, picked the same way (held-out every 4th, then evenly).
`plan.calibration["sizes"]` records per size the samples and their spatial shape, which is what the backends
were given. Components without spatial inputs (a text encoder) are the same at every size and calibrate once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from edgediff.slim import calibration as calib

Size = tuple[int, int]


def other_sizes(model: Any, components: list, sizes: list[str]) -> list[tuple[Size, list]]:
    """(size, the components with their specs at that size) for each size after the first; [] for one size."""
    if not sizes:
        return []
    from edgediff.model.component import vae_scale_factor
    from edgediff.model.sizes import at_size, bundle_size_list

    scale = vae_scale_factor(model.vae)
    latent = calib._latent_shape(model, {c.name: c for c in components})
    every = bundle_size_list(int(latent[-2]) * scale, int(latent[-1]) * scale, list(sizes))
    if len(every) <= 1:
        return []
    sized = [dataclasses.replace(c, sizes=tuple(every), size_factors=(1, scale)) for c in components]
    return [(size, [at_size(c, size) for c in sized]) for size in every[1:]]


def samples_at_other_sizes(model: Any, components: list, sizes: list[str], capture: Callable[[list], Any]
                           ) -> dict[str, dict[Size, list[dict[str, np.ndarray]]]]:
    """Component name -> size -> its captured samples at that size (`capture(components)` is the cached capture);
    only components whose inputs change with the size."""
    found: dict[str, dict[Size, list[dict[str, np.ndarray]]]] = {}
    by_name = {c.name: c for c in components}
    for size, at in other_sizes(model, components, sizes):
        changed = [c for c in at if c.inputs != by_name[c.name].inputs]
        if not changed:
            continue
        data = capture(at)
        for component in changed:
            found.setdefault(component.name, {})[size] = data.samples.get(component.name) or []
    return found


def _spatial(sample: dict[str, np.ndarray]) -> list[int]:
    """The shape of a sample's first 4-D input (the latent or image: what differs between sizes)."""
    return next((list(v.shape) for v in sample.values() if np.ndim(v) == 4), [])


def with_every_size(plan: Any, first: Size | None, samples: list[dict[str, np.ndarray]],
                    more: dict[Size, list[dict[str, np.ndarray]]], naive: bool) -> list[dict[str, np.ndarray]]:
    """The backends' range samples: the first size's plus, per other size, as many picked the same way; recorded in
    `plan.calibration["sizes"]` ("WxH" -> samples, sample shape). The naive baseline (one timestep, the first
    size) stays as it is."""
    if not more:
        return samples
    from edgediff.model.sizes import size_name

    record = {size_name(first) if first else "first": {"samples": len(samples), "sample_shape": _spatial(samples[0])}}
    out = list(samples)
    for size, captured in more.items():
        if naive or not captured:
            record[size_name(size)] = {"samples": 0, "sample_shape": [], "note": "naive baseline: first size only"
                                       if naive else "no samples captured"}
            continue
        kept, _ = calib.split_holdout(list(range(len(captured))))
        chosen = [captured[i] for i in calib.evenly(kept, len(samples))]
        out += chosen
        record[size_name(size)] = {"samples": len(chosen), "sample_shape": _spatial(chosen[0])}
    calibration = dict(getattr(plan, "calibration", None) or {})
    calibration["sizes"] = record
    plan.calibration = calibration
    return out


def first_size(model: Any, components: list) -> Size:
    """(height, width) in pixels of the components' specs (the latent times the VAE's downscale)."""
    from edgediff.model.component import vae_scale_factor

    scale = vae_scale_factor(model.vae)
    latent = calib._latent_shape(model, {c.name: c for c in components})
    return int(latent[-2]) * scale, int(latent[-1]) * scale
