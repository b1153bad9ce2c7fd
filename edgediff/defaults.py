"""Every default a run falls back to when neither the recipe, the CLI nor the model folder says otherwise.

One place, so `--dry-run`, the bundle's `recipe.toml` and the report all show the same resolved values.
"""

from __future__ import annotations

from edgediff.contract import Precision

STEPS = 25  # denoising steps when the model folder's edgediff.json does not give them
GUIDANCE = 7.5  # classifier-free guidance scale, likewise
SCHEDULER = "EulerDiscreteScheduler"  # when the folder has no scheduler config
NON_PIPELINE_RESOLUTION = 512  # image size for UNet-only or VAE-only folders without a UNet config

# Per-component parity gate by precision (PSNR peak = range of the PyTorch output). 35 dB is Apple's fp16 gate.
MIN_PSNR_DB: dict[Precision, float] = {"fp32": 40.0, "fp16": 35.0, "int8": 20.0}
MIN_COSINE: dict[Precision, float] = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}
# End-to-end image gate (8-bit images, PyTorch vs artifacts, same tokens, scheduler and noise).
MIN_IMAGE_PSNR_DB: dict[Precision, float] = {"fp32": 30.0, "fp16": 30.0, "int8": 20.0}
