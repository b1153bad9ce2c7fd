"""Few-step students for a latent diffusion teacher, shipped with the sampler they need.

Two methods, both training a student UNet that takes the guidance scale as an input (diffusers'
`time_cond_proj_dim`: the scale w = s - 1 goes through a sinusoidal embedding into `timestep_cond`, which
a zero-initialised linear layer adds to the time embedding, so the student starts equal to the
teacher). A student that learned the guidance runs the UNet once per step: no unconditional batch.

- `consistency` (Latent Consistency Models): from a noised latent at a DDIM-solver timestep t_{n+k},
  the teacher takes one guided DDIM step (skipping k = T / ode_steps timesteps) to t_n; the student's
  consistency function f(x, t) = c_skip(t) x + c_out(t) x0_pred at t_{n+k} must match an EMA copy's at
  t_n (pseudo-Huber loss). Sampled with diffusers' `LCMScheduler` (multi-step, re-noising).
  With `lora_rank > 0` only low-rank adapters on the teacher are trained (LCM-LoRA style) at one fixed
  guidance scale and fused into the weights before saving; that student has no guidance input.
- `step` (CFG-aware step distillation, SnapFusion-style): the student at N DDIM steps (trailing spacing)
  must land where the teacher's finer DDIM trajectory (teacher_steps / N substeps per student step)
  lands; a fraction of iterations uses the teacher's guided outputs at a sampled scale (the student is
  told the scale), the rest the conditional ones, plus a small plain denoising loss. Sampled with
  `DDIMScheduler(timestep_spacing="trailing")` at exactly N steps.

Training data: the teacher needs latents x0 to noise. We use the shapes dataset (deterministic, no files)
through the teacher's own VAE encoder, with the images' captions as prompts: a few thousand pairs are
encoded once per run (cached in the run dir) and batches drawn from them. Targets come from the teacher
anyway; generating x0 by running the teacher for 25+ guided steps per sample would cost ~50x more.

The student folder is a stock diffusers StableDiffusionPipeline (any diffusers version loads it and
StableDiffusionPipeline samples it correctly with `guidance_scale`) plus `edgediff.json` (see
`write_model_defaults`) that tells edgediff's eval, convert and runtime the steps and guidance to use.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgediff.errors import ModelLoadError, RecipeError
from edgediff.slim.training import LoopResult, LoopSettings, make_accelerator, reduce_mean, run_loop, step_generator

METHODS = ("consistency", "step")
LR_SCHEDULES = ("constant", "cosine")
MODEL_DEFAULTS_FILE = "edgediff.json"
MODEL_DEFAULTS_FORMAT = "edgediff-model/1"
_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2")


@dataclass
class DistillSettings:
    """Everything a distillation run needs; the CLI and the recipe's `distill` step fill it."""

    teacher: Path
    output: Path  # the student's diffusers folder
    run_dir: Path  # checkpoints and log.jsonl (resumable)
    method: str = "consistency"
    steps: int = 4  # the student's default number of sampling steps (recorded in edgediff.json)
    guidance: float = 7.5  # the CFG scale recorded as the student's default (and the LoRA's fixed scale)
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

    def __post_init__(self) -> None:
        self.teacher, self.output, self.run_dir = Path(self.teacher), Path(self.output), Path(self.run_dir)
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


# ---------------------------------------------------------------------------------------------- maths


