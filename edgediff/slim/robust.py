"""Robust training (SnapFusion): fine-tune a UNet with random blocks skipped, so that afterwards the effect of
removing any block can be measured on the same weights without retraining.

At every step, with probability `subnet_prob`, the UNet runs as a random sub-network: each removable unit
(`prune.removal_units`: a down/up pair, one stage's attention, the mid block) is removed with probability
`unit_prob` (units that would make the architecture invalid are skipped), via `prune.subnet_view`, so the
sub-network is exactly the UNet that surgery would build. Otherwise the full UNet runs. The loss is the
denoising loss plus output distillation towards the frozen original UNet (`lambda_kd_output`), which keeps
the full model where it was while the sub-networks learn to cope.

The architecture drawn at a step depends only on (seed, step), so every data-parallel replica runs the same
sub-network; DDP is told that some parameters are unused on a given step. Output: a pipeline folder of the
same architecture as the teacher, ready for the latency-driven search.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgediff import __version__
from edgediff.errors import RecipeError
from edgediff.slim import prune
from edgediff.slim.prune import PruneSpec
from edgediff.slim.recover import make_accelerator, save_pipeline, training_context
from edgediff.slim.training import LoopResult, LoopSettings, StudentTrainingSettings, reduce_mean, run_loop


@dataclass
class RobustSettings(StudentTrainingSettings):
    """Robust training of the full architecture: some steps train a sampled pruned sub-network (output: the robust
    pipeline folder, same architecture as the teacher)."""

    subnet_prob: float = 0.5
    unit_prob: float = 0.3
    learning_rate: float = 2e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("subnet_prob", "unit_prob", "uncond_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise RecipeError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def sample_subnet(config: Any, units: list[PruneSpec], seed: int, step: int, subnet_prob: float,
                  unit_prob: float) -> PruneSpec:
    """The architecture for one step: a function of (seed, step) only, so all replicas agree."""
    rng = random.Random(seed * 1_000_003 + step)
    if rng.random() >= subnet_prob:
        return PruneSpec()
    chosen = [u for u in units if rng.random() < unit_prob]
    rng.shuffle(chosen)
    return prune.combine_units(config, PruneSpec(), chosen)


@dataclass
class RobustResult:
    output: Path
    loop: LoopResult
    num_processes: int
    replica_digests: list[str]
    subnets_seen: int


def robust_train(settings: RobustSettings) -> RobustResult:
    from accelerate.utils import gather_object

    from edgediff.slim.distill import parameter_digest

    loop = LoopSettings(
        output_dir=settings.run_dir, max_steps=settings.max_steps, seed=settings.seed,
        checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, cpu=settings.cpu,
        description="robust training (random block skipping)",
    )
    accelerator = make_accelerator(loop, find_unused_parameters=True)
    ctx = training_context(accelerator, settings.teacher, settings.dataset_seed, settings.cache_size, settings.run_dir,
                           settings.data)
    reference = ctx.pipe.unet  # frozen original, the KD target
    unet = copy.deepcopy(reference).train().requires_grad_(True)
    config = dict(unet.config)
    units = prune.removal_units(config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    model, optimizer = accelerator.prepare(unet, optimizer)
    seen: set[PruneSpec] = set()

    def train_step(step: int) -> dict[str, float]:
        x_t, t, text, target = ctx.batch(settings.seed, step, settings.batch_size, settings.uncond_prob)
        spec = sample_subnet(config, units, settings.seed, step, settings.subnet_prob, settings.unit_prob)
        seen.add(spec)
        with torch.no_grad():
            reference_out = reference(x_t, t, encoder_hidden_states=text, return_dict=False)[0]
        with prune.subnet_view(accelerator.unwrap_model(model), spec):
            out = model(x_t, t, encoder_hidden_states=text, return_dict=False)[0]
        loss_sd = F.mse_loss(out, target)
        loss_kd = F.mse_loss(out, reference_out)
        loss = settings.lambda_sd * loss_sd + settings.lambda_kd_output * loss_kd
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        return {"loss": reduce_mean(accelerator, loss), "sd": reduce_mean(accelerator, loss_sd),
                "kd_out": reduce_mean(accelerator, loss_kd), "removed": float(len(spec.describe()))}

    result = run_loop(accelerator, loop, train_step)
    final = accelerator.unwrap_model(model)
    digests = gather_object([parameter_digest(final)])
    if accelerator.is_main_process:
        record = {"teacher": str(settings.teacher), "spec": PruneSpec().to_dict(), "removed": [],
                  "robust_training": {"train_steps": result.final_step, "subnet_prob": settings.subnet_prob,
                                      "unit_prob": settings.unit_prob, "units": [u.describe() for u in units]}}
        save_pipeline(ctx.pipe, final, settings.output, settings.teacher, record)
        summary = {"edgediff_version": __version__,
                   "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
                   "final_step": result.final_step, "start_step": result.start_step,
                   "num_processes": accelerator.num_processes, "replica_digests": digests,
                   "replicas_identical": len(set(digests)) == 1, "subnets_seen": len(seen),
                   "last_metrics": result.last_metrics}
        (settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    accelerator.wait_for_everyone()
    return RobustResult(settings.output, result, accelerator.num_processes, digests, len(seen))
