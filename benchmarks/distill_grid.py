"""Image grids of teacher vs. distilled students, side by side, same prompts and seeds (PyTorch, diffusers).

    python benchmarks/distill_grid.py --out reports/distill/grid.png \
        --column "teacher 25 steps cfg 7.5=models/shapes-sd:DDIMScheduler:25:7.5" \
        --column "student 4 steps=models/shapes-sd-lcm4::4:" ...

Each column is LABEL=FOLDER:SCHEDULER:STEPS:GUIDANCE; empty fields take the folder's own scheduler and its
edgediff.json defaults. Rows are shapes-dataset captions (held-out seed), one seed per row for all columns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from edgediff.slim.distill import read_model_defaults


def load(folder: str, scheduler: str):
    import diffusers
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    if scheduler:
        config = dict(pipe.scheduler.config)
        if scheduler != type(pipe.scheduler).__name__:
            config["timestep_spacing"] = "trailing"  # few-step samplers must start at the noisiest timestep
        pipe.scheduler = getattr(diffusers, scheduler).from_config(config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--column", action="append", required=True)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--dataset-seed", type=int, default=12345)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from edgediff.shapes import dataset

    captions = [dataset.sample_spec(args.dataset_seed, i).caption for i in range(args.rows)]
    columns: list[tuple[str, list[np.ndarray]]] = []
    for spec in args.column:
        label, rest = spec.split("=", 1)
        folder, scheduler, steps, guidance = (rest.split(":") + ["", "", ""])[:4]
        defaults = read_model_defaults(Path(folder))
        pipe = load(folder, scheduler)
        n = int(steps or defaults.get("steps", 25))
        g = float(guidance or defaults.get("guidance", 7.5))
        images = [
            pipe(c, num_inference_steps=n, guidance_scale=g, output_type="np",
                 generator=torch.Generator().manual_seed(row)).images[0]
            for row, c in enumerate(captions)
        ]
        columns.append((label, [(np.clip(im, 0, 1) * 255).round().astype(np.uint8) for im in images]))
    size, head, left = 64, 14, 260
    grid = Image.new("RGB", (left + size * len(columns), head * 2 + size * len(captions)), "white")
    draw = ImageDraw.Draw(grid)
    for j, (label, images) in enumerate(columns):
        for k, line in enumerate([label[:12], label[12:24]]):
            draw.text((left + j * size + 2, k * head), line, fill="black")
        for i, im in enumerate(images):
            grid.paste(Image.fromarray(im), (left + j * size, head * 2 + i * size))
    for i, c in enumerate(captions):
        draw.text((2, head * 2 + i * size + 26), c[:44], fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid = grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST)
    grid.save(args.out)
    (args.out.with_suffix(".json")).write_text(json.dumps({"columns": args.column, "captions": captions}, indent=1))
    print(args.out)


if __name__ == "__main__":
    main()