def learning_rate_at(settings: DistillSettings, step: int) -> float:
    """The learning rate of iteration `step`: constant, or a cosine from `learning_rate` down to 0 at
    `max_steps`. A function of the step alone (no scheduler state), so a resumed run - even one resumed
    with a longer `max_steps` - continues on the schedule it is given."""
    if settings.lr_schedule == "constant":
        return settings.learning_rate
    progress = min(max(step / max(settings.max_steps, 1), 0.0), 1.0)
    return settings.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of w (= CFG scale - 1) as the `timestep_cond` input: [B] -> [B, dim].

    Same convention as diffusers' LCM and StableDiffusion pipelines (w scaled by 1000, log-spaced
    frequencies from 1 to 1/10000, sines then cosines, zero-padded if dim is odd)."""
    w = w.float().reshape(-1) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :].to(w.device)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def boundary_scalings(t: torch.Tensor, timestep_scaling: float, sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """LCM's c_skip(t), c_out(t): f(x, 0) = x exactly, f(x, t) ~ predicted x0 for t >> 0."""
    scaled = t.float() * timestep_scaling
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def _bcast(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def split_prediction(out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a UNet output for the prediction types diffusers SD schedulers use."""
    a, s = _bcast(alpha_bar).sqrt(), _bcast(1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        return (x - s * out) / a, out
    if prediction_type == "v_prediction":
        return a * x - s * out, a * out + s * x
    if prediction_type == "sample":
        return out, (x - a * out) / s
    raise ModelLoadError(f"unsupported scheduler prediction_type {prediction_type!r} (epsilon, v_prediction or sample)")


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_next: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) to the next alpha_bar."""
    return _bcast(alpha_bar_next).sqrt() * x0 + _bcast(1 - alpha_bar_next).sqrt() * eps


def ddim_x0_target(x_t: torch.Tensor, x_end: torch.Tensor, alpha_bar_t: torch.Tensor, alpha_bar_end: torch.Tensor) -> torch.Tensor:
    """The x0 prediction whose DDIM step from x_t lands exactly on x_end (progressive distillation's target)."""
    ratio = _bcast(((1 - alpha_bar_end) / (1 - alpha_bar_t)).sqrt())
    return (x_end - ratio * x_t) / (_bcast(alpha_bar_end).sqrt() - ratio * _bcast(alpha_bar_t).sqrt())


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    return (torch.sqrt((a.float() - b.float()) ** 2 + c**2) - c).mean()


# -------------------------------------------------------------------------------------------- models


class LoRALinear(torch.nn.Module):
    """y = W x + (alpha / r) B A x with B zero-initialised; `fused()` folds it back into one Linear."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.lora_down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.lora_up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.lora_up.weight)
        base.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_up(self.lora_down(x)) * self.scale

    def fused(self) -> torch.nn.Linear:
        with torch.no_grad():
            self.base.weight += self.scale * (self.lora_up.weight @ self.lora_down.weight)
        return self.base


def add_lora(unet: torch.nn.Module, rank: int, alpha: float | None = None) -> int:
    """Freeze the UNet and wrap its attention/feed-forward linears with LoRA; returns how many were wrapped."""
    unet.requires_grad_(False)
    count = 0
    for name, module in list(unet.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, torch.nn.Linear) and any(full.endswith(t) for t in _LORA_TARGETS):
                setattr(module, child_name, LoRALinear(child, rank, float(alpha or rank)))
                count += 1
    if not count:
        raise RecipeError("no attention or feed-forward Linear layers found to attach LoRA to")
    return count


def fuse_lora(unet: torch.nn.Module) -> int:
    """Replace every LoRALinear by its fused Linear (weights W + scale * B A); returns how many."""
    count = 0
    for module in list(unet.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.fused())
                count += 1
    return count


def make_student_unet(teacher_unet: Any, embedding_dim: int | None) -> Any:
    """The teacher's architecture (plus a guidance input when embedding_dim is set), initialised from the
    teacher so that it starts out computing exactly what the teacher computes."""
    from diffusers import UNet2DConditionModel

    config = dict(teacher_unet.config)
    if embedding_dim is not None:
        if config.get("time_cond_proj_dim") not in (None, embedding_dim):
            raise ModelLoadError(
                f"the teacher UNet already has time_cond_proj_dim={config['time_cond_proj_dim']}; "
                f"pass --guidance-embedding-dim {config['time_cond_proj_dim']}"
            )
        config["time_cond_proj_dim"] = embedding_dim
    student = UNet2DConditionModel.from_config(config)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or any(k != "time_embedding.cond_proj.weight" for k in missing):
        raise ModelLoadError(f"student/teacher weight mismatch: missing={missing} unexpected={unexpected}")
    if "time_embedding.cond_proj.weight" in missing:
        torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student


def load_teacher(folder: Path) -> Any:
    """The teacher as a diffusers StableDiffusionPipeline (safetensors only, no code from the folder)."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"{folder} is not a diffusers pipeline folder (no model_index.json); distillation needs a teacher pipeline")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(folder), safety_checker=None, requires_safety_checker=False, use_safetensors=True
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load teacher pipeline {folder}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------- data


class ShapesLatents:
    """(x0 latent, caption) pairs from the deterministic shapes dataset through the teacher's VAE.

    The first `cache_size` samples are rendered and encoded once (into `cache_file` when given, so a
    resumed or second process reuses them); batches are drawn from that cache with replacement."""

    def __init__(self, vae: Any, dataset_seed: int, cache_size: int = 4096, cache_file: Path | None = None):
        from edgediff.shapes import dataset

        self.dataset = dataset
        self.seed = dataset_seed
        if cache_file is not None and Path(cache_file).is_file():
            saved = torch.load(cache_file, weights_only=True)
            if saved["seed"] == dataset_seed and len(saved["captions"]) == cache_size:
                self.latents, self.captions = saved["latents"], list(saved["captions"])
                return
        self.latents, self.captions = self._encode(vae, cache_size)
        if cache_file is not None:
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"seed": dataset_seed, "latents": self.latents, "captions": self.captions}, cache_file)

    @torch.no_grad()
    def _encode(self, vae: Any, size: int, chunk: int = 64) -> tuple[torch.Tensor, list[str]]:
        from tqdm.auto import tqdm

        device = next(vae.parameters()).device
        scaling = float(vae.config.scaling_factor)
        latents, captions = [], []
        for start in tqdm(range(0, size, chunk), desc="encoding shapes latents", leave=False):
            images, specs = self.dataset.batch(self.seed, start, min(chunk, size - start))
            pixels = torch.from_numpy(self.dataset.to_tensor_range(images)).to(device)
            latents.append(vae.encode(pixels).latent_dist.mean.cpu() * scaling)
            captions += [spec.caption for spec in specs]
        return torch.cat(latents), captions

    def batch(self, gen: torch.Generator, size: int, device: torch.device) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(0, len(self.captions), (size,), generator=gen)
        return self.latents[idx].to(device), [self.captions[i] for i in idx.tolist()]


