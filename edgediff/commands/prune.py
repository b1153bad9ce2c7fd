"""`edgediff prune`: remove UNet blocks (BK-SDM presets or an explicit spec) and write a diffusers UNet folder.

    edgediff prune MODEL --preset bk-small --output DIR            pruned UNet folder (teacher's weights)
    edgediff prune MODEL --preset bk-small --recover --output DIR  + BK-SDM KD recovery: a pipeline folder
    edgediff prune MODEL --robust --output DIR                     SnapFusion robust training: a pipeline folder
    edgediff prune MODEL --latency-budget 0.66 --target host-cpu --output DIR
        latency-driven search: per-block latency table on the target, greedy removal by quality lost per ms
        saved (judge prompt accuracy when a shapes judge is found, else output agreement), trace + plot in
        DIR/search/, the pruned UNet in DIR (with --recover: a recovered pipeline)

Training runs on one CPU as is; `accelerate launch --multi_gpu --num_processes N -m edgediff.commands.prune ...`
runs it data-parallel (CPU processes when no GPU is visible). Re-running with the same --run-dir resumes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgediff.errors import ModelLoadError, RecipeError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove UNet blocks (BK-SDM presets or an explicit spec); writes a diffusers UNet folder",
        description=(
            "Remove ResNet/attention pairs, attention, the mid block or inner stages from a UNet2DConditionModel. "
            "The student keeps the teacher's weights for what remains and is written as an ordinary diffusers "
            "UNet folder (config.json + diffusion_pytorch_model.safetensors)."
        ),
    )
    parser.add_argument("model", nargs="?", default=None,
                        help="diffusers pipeline folder, its unet/ folder, or a name under models/ (default model)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--robust", action="store_true",
                      help="SnapFusion robust training: fine-tune with random blocks skipped (writes a pipeline)")
    what.add_argument("--preset", choices=["bk-base", "bk-small", "bk-tiny"],
                      help="BK-SDM architecture: base (one pair less per stage), small (+ no mid block), "
                           "tiny (+ no innermost stage)")
    what.add_argument("--latency-budget", type=float, metavar="RATIO",
                      help="search: the pruned UNet's latency as a fraction of the teacher's (0.66 = 1.5x faster)")
    what.add_argument("--spec", type=Path,
                      help="JSON file with a PruneSpec: remove_down, remove_up, drop_attention_down, "
                           "drop_attention_up, drop_mid, drop_inner_stages")
    parser.add_argument("--output", "-o", type=Path, required=True, help="folder for the pruned UNet")
    parser.add_argument("--random-weights", action="store_true",
                        help="build the pruned architecture with seeded random weights (no teacher weights needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights and training")
    search = parser.add_argument_group("search (--latency-budget)")
    search.add_argument("--target", default="host-cpu", help="target whose backend times the blocks (targets/*.toml)")
    search.add_argument("--latency-table", type=Path, default=None, help="use a saved latency table instead of measuring")
    search.add_argument("--latency-engine", choices=("backend", "pytorch"), default="backend",
                        help="time blocks lowered by the target's backend (default) or as eager PyTorch modules")
    search.add_argument("--latency-method", choices=("ablation", "blocks"), default="ablation",
                        help="price each removal by the whole UNet without it (default; covers samplers and glue "
                             "ops) or by timing its blocks alone")
    search.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time CPU time of the process (default: robust to other jobs' load) or wall time")
    search.add_argument("--latency-threads", type=int, default=1, help="runtime threads while timing (0: default)")
    search.add_argument("--allow-no-text-path", action="store_true",
                        help="let the search remove every cross-attention (the UNet then ignores the prompt)")
    search.add_argument("--quality", choices=("auto", "judge", "output"), default="auto",
                        help="judge: prompt accuracy by the shapes judge; output: agreement with the full UNet")
    search.add_argument("--judge", type=Path, default=None, help="shapes judge folder (default: found beside the model)")
    search.add_argument("--search-prompts", type=int, default=None,
                        help="per candidate: judged prompts (default 48) or output-distance samples (default 16)")
    search.add_argument("--search-steps", type=int, default=None, help="sampling steps per judged candidate")
    train = parser.add_argument_group("training (--recover, --robust)")
    train.add_argument("--recover", action="store_true",
                       help="recover the pruned UNet by BK-SDM distillation (denoising + output KD + feature KD); "
                            "MODEL must be a pipeline folder and --output becomes a pipeline folder")
    train.add_argument("--run-dir", type=Path, default=None, help="checkpoints and logs (default: runs/prune/<output name>)")
    train.add_argument("--max-steps", type=int, default=1000)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-5 recover, 2e-5 robust)")
    train.add_argument("--lambda-sd", type=float, default=1.0, help="weight of the denoising loss")
    train.add_argument("--lambda-kd-output", type=float, default=1.0, help="weight of output distillation")
    train.add_argument("--lambda-kd-feat", type=float, default=1.0, help="recover: weight of feature distillation")
    train.add_argument("--subnet-prob", type=float, default=0.5, help="robust: share of steps run as a random sub-network")
    train.add_argument("--unit-prob", type=float, default=0.3, help="robust: chance each removable unit is skipped")
    train.add_argument("--data", default="", metavar="FOLDER",
                       help="your own training images: a folder with metadata.jsonl; default: the shapes task")
    train.add_argument("--cache-size", type=int, default=4096, help="training samples encoded once and drawn from")
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is visible")
    parser.set_defaults(func=run)


def unet_folder(model: str | None) -> Path:
    """The folder holding the UNet's config.json: MODEL itself or MODEL/unet."""
    from edgediff.model.load import resolve_model_path

    path = resolve_model_path(model)
    for folder in (path / "unet", path):
        config = folder / "config.json"
        if config.exists() and json.loads(config.read_text()).get("_class_name") == "UNet2DConditionModel":
            return folder
    raise ModelLoadError(
        f"{path} holds no UNet2DConditionModel (looked for {path}/unet/config.json and {path}/config.json)"
    )


