"""`distill()`: one resumable training run for either method on the shared loop, and the saved student.

Separate from the methods: accelerator setup, the optimiser, EMA, checkpoints, replica digests and the
student folder are the same whichever loss is trained.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from edgediff import __version__
from edgediff.slim.data import training_data
from edgediff.slim.distill.consistency import consistency_loss, lcm_scheduler_config
from edgediff.slim.distill.data import EncodedLatents, PromptEncoder, cache_file, native_size
from edgediff.slim.distill.defaults import ModelDefaults, model_defaults, write_model_defaults
from edgediff.slim.distill.models import add_lora, fuse_lora, make_student_unet
from edgediff.slim.distill.settings import DistillSettings, learning_rate_at
from edgediff.slim.distill.step_distill import step_distill_loss, step_scheduler_config, student_timesteps
from edgediff.slim.distill.teacher import Schedule, load_teacher
from edgediff.slim.training import (
    LoopResult,
    LoopSettings,
    make_accelerator,
    reduce_mean,
    run_loop,
    step_generator,
    write_student_pipeline,
)

# diffusers is imported inside the functions that build or load models: it costs seconds and prints warnings
# on import, and this package is imported by every recipe run (edgediff.slim.steps registers `distill`).

@dataclass
class DistillResult:
    output: Path
    loop: LoopResult
    num_processes: int
    replica_digests: list[str]
    defaults: ModelDefaults | None

    @property
    def replicas_identical(self) -> bool:
        return len(set(self.replica_digests)) == 1


def parameter_digest(module: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes, in order: equal digests mean bit-identical replicas."""
    h = hashlib.sha256()
    for name, p in module.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def distill(settings: DistillSettings) -> DistillResult:
    """Train a few-step student from the teacher folder and save it as its own diffusers folder."""
    from accelerate.utils import gather_object  # optional dependency (the `train` extra): only a run needs it

    loop = LoopSettings(
        output_dir=settings.run_dir, max_steps=settings.max_steps, seed=settings.seed,
        checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, cpu=settings.cpu,
        description=f"distill ({settings.method}, {settings.steps} steps)",
        max_seconds=settings.max_minutes * 60 if settings.max_minutes else None,
    )
    accelerator = make_accelerator(loop)
    device = accelerator.device
    pipe = load_teacher(settings.teacher)
    teacher = pipe.unet.to(device).eval().requires_grad_(False)
    pipe.vae.to(device).eval().requires_grad_(False)
    pipe.text_encoder.to(device).eval().requires_grad_(False)
    sched = Schedule.from_scheduler(pipe.scheduler)
    teacher_sched_config = dict(pipe.scheduler.config)

    embed_dim = settings.guidance_embedding_dim if settings.embeds_guidance else None
    student = make_student_unet(_initial_unet(settings, teacher), embed_dim)
    if settings.lora_rank:
        add_lora(student, settings.lora_rank, settings.lora_alpha)
    student.train()
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    student, optimizer = accelerator.prepare(student, optimizer)

    target = None
    if settings.method == "consistency":
        target = make_student_unet(teacher, embed_dim)
        if settings.lora_rank:
            add_lora(target, settings.lora_rank, settings.lora_alpha)
        target.load_state_dict(accelerator.unwrap_model(student).state_dict())
        target.to(device).eval().requires_grad_(False)
        accelerator.register_for_checkpointing(target)

    source = training_data(settings.data, settings.dataset_seed, native_size(pipe))
    with accelerator.main_process_first():  # one process encodes, the others load its file
        data = EncodedLatents(pipe.vae, source, settings.cache_size,
                              cache_file(settings.run_dir, source, settings.cache_size))
    prompts = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    grid = student_timesteps(teacher_sched_config, settings.steps) if settings.method == "step" else None

    def train_step(step: int) -> dict[str, float]:
        gen = step_generator(settings.seed, accelerator.process_index, step)
        x0, captions = data.batch(gen, settings.batch_size, device)
        text = prompts(captions, device)
        empty = prompts.empty(len(captions), device)
        if settings.method == "consistency":
            loss, extra = consistency_loss(student, target, teacher, sched, settings, x0, text, empty, gen)
        else:
            loss, extra = step_distill_loss(student, teacher, sched, settings, grid, x0, text, empty, gen)
        lr = learning_rate_at(settings, step)
        for group in optimizer.param_groups:  # also overrides the rate a resumed optimizer state carries
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        if target is not None:
            with torch.no_grad():
                online = accelerator.unwrap_model(student).state_dict()
                for name, value in target.state_dict().items():
                    if value.is_floating_point():
                        value.mul_(settings.ema_decay).add_(online[name].detach(), alpha=1 - settings.ema_decay)
        return {"loss": reduce_mean(accelerator, loss), "lr": lr, **extra}

    result = run_loop(accelerator, loop, train_step)
    final = accelerator.unwrap_model(student)
    digests = gather_object([parameter_digest(final)])
    defaults = None
    if accelerator.is_main_process:
        defaults = save_student(pipe, final, settings, teacher_sched_config, result)
        summary = {
            "edgediff_version": __version__,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
            "start_step": result.start_step, "final_step": result.final_step, "seconds": round(result.seconds, 1),
            "num_processes": accelerator.num_processes, "replica_digests": digests,
            "replicas_identical": len(set(digests)) == 1, "last_metrics": result.last_metrics,
        }
        (settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    accelerator.wait_for_everyone()
    return DistillResult(settings.output, result, accelerator.num_processes, digests, defaults)


def _initial_unet(settings: DistillSettings, teacher: Any) -> Any:
    """What the student starts from: the teacher's UNet, or `student_init` (a pruned UNet: prune -> distill)."""
    if settings.student_init is None:
        return teacher
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(settings.student_init), use_safetensors=True)


