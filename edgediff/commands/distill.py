"""`edgediff distill`: train a few-step student of a diffusers teacher and save it with its sampler.

Runs on one CPU as is; `accelerate launch [--cpu] --num_processes N -m edgediff.cli distill ...` runs the
same command data-parallel. Re-running with the same --run-dir resumes from the newest checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgediff import defaults
from edgediff.errors import RecipeError


def _teacher_path(model: str | None) -> Path:
    try:
        from edgediff.model.load import resolve_model_path
    except ImportError:  # the model loader is optional for this command
        return Path(model or "models/shapes-sd")
    return resolve_model_path(model)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "distill",
        help="few-step student (consistency or CFG-aware step distillation)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", default=None, help="teacher diffusers folder or name under models/ (default: the embedded default model)")
    p.add_argument("--method", choices=("consistency", "step"), default="consistency")
    p.add_argument("--steps", type=int, default=4, help="the student's sampling steps (default 4)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale recorded as the student's default (default: the teacher's edgediff.json guidance, else 7.5)")
    p.add_argument("--guidance-range", type=float, nargs=2, default=(2.0, 9.0), metavar=("MIN", "MAX"), help="CFG scales sampled in training")
    p.add_argument("--output", type=Path, default=None, help="student folder (default: models/<teacher>-lcm<steps> or -step<steps>)")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints and logs (default: runs/distill/<output name>)")
    p.add_argument("--max-steps", type=int, default=2000, help="training iterations")
    p.add_argument("--max-minutes", type=float, default=None, help="wall-time budget: stop early, checkpoint and save the student (rerun to resume)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="cosine: decay --lr to 0 at --max-steps (a function of the step: resuming keeps the schedule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--no-resume", action="store_true", help="start over even if --run-dir has checkpoints")
    p.add_argument("--ode-steps", type=int, default=50, help="consistency: DDIM solver grid (skip = T / ode_steps)")
    p.add_argument("--ema-decay", type=float, default=0.95)
    p.add_argument("--lora-rank", type=int, default=0, help="consistency: train LoRA adapters at --guidance and fuse them (LCM-LoRA)")
    p.add_argument("--teacher-steps", type=int, default=32, help="step: teacher DDIM steps the student's trajectory follows")
    p.add_argument("--guided-fraction", type=float, default=0.5, help="step: fraction of iterations on guided targets")
    p.add_argument("--denoise-weight", type=float, default=0.1, help="step: weight of the plain denoising loss")
    p.add_argument("--rollout-fraction", type=float, default=0.0,
                   help="step: share of batches trained on the student's own earlier steps from pure noise")
    p.add_argument("--data", default="", metavar="FOLDER",
                   help="your own training images: a folder with metadata.jsonl ({\"file_name\", \"text\"} per line); "
                        "default: the shapes task the default model was trained on")
    p.add_argument("--cache-size", type=int, default=4096, help="training samples encoded once and drawn from")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is visible")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgediff.slim.distill import DistillSettings, distill, read_model_defaults

    teacher = _teacher_path(args.model)
    if not teacher.exists():
        raise RecipeError(f"teacher {teacher} does not exist; pass a diffusers pipeline folder")
    suffix = f"lcm{args.steps}" if args.method == "consistency" else f"step{args.steps}"
    if args.lora_rank:
        suffix += "-lora"
    output = args.output or teacher.parent / f"{teacher.name}-{suffix}"
    run_dir = args.run_dir or Path("runs") / "distill" / output.name
    guidance = args.guidance
    if guidance is None:
        guidance = float(read_model_defaults(teacher).get("guidance", defaults.GUIDANCE))
    if args.no_resume and run_dir.exists():
        import shutil

        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    settings = DistillSettings(
        teacher=teacher, output=output, run_dir=run_dir, method=args.method, steps=args.steps,
        guidance=guidance, guidance_min=args.guidance_range[0], guidance_max=args.guidance_range[1],
        max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.lr, lr_schedule=args.lr_schedule, seed=args.seed,
        checkpoint_every=args.checkpoint_every, ode_steps=args.ode_steps, ema_decay=args.ema_decay,
        lora_rank=args.lora_rank, teacher_steps=args.teacher_steps, guided_fraction=args.guided_fraction,
        denoise_weight=args.denoise_weight, rollout_fraction=args.rollout_fraction, cache_size=args.cache_size, data=args.data, log_every=args.log_every,
        cpu=True if args.cpu else None, max_minutes=args.max_minutes,
    )
    result = distill(settings)
    if result.defaults is not None:  # main process
        d = result.defaults
        how = "no CFG batch" if not d.batched_cfg else "batched CFG"
        print(
            f"student: {result.output} ({d.scheduler}, {d.steps} steps, guidance {d.guidance:g}, {how}); "
            f"trained {result.loop.final_step} steps in {result.loop.seconds:.0f}s on {result.num_processes} process(es)"
        )
        if not result.replicas_identical:
            raise RecipeError(f"data-parallel replicas diverged: {result.replica_digests}")
    return 0


if __name__ == "__main__":  # `accelerate launch -m edgediff.commands.distill ARGS` (same as `edgediff distill ARGS`)
    import sys

    from edgediff.cli import main

    sys.exit(main(["distill", *sys.argv[1:]]))  # the one exit path of every command