def read_spec(path: Path):
    from edgediff.slim.prune import PruneSpec

    try:
        return PruneSpec.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise RecipeError(f"spec file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _pipeline_folder(model: str | None) -> Path:
    from edgediff.model.load import resolve_model_path

    path = resolve_model_path(model)
    if not (path / "model_index.json").is_file():
        raise RecipeError(f"{path} is not a diffusers pipeline folder: training needs the teacher's VAE and text encoder")
    return path


def _train(args: argparse.Namespace) -> int:
    common = dict(
        teacher=_pipeline_folder(args.model), output=args.output,
        run_dir=args.run_dir or Path("runs") / "prune" / args.output.name, max_steps=args.max_steps,
        batch_size=args.batch_size, lambda_sd=args.lambda_sd, lambda_kd_output=args.lambda_kd_output,
        seed=args.seed, cache_size=args.cache_size, data=args.data, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, cpu=True if args.cpu else None,
    )
    if args.robust:
        from edgediff.slim.robust import RobustSettings, robust_train

        settings = RobustSettings(**common, learning_rate=args.lr or 2e-5, subnet_prob=args.subnet_prob,
                                  unit_prob=args.unit_prob)
        result = robust_train(settings)
        digests = result.replica_digests
        summary = f"robust UNet: {result.output} ({result.subnets_seen} sub-networks seen on this process)"
    else:
        from edgediff.slim import prune
        from edgediff.slim.recover import RecoverSettings, recover

        config = json.loads((common["teacher"] / "unet" / "config.json").read_text())
        spec = prune.preset_spec(config, args.preset) if args.preset else read_spec(args.spec)
        result = recover(RecoverSettings(**common, spec=spec, learning_rate=args.lr or 5e-5,
                                         lambda_kd_feat=args.lambda_kd_feat))
        digests = result.replica_digests
        summary = (f"recovered student: {result.output} ({result.student_parameters:,} UNet parameters, "
                   f"{result.student_parameters / result.teacher_parameters:.1%} of the teacher)")
    if len(set(digests)) != 1:
        raise RecipeError(f"data-parallel replicas diverged: {digests}")
    print(f"{summary}; trained {result.loop.final_step} steps on {result.num_processes} process(es)")
    return 0


def _search(args: argparse.Namespace) -> int:
    from edgediff.slim import prune

    if args.random_weights:
        raise RecipeError("--latency-budget searches on trained weights; --random-weights cannot be combined with it")
    model = _pipeline_folder(args.model)
    unet_out = args.output / "unet-searched" if args.recover else args.output
    settings = prune.SearchSettings(
        model=model, output=unet_out, latency_budget=args.latency_budget, target=args.target,
        latency_table=args.latency_table, latency_engine=args.latency_engine, quality=args.quality,
        judge=args.judge, search_prompts=args.search_prompts, search_steps=args.search_steps, seed=args.seed,
        latency_method=args.latency_method, clock=args.clock, threads=args.latency_threads,
        keep_text_path=not args.allow_no_text_path,
    )
    result, table, record = prune.run_search(settings)
    print(f"teacher UNet: {table.unet_ms:.2f} ms ({table.clock} clock, {table.threads or 'default'} thread(s)) on "
          f"{table.backend} ({table.device}); priced {table.method} cover {(table.coverage or 0):.0%}; "
          f"budget {result.budget_ms:.2f} ms; load average {table.load_average}")
    for step in result.trace:
        print(f"  {step.step:2d} {step.action:7s} {', '.join(step.unit) or '-':60s} "
              f"{step.latency_ms:9.2f} ms  quality {step.quality:.4f}")
    if not result.reached:
        print("warning: the budget cannot be met by removing blocks alone; the fastest valid architecture is saved")
    print(f"search record: {unet_out / 'search'}; pruned UNet: {unet_out}")
    if args.recover:
        from edgediff.slim.recover import RecoverSettings, recover

        out = recover(RecoverSettings(
            teacher=model, output=args.output, run_dir=args.run_dir or Path("runs") / "prune" / args.output.name,
            spec=result.spec, max_steps=args.max_steps, batch_size=args.batch_size,
            learning_rate=args.lr or 5e-5, lambda_sd=args.lambda_sd, lambda_kd_output=args.lambda_kd_output,
            lambda_kd_feat=args.lambda_kd_feat, seed=args.seed, cache_size=args.cache_size, data=args.data,
            checkpoint_every=args.checkpoint_every, log_every=args.log_every, cpu=True if args.cpu else None))
        print(f"recovered student: {out.output} ({out.student_parameters:,} UNet parameters); "
              f"trained {out.loop.final_step} steps")
    return 0


def run(args: argparse.Namespace) -> int:
    from edgediff.slim import prune

    if args.latency_budget is not None:
        return _search(args)
    if args.robust or args.recover:
        if args.random_weights:
            raise RecipeError("--random-weights builds an untrained architecture; it cannot be combined with training")
        return _train(args)
    folder = unet_folder(args.model)
    config = json.loads((folder / "config.json").read_text())
    spec = prune.preset_spec(config, args.preset) if args.preset else read_spec(args.spec)
    student_config = prune.pruned_config(config, spec)
    teacher_params = prune.parameter_count(config)

    if args.random_weights:
        import torch
        from diffusers import UNet2DConditionModel

        torch.manual_seed(args.seed)
        student = UNet2DConditionModel.from_config(student_config)
    else:
        from edgediff.model.load import load_model_folder

        teacher = load_model_folder(folder).unet
        student = prune.prune_unet(teacher, spec)
        del teacher
    student_params = sum(p.numel() for p in student.parameters())
    prune.save_student(
        student.eval(), args.output, spec, str(folder),
        {"preset": args.preset, "random_weights": bool(args.random_weights),
         "teacher_parameters": teacher_params, "student_parameters": student_params},
    )
    print(f"teacher {folder}: {teacher_params:,} parameters")
    for line in spec.describe():
        print(f"  removed {line}")
    print(f"student: {student_params:,} parameters ({student_params / teacher_params:.1%} of the teacher)"
          f"{' with random weights' if args.random_weights else ''}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":  # `accelerate launch -m edgediff.commands.prune ARGS` (same as `edgediff prune ARGS`)
    import sys

    from edgediff.cli import main

    sys.exit(main(["prune", *sys.argv[1:]]))  # the one exit path of every command
