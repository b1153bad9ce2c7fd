"""What loading produces, whatever the source (a diffusers folder, a single checkpoint file, a custom network):
its own module so every loader can build it without importing the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RANDOM_WEIGHTS_SEED = 0  # seeded random weights for architecture tests (--random-weights)


@dataclass
class LoadedModel:
    """Everything the later stages need, as PyTorch modules in eval mode plus the files devices need."""

    source: str
    kind: str  # "pipeline", "unet", "vae" or "custom"
    random_weights: bool = False
    text_encoder: Any = None
    text_encoder_2: Any = None  # SDXL's second text encoder (CLIPTextModelWithProjection)
    unet: Any = None
    vae: Any = None
    custom: Any = None
    controlnet: Any = None  # a diffusers ControlNetModel (edgediff.model.controlnet), when --controlnet is given
    tokenizer_dir: Path | None = None
    tokenizer_2_dir: Path | None = None  # SDXL's second tokenizer (pads with "!")
    pipeline_config: dict[str, Any] = field(default_factory=dict)  # model_index.json's options (SDXL's below)
    scheduler_class: str | None = None
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # from an optional edgediff.json in the folder
    details: dict[str, Any] = field(default_factory=dict)  # provenance for the manifest's source (single file, LoRAs)

    def parameter_count(self) -> int:
        modules = [m for m in (self.text_encoder, self.text_encoder_2, self.unet, self.vae, self.custom)
                   if m is not None]
        return sum(p.numel() for m in modules for p in m.parameters())
