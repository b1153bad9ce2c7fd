"""One component of a model as the stages hand it on (module, tensor specs, ranges), and the VAE's factors: a leaf
module, so the family builders (model/sdxl.py, model/controlnet.py) and model/components.py can all import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgediff.contract import Int8Inputs, TensorSpec

TEXT_LENGTH = 77


@dataclass
class Component:
    """One exportable network with fixed shapes and a seeded generator of realistic inputs."""

    name: str
    module: Any  # torch.nn.Module
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    input_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # for int inputs / timesteps
    input_scales: dict[str, float] = field(default_factory=dict)  # std of normal float inputs
    int8: Int8Inputs | None = None  # the quantize step's plan and calibration, read by every backend at int8
    # (height, width) pixel sizes the bundle makes, the first the one the specs fix; () = that one size only.
    # Backends realise the others without copying weights (edgediff/model/sizes.py).
    sizes: tuple[tuple[int, int], ...] = ()
    size_factors: tuple[int, ...] = ()  # downscales of spatial axes (1: pixels, the VAE's: latents)

    @property
    def keep_float(self) -> tuple[str, ...]:
        """Layers whose weights the int8 plan keeps float (what weight-only backends realise)."""
        return tuple(self.int8.plan.float_weight_layers()) if self.int8 else ()

    def example_inputs(self, seed: int) -> dict[str, np.ndarray]:
        """Seeded inputs in each tensor's real operating range (token ids, timesteps, scaled latents)."""
        rng = np.random.default_rng(seed)
        values = {}
        for spec in self.inputs:
            if spec.dtype.startswith("int"):
                low, high = self.input_ranges.get(spec.name, (0, 1000))
                values[spec.name] = rng.integers(int(low), int(high), size=spec.dims).astype(spec.dtype)
            elif spec.name in self.input_ranges:
                low, high = self.input_ranges[spec.name]
                values[spec.name] = rng.uniform(low, high, size=spec.dims).astype(spec.dtype)
            else:
                scale = self.input_scales.get(spec.name, 1.0)
                values[spec.name] = (rng.standard_normal(spec.dims) * scale).astype(spec.dtype)
        return values

    def run_torch(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in self.inputs]
        with torch.inference_mode():
            result = self.module(*args)
        if not isinstance(result, (tuple, list)):
            result = (result,)
        return {s.name: r.detach().float().numpy() for s, r in zip(self.outputs, result)}

    def example_args(self, seed: int = 0) -> tuple:
        import torch

        values = self.example_inputs(seed)
        return tuple(torch.from_numpy(values[s.name]) for s in self.inputs)


@dataclass(frozen=True)
class ComponentShapes:
    """The fixed shapes a recipe asks for."""

    height: int
    width: int
    batched_cfg: bool = True
    text_length: int = TEXT_LENGTH


def vae_scale_factor(vae) -> int:
    if vae is None:
        return 8
    config = vae.config
    channels = getattr(config, "block_out_channels", None) or config.encoder_block_out_channels
    return 2 ** (len(channels) - 1)


def vae_scaling_factor(vae) -> float:
    return float(getattr(vae.config, "scaling_factor", 1.0)) if vae is not None else 1.0