class PromptEncoder:
    """CLIP text embeddings for prompts (and the empty prompt for the unconditional branch)."""

    def __init__(self, tokenizer: Any, text_encoder: Any):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self._empty: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, prompts: list[str], device: torch.device) -> torch.Tensor:
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(device)
        return self.text_encoder(ids)[0]

    def empty(self, n: int, device: torch.device) -> torch.Tensor:
        if self._empty is None:
            self._empty = self([""], device)
        return self._empty.expand(n, -1, -1)


# -------------------------------------------------------------------------------------------- losses


@dataclass
class Schedule:
    """The teacher's training noise schedule (alphas_cumprod with index -1 meaning alpha_bar = 1)."""

    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> Schedule:
        return cls(
            alphas_cumprod=scheduler.alphas_cumprod.float().clone(),
            num_train_timesteps=int(scheduler.config.num_train_timesteps),
            prediction_type=str(scheduler.config.get("prediction_type", "epsilon")),
        )

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod.to(t.device)
        return torch.where(t >= 0, ac[t.clamp(min=0)], torch.ones_like(ac[0]))


def _unet(unet: Any, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    return unet(x, t, encoder_hidden_states=text, timestep_cond=cond, return_dict=False)[0]


@torch.no_grad()
def _teacher_guided(teacher: Any, sched: Schedule, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher (x0, eps) under classifier-free guidance at per-sample `scale` (1 = conditional only)."""
    out = _unet(teacher, torch.cat([x, x]), torch.cat([t, t]), torch.cat([empty, text]), None)
    uncond, cond = out.chunk(2)
    a = sched.alpha_bar(t)
    x0_u, eps_u = split_prediction(uncond, x, a, sched.prediction_type)
    x0_c, eps_c = split_prediction(cond, x, a, sched.prediction_type)
    s = _bcast(scale)
    return x0_u + s * (x0_c - x0_u), eps_u + s * (eps_c - eps_u)


def consistency_loss(
    student: Any, target: Any, teacher: Any, sched: Schedule, settings: DistillSettings,
    x0: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One LCM consistency-distillation loss on a batch (the student carries the gradient)."""
    n, device = x0.shape[0], x0.device
    k = sched.num_train_timesteps // settings.ode_steps
    solver = torch.arange(1, settings.ode_steps + 1) * k - 1  # same grid as LCMScheduler's origin steps
    t_start = solver[torch.randint(0, settings.ode_steps, (n,), generator=gen)].to(device)
    t_next = (t_start - k).clamp(min=0)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    if settings.embeds_guidance:
        scale = settings.guidance_min + (settings.guidance_max - settings.guidance_min) * torch.rand(n, generator=gen)
        cond = guidance_embedding(scale - 1.0, settings.guidance_embedding_dim).to(device)
    else:
        scale, cond = torch.full((n,), settings.guidance), None
    scale = scale.to(device)
    a_start = sched.alpha_bar(t_start)
    x_start = _bcast(a_start).sqrt() * x0 + _bcast(1 - a_start).sqrt() * noise

    skip_s, out_s = boundary_scalings(t_start, settings.timestep_scaling)
    pred_x0, _ = split_prediction(_unet(student, x_start, t_start, text, cond), x_start, a_start, sched.prediction_type)
    online = _bcast(skip_s) * x_start + _bcast(out_s) * pred_x0

    with torch.no_grad():
        g_x0, g_eps = _teacher_guided(teacher, sched, x_start, t_start, text, empty, scale)
        a_next = sched.alpha_bar(t_next)
        x_next = ddim_step(g_x0, g_eps, a_next)
        t_x0, _ = split_prediction(_unet(target, x_next, t_next, text, cond), x_next, a_next, sched.prediction_type)
        skip_n, out_n = boundary_scalings(t_next, settings.timestep_scaling)
        goal = _bcast(skip_n) * x_next + _bcast(out_n) * t_x0
    loss = pseudo_huber(online, goal, settings.huber_c)
    return loss, {}


def student_timesteps(scheduler_config: dict[str, Any], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's DDIM timesteps (trailing spacing) and the timestep each one steps to (-1 = clean)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(step_scheduler_config(scheduler_config))
    sched.set_timesteps(steps)
    ts = sched.timesteps.long()
    nxt = ts - sched.config.num_train_timesteps // steps
    return ts, torch.where(nxt < 0, torch.full_like(nxt, -1), nxt)


def step_distill_loss(
    student: Any, teacher: Any, sched: Schedule, settings: DistillSettings, steps: tuple[torch.Tensor, torch.Tensor],
    x0: torch.Tensor, text: torch.Tensor, empty: torch.Tensor, gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Student's one DDIM step must land where `teacher_steps / N` guided teacher DDIM steps land."""
    n, device = x0.shape[0], x0.device
    ts, nxt = steps
    pick = torch.randint(0, len(ts), (n,), generator=gen)
    t, t_end = ts[pick].to(device), nxt[pick].to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    guided = torch.rand(n, generator=gen) < settings.guided_fraction
    sampled = settings.guidance_min + (settings.guidance_max - settings.guidance_min) * torch.rand(n, generator=gen)
    scale = torch.where(guided, sampled, torch.ones(n)).to(device)
    cond = guidance_embedding(scale - 1.0, settings.guidance_embedding_dim).to(device)
    a_t = sched.alpha_bar(t)
    x_t = _bcast(a_t).sqrt() * x0 + _bcast(1 - a_t).sqrt() * noise
    rollout = settings.rollout_fraction > 0 and float(torch.rand(1, generator=gen)) < settings.rollout_fraction
    if rollout and len(ts) > 1:
        k = int(torch.randint(1, len(ts), (1,), generator=gen))
        x_t = student_rollout(student, sched, ts, nxt, k, noise, text, cond)
        t, t_end = ts[k].repeat(n).to(device), nxt[k].repeat(n).to(device)
        a_t = sched.alpha_bar(t)

    sub = settings.teacher_steps // settings.steps
    with torch.no_grad():
        x = x_t
        # Intermediate teacher timesteps: evenly spaced from t to t_end (t_end = -1 means "clean").
        grid = [torch.round(t.float() + (t_end.float() - t.float()) * j / sub).long() for j in range(sub + 1)]
        for j in range(sub):
            g_x0, g_eps = _teacher_guided(teacher, sched, x, grid[j], text, empty, scale)
            x = ddim_step(g_x0, g_eps, sched.alpha_bar(grid[j + 1]))
        x0_goal = ddim_x0_target(x_t, x, a_t, sched.alpha_bar(t_end))
    out = _unet(student, x_t, t, text, cond)
    pred_x0, pred_eps = split_prediction(out, x_t, a_t, sched.prediction_type)
    snr_weight = _bcast((a_t / (1 - a_t)).clamp(min=1.0))  # truncated SNR weighting (x0 space)
    distill = (snr_weight * (pred_x0 - x0_goal) ** 2).mean()
    plain = ~guided.to(device) & (not rollout)  # a rolled-out x_t has no known noise to denoise against
    denoise = F.mse_loss(pred_eps[plain], noise[plain]) if bool(plain.any()) else out.sum() * 0.0
    loss = distill + settings.denoise_weight * denoise
    return loss, {"distill": float(distill.detach()), "denoise": float(denoise.detach())}


# ----------------------------------------------------------------------------------------- schedulers


@torch.no_grad()
def student_rollout(student: Any, sched: Schedule, ts: torch.Tensor, nxt: torch.Tensor, k: int, noise: torch.Tensor,
                    text: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The student's own first `k` DDIM steps from pure noise: the inputs it meets at step k when sampling.

    Noising training images reaches every timestep, but after the first step the sampler feeds the student its own
    earlier output, which lies off that distribution (exposure bias); training some batches on these inputs, with
    the guided teacher's steps from there as the target, closes that gap."""
    x = noise
    for j in range(k):
        t = ts[j].repeat(x.shape[0]).to(x.device)
        pred_x0, pred_eps = split_prediction(_unet(student, x, t, text, cond), x, sched.alpha_bar(t),
                                             sched.prediction_type)
        x = ddim_step(pred_x0, pred_eps, sched.alpha_bar(nxt[j].repeat(x.shape[0]).to(x.device)))
    return x


def lcm_scheduler_config(teacher_config: dict[str, Any], settings: DistillSettings) -> dict[str, Any]:
    """An LCMScheduler config on the teacher's noise schedule and the solver grid used in training."""
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "rescale_betas_zero_snr")
    config = {k: teacher_config[k] for k in keep if k in teacher_config}
    config.update(
        original_inference_steps=settings.ode_steps, timestep_scaling=settings.timestep_scaling,
        set_alpha_to_one=True, steps_offset=1, clip_sample=False, timestep_spacing="leading",
    )
    return config


def step_scheduler_config(teacher_config: dict[str, Any]) -> dict[str, Any]:
    """A DDIMScheduler config (trailing spacing: the first step starts at the noisiest timestep)."""
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas", "prediction_type", "rescale_betas_zero_snr")
    config = {k: teacher_config[k] for k in keep if k in teacher_config}
    config.update(timestep_spacing="trailing", set_alpha_to_one=True, steps_offset=1, clip_sample=False)  # offset unused when trailing
    return config


# ------------------------------------------------------------------------------------- model defaults


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


# ------------------------------------------------------------------------------------------ the run


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
    from accelerate.utils import gather_object

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
    student = make_student_unet(teacher, embed_dim)
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

    cache = settings.run_dir / f"shapes_latents_seed{settings.dataset_seed}_{settings.cache_size}.pt"
    with accelerator.main_process_first():  # one process encodes, the others load its file
        data = ShapesLatents(pipe.vae, settings.dataset_seed, settings.cache_size, cache)
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
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
            "start_step": result.start_step, "final_step": result.final_step, "seconds": round(result.seconds, 1),
            "num_processes": accelerator.num_processes, "replica_digests": digests,
            "replicas_identical": len(set(digests)) == 1, "last_metrics": result.last_metrics,
        }
        (settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    accelerator.wait_for_everyone()
    return DistillResult(settings.output, result, accelerator.num_processes, digests, defaults)


def _portable(path: Path) -> str:
    """A path relative to the working directory when it is inside it (committed folders stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def save_student(pipe: Any, student: Any, settings: DistillSettings, teacher_sched_config: dict[str, Any], loop: LoopResult) -> ModelDefaults:
    """Write the student pipeline (teacher's text encoder, tokenizer and VAE; the student's UNet and
    scheduler) and its edgediff.json."""
    import copy

    from diffusers import DDIMScheduler, LCMScheduler

    from edgediff.slim.training import write_student_pipeline

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


# --------------------------------------------------------------------------------------- recipe step


def _student_is_current(folder: Path, settings: DistillSettings) -> bool:
    """A student folder made by this teacher, method and step count, trained at least max_steps."""
    record = read_model_defaults(folder).get("distillation", {})
    method = settings.method + ("+lora" if settings.lora_rank else "")
    return (
        (folder / "unet").is_dir()
        and record.get("method") == method
        and Path(record.get("teacher", "")).resolve() == settings.teacher.resolve()
        and int(read_model_defaults(folder).get("steps", -1)) == settings.steps
        and int(record.get("train_steps", -1)) >= settings.max_steps
    )


def settings_from_options(teacher: Path, options: dict[str, Any]) -> DistillSettings:
    """DistillSettings from a recipe `[[slim.steps]] kind = "distill"` options table (unknown keys are errors)."""
    names = {f for f in DistillSettings.__dataclass_fields__ if f != "teacher"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise RecipeError(f"unknown distill option(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
    opts = dict(options)
    method, steps = opts.get("method", "consistency"), int(opts.get("steps", 4))
    suffix = (f"lcm{steps}" if method == "consistency" else f"step{steps}") + ("-lora" if opts.get("lora_rank") else "")
    opts.setdefault("output", teacher.parent / f"{teacher.name}-{suffix}")
    opts.setdefault("run_dir", Path("runs") / "distill" / Path(opts["output"]).name)
    if "guidance" not in opts:
        opts["guidance"] = float(read_model_defaults(teacher).get("guidance", 7.5))
    return DistillSettings(teacher=teacher, **opts)


def distill_slim_step(model: Any, components: list, options: dict[str, Any]) -> list:
    """Recipe step `distill`: reuse the student folder if it is current, else train it (resumable), then
    swap in the student's UNet, scheduler and defaults and rebuild the components for it (UNet batch 1
    with `timestep_cond` when the guidance was distilled in). Put it before other slim steps."""
    from edgediff.model.components import ComponentShapes, build_components, vae_scale_factor
    from edgediff.model.load import load_model

    if getattr(model, "kind", None) != "pipeline":
        raise RecipeError("the distill step needs a diffusers pipeline model (text encoder, UNet, VAE)")
    settings = settings_from_options(Path(model.source), options)
    if not _student_is_current(settings.output, settings):
        distill(settings)
    student = load_model(str(settings.output))
    model.unet, model.scheduler_class, model.scheduler_config = student.unet, student.scheduler_class, student.scheduler_config
    model.defaults = dict(student.defaults)
    model.source = str(settings.output)
    unet = next((c for c in components if c.name == "unet"), None)
    text = next((c for c in components if c.name == "text_encoder"), None)
    scale = vae_scale_factor(model.vae)
    if unet is None:
        return components
    _, _, h, w = unet.inputs[0].shape
    shapes = ComponentShapes(
        h * scale, w * scale, batched_cfg=bool(student.defaults.get("batched_cfg", False)),
        text_length=text.inputs[0].shape[1] if text is not None else 77,
    )
    return build_components(model, [c.name for c in components], shapes)
