"""`DistillSettings` (everything a run needs, validated) and the learning-rate schedule it defines.

Separate because the CLI, the recipe step and every loss read the settings, and none of them needs torch
to build or check them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgediff import defaults
from edgediff.errors import RecipeError

METHODS = ("consistency", "step")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class DistillSettings:
    """Everything a distillation run needs; the CLI and the recipe's `distill` step fill it."""

    teacher: Path
    output: Path  # the student's diffusers folder
    run_dir: Path  # checkpoints and log.jsonl (resumable)
    method: str = "consistency"
    steps: int = 4  # the student's default number of sampling steps (recorded in edgediff.json)
    guidance: float = defaults.GUIDANCE  # the CFG scale recorded as the student's default (and the LoRA's fixed scale)
    guidance_min: float = 2.0  # range of CFG scales sampled during training
    guidance_max: float = 9.0
    guidance_embedding_dim: int = 256
    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"  # or "cosine": from learning_rate to 0 at max_steps (see learning_rate_at)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    dataset_seed: int = 0
    data: str = ""  # "" = the shapes task; else a folder of images with metadata.jsonl (edgediff.slim.data)
    cache_size: int = 4096  # dataset samples encoded once and drawn from
    checkpoint_every: int = 200
    log_every: int = 10
    # consistency distillation
    ode_steps: int = 50  # DDIM solver grid; skipping k = num_train_timesteps // ode_steps
    ema_decay: float = 0.95
    huber_c: float = 0.001
    timestep_scaling: float = 10.0
    lora_rank: int = 0  # > 0: LCM-LoRA style adapters on the teacher, fused before saving
    lora_alpha: float | None = None
    # step distillation
    teacher_steps: int = 32  # resolution of the teacher trajectory the student follows
    guided_fraction: float = 0.5
    denoise_weight: float = 0.1
    rollout_fraction: float = 0.0  # share of batches whose inputs come from the student's own earlier steps
    cpu: bool | None = None
    max_minutes: float | None = None  # wall-time budget of one invocation (rerun to resume)
    student_init: Path | None = None  # a UNet folder to start the student from (e.g. pruned); None = the teacher's

    def __post_init__(self) -> None:
        self.teacher, self.output, self.run_dir = Path(self.teacher), Path(self.output), Path(self.run_dir)
        self.student_init = Path(self.student_init) if self.student_init else None
        if self.method not in METHODS:
            raise RecipeError(f"unknown distillation method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.steps < 1 or self.batch_size < 1:
            raise RecipeError("steps and batch_size must be >= 1")
        if not 1.0 <= self.guidance_min <= self.guidance_max:
            raise RecipeError(
                f"guidance range [{self.guidance_min}, {self.guidance_max}] is invalid: need 1 <= min <= max "
                "(1 means no guidance)"
            )
        if self.method == "step" and self.teacher_steps % self.steps:
            raise RecipeError(
                f"teacher_steps ({self.teacher_steps}) must be a multiple of steps ({self.steps}) so each "
                "student step covers a whole number of teacher steps"
            )
        if not 0.0 <= self.rollout_fraction <= 1.0:
            raise RecipeError(f"rollout_fraction must be in [0, 1], got {self.rollout_fraction}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise RecipeError(f"unknown lr_schedule {self.lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}")
        if self.lora_rank and self.method != "consistency":
            raise RecipeError("lora_rank is only supported with method='consistency' (LCM-LoRA)")

    @property
    def embeds_guidance(self) -> bool:
        return self.lora_rank == 0


def learning_rate_at(settings: DistillSettings, step: int) -> float:
    """The learning rate of iteration `step`: constant, or a cosine from `learning_rate` down to 0 at
    `max_steps`. A function of the step alone (no scheduler state), so a resumed run - even one resumed
    with a longer `max_steps` - continues on the schedule it is given."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    progress = min(max(step / max(settings.max_steps, 1), 0.0), 1.0)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))
