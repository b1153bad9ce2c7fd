"""Recover a pruned UNet by distillation from its teacher (BK-SDM): denoising + output KD + feature KD.

Loss per batch (x0 latents, captions, noise, uniform timesteps):
    lambda_sd * |eps_student - noise|^2 + lambda_kd_output * |eps_student - eps_teacher|^2
    + lambda_kd_feat * sum over stages |f_student - f_teacher|^2
where the features are each surviving stage's output (BK-SDM hooks every down/up block output). A down
stage's feature is its last pair's output *before* the downsampler, so a stage that lost its downsampler
(BK-SDM-Tiny) still has a same-shaped teacher feature; up blocks compare whole outputs; the mid block too
when the student keeps it. Captions are replaced by the empty prompt with probability `uncond_prob` so the
student keeps the unconditional branch classifier-free guidance needs.

Training data is a `TrainingData` source (the shapes task by default, or a folder of the user's images:
edgediff.slim.data) through the teacher's own VAE (`EncodedLatents`, shared with the step
distillation), the teacher's text encoder for the prompts. The loop is the shared Accelerate loop
(`slim.training`): one CPU here, `accelerate launch` with N processes or GPUs elsewhere, resumable.
The result is a full diffusers pipeline folder (teacher's VAE/text encoder/tokenizer/scheduler, the
recovered UNet) so `edgediff eval` and `edgediff convert` take it as is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from edgediff import __version__
from edgediff.errors import ModelLoadError, RecipeError
from edgediff.slim import prune
from edgediff.slim.prune import Layout, PruneSpec
from edgediff.slim.training import (
    LoopResult,
    LoopSettings,
    StudentTrainingSettings,
    reduce_mean,
    run_loop,
    step_generator,
)


@dataclass
class RecoverSettings(StudentTrainingSettings):
    """A BK-SDM recovery run; `spec` prunes the teacher's UNet, or `student_unet` names a pruned UNet folder."""

    spec: PruneSpec | None = None
    student_unet: Path | None = None
    weight_decay: float = 1e-2
    lambda_kd_feat: float = 1.0  # match the teacher's block outputs (BK-SDM feature distillation)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.spec is None) == (self.student_unet is None):
            raise RecipeError("recovery needs exactly one of a prune spec or a pruned student_unet folder")
        if not 0.0 <= self.uncond_prob < 1.0:
            raise RecipeError(f"uncond_prob must be in [0, 1), got {self.uncond_prob}")


# --------------------------------------------------------------------------------------------- features


def feature_modules(layout: Layout) -> list[tuple[str, str]]:
    """(teacher module, student module) pairs whose outputs feature KD compares, in forward order."""
    pairs = [(f"down_blocks.{p.teacher_index}", f"down_blocks.{j}") for j, p in enumerate(layout.down)]
    if layout.mid:
        pairs.append(("mid_block", "mid_block"))
    pairs += [(f"up_blocks.{p.teacher_index}", f"up_blocks.{j}") for j, p in enumerate(layout.up)]
    return pairs


def _feature(module: torch.nn.Module, output: Any) -> torch.Tensor:
    if isinstance(output, tuple):  # a down block: (hidden, per-pair outputs + downsampled)
        return output[1][len(module.resnets) - 1]
    return output