def _portable(path: Path) -> str:
    """A path relative to the working directory when it is inside it (committed folders stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def save_student(pipe: Any, student: Any, settings: DistillSettings, teacher_sched_config: dict[str, Any], loop: LoopResult) -> ModelDefaults:
    """Write the student pipeline (teacher's text encoder, tokenizer and VAE; the student's UNet and
    scheduler) and its edgediff.json."""
    from diffusers import DDIMScheduler, LCMScheduler

    unet = copy.deepcopy(student).cpu().eval()
    if settings.lora_rank:
        fuse_lora(unet)
    if settings.method == "consistency":
        scheduler = LCMScheduler.from_config(lcm_scheduler_config(teacher_sched_config, settings))
    else:
        scheduler = DDIMScheduler.from_config(step_scheduler_config(teacher_sched_config))
    write_student_pipeline(pipe, unet, scheduler, settings.output, settings.teacher)
    provenance = {
        "method": settings.method + ("+lora" if settings.lora_rank else ""),
        "teacher": _portable(settings.teacher),
        "train_steps": loop.final_step,
        "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate,
        "lr_schedule": settings.lr_schedule,
        "guidance_range": [settings.guidance_min, settings.guidance_max],
    }
    if settings.method == "consistency":
        provenance.update(ode_steps=settings.ode_steps, ema_decay=settings.ema_decay, huber_c=settings.huber_c)
    else:
        provenance.update(teacher_steps=settings.teacher_steps, guided_fraction=settings.guided_fraction,
                          denoise_weight=settings.denoise_weight, rollout_fraction=settings.rollout_fraction)
    embed_dim = settings.guidance_embedding_dim if settings.embeds_guidance else None
    # A fused LCM-LoRA reproduces its fixed training scale with no guidance input: sample at scale 1.
    guidance = settings.guidance if settings.embeds_guidance else 1.0
    if not settings.embeds_guidance:
        provenance["distilled_guidance"] = settings.guidance
    defaults = model_defaults(settings.steps, guidance, embed_dim, type(scheduler).__name__, provenance)
    write_model_defaults(settings.output, defaults)
    return defaults
