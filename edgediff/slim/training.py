"""Shared HF Accelerate training loop for the slimming steps (distillation, pruning recovery).

One loop runs unchanged on one CPU process here, under `accelerate launch --num_processes 2 --cpu`,
and on GPUs elsewhere: Accelerate picks the device and wraps models for data parallelism. Runs are
resumable: every `checkpoint_every` steps the full state (models, optimizers, registered objects
such as an EMA copy) goes to `OUTPUT/checkpoints/step_NNNNNNN/` via `accelerator.save_state`, and a
new run in the same output dir continues from the newest one. Random draws for step `s` come from
a generator seeded with (seed, process index, s), so a resumed run sees the same data it would have.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgediff.errors import RecipeError

CHECKPOINTS_DIR = "checkpoints"
_STEP_FILE = "edgediff_step.json"


@dataclass
class StudentTrainingSettings:
    """What every teacher -> student run shares (pruning recovery, robust training); each step's
    settings add their own fields and defaults after these."""

    teacher: Path  # diffusers pipeline folder
    output: Path  # the student pipeline folder
    run_dir: Path  # checkpoints, log.jsonl, summary.json (resumable)
    max_steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lambda_sd: float = 1.0  # plain denoising loss
    lambda_kd_output: float = 1.0  # match the teacher's output
    uncond_prob: float = 0.1  # captions dropped, so the student keeps an unconditional branch for CFG
    seed: int = 0
    dataset_seed: int = 0
    data: str = ""  # "" = the shapes task; else a folder of images with metadata.jsonl (edgediff.slim.data)
    cache_size: int = 4096  # dataset samples encoded once and drawn from
    checkpoint_every: int = 200
    log_every: int = 10
    cpu: bool | None = None

    def __post_init__(self) -> None:
        self.teacher, self.output, self.run_dir = Path(self.teacher), Path(self.output), Path(self.run_dir)
        if self.batch_size < 1 or self.max_steps < 0:
            raise RecipeError("batch_size must be >= 1 and max_steps >= 0")


@dataclass
class LoopSettings:
    """How long to train and how often to save; the step function itself is the caller's."""

    output_dir: Path
    max_steps: int
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    resume: bool = True
    cpu: bool | None = None  # None: CPU unless a GPU is visible (or `accelerate launch --cpu` said so)
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    description: str = "train"
    max_seconds: float | None = None  # wall-time budget for this invocation: stop (and checkpoint) early

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        if self.max_steps < 0:
            raise RecipeError(f"max_steps must be >= 0, got {self.max_steps}")
        if self.checkpoint_every < 1:
            raise RecipeError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")


@dataclass
class LoopResult:
    start_step: int  # > 0 when the run resumed from a checkpoint
    final_step: int
    seconds: float
    last_metrics: dict[str, float]


def make_accelerator(settings: LoopSettings) -> Any:
    """An `accelerate.Accelerator` for this machine; seeds torch identically on every process."""
    try:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
    except ImportError as exc:  # pragma: no cover - accelerate is a declared dependency
        raise RecipeError("training needs HF Accelerate: pip install 'edgediff[train]'") from exc
    cpu = settings.cpu if settings.cpu is not None else not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=settings.mixed_precision,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
    )
    set_seed(settings.seed)  # same initial weights everywhere; data randomness comes from step_generator
    return accelerator


