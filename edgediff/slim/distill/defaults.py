"""`edgediff.json` in a model folder: the steps, guidance and guidance embedding a model must be sampled with.

Separate because eval, convert, the runtime and pruning read it, not only distillation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgediff.slim.distill.maths import guidance_embedding

MODEL_DEFAULTS_FILE = "edgediff.json"
MODEL_DEFAULTS_FORMAT = "edgediff-model/1"


@dataclass
class ModelDefaults:
    """`edgediff.json` in a model folder: how the model must be sampled (read by eval, convert, runtime).

    - steps: default number of sampling steps.
    - guidance: the value for diffusers' `guidance_scale` (for a UNet with a guidance input this is the
      scale it reproduces, fed as `timestep_cond`, not a classifier-free batch).
    - batched_cfg: whether each step runs the UNet on [uncond, cond] (B=2) and mixes them.
    - guidance_embedding: None, or {"scale", "w" (= scale - 1), "dim", "timestep_cond": [dim floats]}:
      the exact `timestep_cond` [1, dim] row to feed the UNet at every step.
    - scheduler: the diffusers class in scheduler/scheduler_config.json (informational).
    """

    steps: int
    guidance: float
    batched_cfg: bool
    scheduler: str
    guidance_embedding: dict[str, Any] | None = None
    distillation: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_DEFAULTS_FORMAT


def model_defaults(steps: int, guidance: float, embedding_dim: int | None, scheduler: str, provenance: dict[str, Any]) -> ModelDefaults:
    embedding = None
    if embedding_dim is not None:
        row = guidance_embedding(torch.tensor([guidance - 1.0]), embedding_dim)[0]
        embedding = {"scale": guidance, "w": guidance - 1.0, "dim": embedding_dim, "timestep_cond": [float(v) for v in row]}
    batched = embedding_dim is None and guidance > 1.0
    return ModelDefaults(steps=steps, guidance=guidance, batched_cfg=batched, scheduler=scheduler,
                         guidance_embedding=embedding, distillation=provenance)


def write_model_defaults(folder: Path, defaults: ModelDefaults) -> Path:
    path = Path(folder) / MODEL_DEFAULTS_FILE
    path.write_text(json.dumps(asdict(defaults), indent=1) + "\n")
    return path


def read_model_defaults(folder: Path) -> dict[str, Any]:
    """The folder's edgediff.json as a dict ({} when absent)."""
    path = Path(folder) / MODEL_DEFAULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
