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

Layout: `settings` (DistillSettings, learning-rate schedule), `maths` (guidance embedding, LCM
boundary scalings, DDIM algebra), `models` (student UNet, LoRA), `data` (shapes latents, prompts),
`teacher` (loading it, its noise schedule, its guided predictions), `consistency` and `step_distill`
(one loss and one sampler config per method), `defaults` (edgediff.json), `run` (the shared training
loop, checkpointing and saving) and `recipe_step` (the recipe's `distill` step, registered on import).
"""

from edgediff.errors import RecipeError  # tests reach it as distill.RecipeError, as before the split
from edgediff.slim.distill.consistency import lcm_scheduler_config
from edgediff.slim.distill.data import EncodedLatents, PromptEncoder, ShapesLatents
from edgediff.slim.distill.defaults import read_model_defaults
from edgediff.slim.distill.maths import (
    boundary_scalings,
    ddim_step,
    ddim_x0_target,
    guidance_embedding,
    split_prediction,
)
from edgediff.slim.distill.models import LoRALinear, add_lora, fuse_lora, make_student_unet
from edgediff.slim.distill.recipe_step import settings_from_options
from edgediff.slim.distill.run import distill, parameter_digest
from edgediff.slim.distill.settings import DistillSettings, learning_rate_at
from edgediff.slim.distill.step_distill import (
    step_distill_loss,
    step_scheduler_config,
    student_rollout,
    student_timesteps,
)
from edgediff.slim.distill.teacher import Schedule, load_teacher

__all__ = [
    "DistillSettings", "EncodedLatents", "LoRALinear", "PromptEncoder", "RecipeError", "Schedule", "ShapesLatents", "add_lora",
    "boundary_scalings", "ddim_step", "ddim_x0_target", "distill", "fuse_lora", "guidance_embedding",
    "lcm_scheduler_config", "learning_rate_at", "load_teacher", "make_student_unet", "parameter_digest",
    "read_model_defaults", "settings_from_options", "split_prediction", "step_distill_loss", "step_scheduler_config",
    "student_rollout", "student_timesteps",
]