def step_generator(seed: int, process_index: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one step's random draws: differs per process (data parallel), stable across resumes."""
    gen = torch.Generator(device=device)
    gen.manual_seed(((seed * 1_000_003 + process_index) * 1_000_033 + step) % (2**63 - 1))
    return gen


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Completed checkpoints, oldest first (a checkpoint counts once its step file is written)."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if (p / _STEP_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator: Any, settings: LoopSettings, step: int) -> Path:
    """Save the full training state for `step` and drop all but the newest `keep_checkpoints`."""
    path = settings.output_dir / CHECKPOINTS_DIR / f"step_{step:07d}"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / _STEP_FILE).write_text(json.dumps({"step": step}))
        for old in checkpoint_dirs(settings.output_dir)[: -settings.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def resume_step(accelerator: Any, settings: LoopSettings) -> int:
    """Load the newest checkpoint in the output dir, if any and if resuming; return the step to start at."""
    if not settings.resume:
        return 0
    found = checkpoint_dirs(settings.output_dir)
    if not found:
        return 0
    latest = found[-1]
    accelerator.load_state(str(latest))
    step = int(json.loads((latest / _STEP_FILE).read_text())["step"])
    accelerator.print(f"resumed from {latest} (step {step})")
    return step


def run_loop(
    accelerator: Any,
    settings: LoopSettings,
    step_fn: Callable[[int], dict[str, float]],
) -> LoopResult:
    """Call `step_fn(step)` for each remaining step (it does forward, backward and optimizer step and
    returns scalar metrics), with a tqdm bar and a `log.jsonl` on the main process and periodic checkpoints.

    Models, optimizers and any extra state (e.g. `accelerator.register_for_checkpointing(ema)`) must be
    prepared/registered before this call so that resuming restores them.
    """
    from tqdm.auto import tqdm

    settings.output_dir.mkdir(parents=True, exist_ok=True)
    start = resume_step(accelerator, settings)
    log_path = settings.output_dir / "log.jsonl"
    bar = tqdm(
        total=settings.max_steps,
        initial=start,
        desc=settings.description,
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    metrics: dict[str, float] = {}
    began = time.perf_counter()
    step = start
    try:
        while step < settings.max_steps:
            metrics = step_fn(step)
            step += 1
            bar.update(1)
            if step % settings.log_every == 0 or step == settings.max_steps:
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
                if accelerator.is_main_process:
                    with log_path.open("a") as fh:
                        record = {"step": step, "seconds": round(time.perf_counter() - began, 3), **metrics}
                        fh.write(json.dumps(record) + "\n")
            if step % settings.checkpoint_every == 0 and step < settings.max_steps:
                save_checkpoint(accelerator, settings, step)
            if settings.max_seconds is not None and _out_of_time(accelerator, began, settings.max_seconds):
                accelerator.print(f"stopping at step {step}: the {settings.max_seconds:.0f}s budget is spent (rerun to resume)")
                break
    finally:
        bar.close()
    if step > start:
        save_checkpoint(accelerator, settings, step)
    return LoopResult(start_step=start, final_step=step, seconds=time.perf_counter() - began, last_metrics=metrics)


def _out_of_time(accelerator: Any, began: float, budget: float) -> bool:
    """All processes stop at the same step: any one over budget stops them all."""
    over = torch.tensor([1.0 if time.perf_counter() - began > budget else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(over, reduction="sum").item() > 0)


def reduce_mean(accelerator: Any, value: torch.Tensor) -> float:
    """The mean of a scalar over all processes (for logging the same number everywhere)."""
    return float(accelerator.reduce(value.detach().reshape(1), reduction="mean").item())


def write_student_pipeline(pipe: Any, unet: Any, scheduler: Any, output: Path, teacher: Path) -> Path:
    """Save the teacher pipeline with the student's UNet and scheduler swapped in. The tokenizer folder is the
    teacher's, copied file for file: transformers' save_pretrained writes only tokenizer.json, while the runtime
    and the device apps read vocab.json and merges.txt."""
    from diffusers import StableDiffusionPipeline

    out = StableDiffusionPipeline(
        vae=pipe.vae.cpu(), text_encoder=pipe.text_encoder.cpu(), tokenizer=pipe.tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    out.save_pretrained(str(output), safe_serialization=True)
    teacher_tokenizer = Path(teacher) / "tokenizer"
    if teacher_tokenizer.is_dir():
        shutil.rmtree(output / "tokenizer")
        shutil.copytree(teacher_tokenizer, output / "tokenizer")
    return output