class FeatureTap:
    """Forward hooks that keep the latest output of named modules (removed with `close`)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        self.features: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ModelLoadError(f"feature KD: modules {missing} not found in the UNet")
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str) -> Callable:
        def store(module: torch.nn.Module, _inputs: Any, output: Any) -> None:
            self.features[name] = _feature(module, output)
        return store

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


# ---------------------------------------------------------------------------------------- shared set-up


@dataclass
class TrainingContext:
    """What robust training and recovery share: the teacher pipeline, the data, the noise schedule."""

    accelerator: Any
    pipe: Any
    data: Any  # distill.EncodedLatents
    prompts: Any  # distill.PromptEncoder
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    prediction_type: str

    def batch(self, seed: int, step: int, batch_size: int, uncond_prob: float):
        """(noisy latents, timesteps, text embeddings, target) for one step, identical on a resume."""
        device = self.accelerator.device
        gen = step_generator(seed, self.accelerator.process_index, step)
        x0, captions = self.data.batch(gen, batch_size, device)
        drop = torch.rand(len(captions), generator=gen) < uncond_prob
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        text = self.prompts(captions, device)
        t = torch.randint(0, self.num_train_timesteps, (len(captions),), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        a = self.alphas_cumprod.to(device)[t].reshape(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if self.prediction_type == "epsilon":
            target = noise
        elif self.prediction_type == "v_prediction":
            target = a.sqrt() * noise - (1 - a).sqrt() * x0
        else:
            raise ModelLoadError(f"unsupported prediction_type {self.prediction_type!r} (epsilon or v_prediction)")
        return x_t, t, text, target


def training_context(accelerator: Any, teacher: Path, dataset_seed: int, cache_size: int, cache_dir: Path,
                     data_source: str = "") -> TrainingContext:
    from edgediff.slim.data import training_data
    from edgediff.slim.distill import EncodedLatents, PromptEncoder, load_teacher
    from edgediff.slim.distill.data import cache_file, native_size

    pipe = load_teacher(teacher)
    device = accelerator.device
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.to(device).eval().requires_grad_(False)
    source = training_data(data_source, dataset_seed, native_size(pipe))
    with accelerator.main_process_first():  # one process encodes, the others read its file
        data = EncodedLatents(pipe.vae, source, cache_size, cache_file(cache_dir, source, cache_size))
    return TrainingContext(
        accelerator=accelerator, pipe=pipe, data=data, prompts=PromptEncoder(pipe.tokenizer, pipe.text_encoder),
        alphas_cumprod=pipe.scheduler.alphas_cumprod.float().clone(),
        num_train_timesteps=int(pipe.scheduler.config.num_train_timesteps),
        prediction_type=str(pipe.scheduler.config.get("prediction_type", "epsilon")),
    )


def make_accelerator(loop: LoopSettings, find_unused_parameters: bool = False) -> Any:
    """The shared loop's Accelerator, plus DDP's unused-parameter search when only part of the model runs."""
    from edgediff.slim import training

    if not find_unused_parameters:
        return training.make_accelerator(loop)
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    cpu = loop.cpu if loop.cpu is not None else not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=cpu, mixed_precision=loop.mixed_precision, gradient_accumulation_steps=loop.gradient_accumulation_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(loop.seed)
    return accelerator


def save_pipeline(pipe: Any, unet: Any, output: Path, teacher: Path, record: dict[str, Any]) -> Path:
    """The teacher pipeline with `unet` swapped in, plus the teacher's edgediff.json and a prune record."""
    import copy

    from edgediff.slim.training import write_student_pipeline

    output = write_student_pipeline(pipe, copy.deepcopy(unet).cpu().eval(), pipe.scheduler, output, teacher)
    if (Path(teacher) / "edgediff.json").is_file():
        shutil.copyfile(Path(teacher) / "edgediff.json", output / "edgediff.json")
    (output / "unet" / "edgediff_prune.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return output


# -------------------------------------------------------------------------------------------------- run


@dataclass
class RecoverResult:
    output: Path
    loop: LoopResult
    num_processes: int
    replica_digests: list[str]
    student_parameters: int
    teacher_parameters: int

    @property
    def replicas_identical(self) -> bool:
        return len(set(self.replica_digests)) == 1


def load_student(settings: RecoverSettings, teacher_unet: Any) -> tuple[Any, PruneSpec]:
    """The pruned student: surgery on the teacher, or a pruned UNet folder with its edgediff_prune.json."""
    if settings.spec is not None:
        return prune.prune_unet(teacher_unet, settings.spec), settings.spec
    from edgediff.model.load import load_model_folder

    folder = Path(settings.student_unet)
    record_file = folder / "edgediff_prune.json"
    if not record_file.is_file():
        raise ModelLoadError(f"{folder} has no edgediff_prune.json: feature KD needs to know what was removed; "
                             "make the student with `edgediff prune`")
    spec = PruneSpec.from_dict(json.loads(record_file.read_text())["spec"])
    expected = prune.pruned_config(teacher_unet.config, spec)
    student = load_model_folder(folder).unet
    diff = prune.compare_configs(dict(student.config), expected)
    if not diff.same:
        raise ModelLoadError(f"{folder} is not the teacher pruned by its recorded spec: {diff.differences}")
    return student, spec


def recover(settings: RecoverSettings) -> RecoverResult:
    """Train the pruned student against the teacher (BK-SDM losses) and save it as a pipeline folder."""
    from accelerate.utils import gather_object

    from edgediff.slim.distill import parameter_digest

    loop = LoopSettings(
        output_dir=settings.run_dir, max_steps=settings.max_steps, seed=settings.seed,
        checkpoint_every=settings.checkpoint_every, log_every=settings.log_every, cpu=settings.cpu,
        description="recover (BK-SDM KD)",
    )
    accelerator = make_accelerator(loop)
    ctx = training_context(accelerator, settings.teacher, settings.dataset_seed, settings.cache_size, settings.run_dir,
                           settings.data)
    teacher = ctx.pipe.unet
    student, spec = load_student(settings, teacher)
    student.to(accelerator.device).train().requires_grad_(True)
    layout = prune.plan_layout(teacher.config, spec)
    pairs = feature_modules(layout)
    teacher_tap = FeatureTap(teacher, [t for t, _ in pairs])
    student_tap = FeatureTap(student, [s for _, s in pairs])
    optimizer = torch.optim.AdamW(student.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    model, optimizer = accelerator.prepare(student, optimizer)

    def train_step(step: int) -> dict[str, float]:
        x_t, t, text, target = ctx.batch(settings.seed, step, settings.batch_size, settings.uncond_prob)
        with torch.no_grad():
            teacher_out = teacher(x_t, t, encoder_hidden_states=text, return_dict=False)[0]
        out = model(x_t, t, encoder_hidden_states=text, return_dict=False)[0]
        loss_sd = F.mse_loss(out, target)
        loss_out = F.mse_loss(out, teacher_out)
        loss_feat = sum(F.mse_loss(student_tap.features[s], teacher_tap.features[tn].detach()) for tn, s in pairs)
        loss = settings.lambda_sd * loss_sd + settings.lambda_kd_output * loss_out + settings.lambda_kd_feat * loss_feat
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if settings.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        return {"loss": reduce_mean(accelerator, loss), "sd": reduce_mean(accelerator, loss_sd),
                "kd_out": reduce_mean(accelerator, loss_out), "kd_feat": reduce_mean(accelerator, loss_feat)}

    try:
        result = run_loop(accelerator, loop, train_step)
    finally:
        teacher_tap.close()
        student_tap.close()
    final = accelerator.unwrap_model(model)
    digests = gather_object([parameter_digest(final)])
    teacher_params = sum(p.numel() for p in teacher.parameters())
    student_params = sum(p.numel() for p in final.parameters())
    if accelerator.is_main_process:
        record = {
            "teacher": str(settings.teacher), "spec": spec.to_dict(), "removed": spec.describe(),
            "teacher_parameters": teacher_params, "student_parameters": student_params,
            "recovery": {"method": "bk-sdm-kd", "train_steps": result.final_step, "batch_size": settings.batch_size,
                         "lambda_sd": settings.lambda_sd, "lambda_kd_output": settings.lambda_kd_output,
                         "lambda_kd_feat": settings.lambda_kd_feat, "features": [s for _, s in pairs]},
        }
        save_pipeline(ctx.pipe, final, settings.output, settings.teacher, record)
        summary = {
            "edgediff_version": __version__,
            "settings": {k: (v.to_dict() if isinstance(v, PruneSpec) else str(v) if isinstance(v, Path) else v)
                         for k, v in asdict(settings).items() if k != "spec"} | {"spec": spec.to_dict()},
            "start_step": result.start_step, "final_step": result.final_step, "seconds": round(result.seconds, 1),
            "num_processes": accelerator.num_processes, "replica_digests": digests,
            "replicas_identical": len(set(digests)) == 1, "last_metrics": result.last_metrics,
        }
        (settings.run_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    accelerator.wait_for_everyone()
    return RecoverResult(settings.output, result, accelerator.num_processes, digests, student_params, teacher_params)
