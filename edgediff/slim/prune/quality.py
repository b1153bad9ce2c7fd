"""How the search scores a candidate architecture: agreement with the full UNet, or the shapes judge.

Separate from the search, which only needs `quality(spec) -> float` and a label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgediff.slim.distill.data import PromptEncoder, ShapesLatents  # a submodule: see search_run.py
from edgediff.slim.prune.spec import PruneSpec
from edgediff.slim.prune.view import subnet_view


class OutputDistance:
    """quality(spec) = 1 - MSE(sub-network, full UNet) / Var(full UNet) on a fixed evaluation batch.

    The batch: shapes-dataset latents through the model's VAE, noised at `timesteps`, with their captions
    (and the empty prompt, the unconditional half of guidance). 1.0 means the full UNet's predictions."""

    label = "output agreement with the full UNet (1 - MSE / variance)"

    def __init__(self, pipe: Any, samples: int = 16, timesteps: tuple[int, ...] = (100, 400, 700, 950), seed: int = 0):
        self.unet = pipe.unet.eval()
        data = ShapesLatents(pipe.vae, dataset_seed=seed + 90_000, cache_size=samples)
        prompts = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
        gen = torch.Generator().manual_seed(seed)
        alphas = pipe.scheduler.alphas_cumprod.float()
        batches = []
        for t in timesteps:
            noise = torch.randn(data.latents.shape, generator=gen)
            a = alphas[t]
            x_t = a.sqrt() * data.latents + (1 - a).sqrt() * noise
            text = prompts(data.captions, "cpu")
            empty = prompts.empty(len(data.captions), "cpu")
            batches.append((torch.cat([x_t, x_t]), torch.full((2 * len(x_t),), float(t)), torch.cat([empty, text])))
        self.batches = batches
        self.reference = [self._run(b) for b in batches]

    @torch.no_grad()
    def _run(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.unet(batch[0], batch[1], encoder_hidden_states=batch[2], return_dict=False)[0]

    def __call__(self, spec: PruneSpec) -> float:
        with subnet_view(self.unet, spec):
            outs = [self._run(b) for b in self.batches]
        err = sum(float(((o - r) ** 2).mean()) for o, r in zip(outs, self.reference))
        var = sum(float(r.var()) for r in self.reference)
        return 1.0 - err / var


class JudgeQuality:
    """quality(spec) = prompt accuracy (%) that the shapes judge reads from images the sub-network generates
    (fixed prompts and seeds from `edgediff.evaluate`, the model's own scheduler, steps and guidance)."""

    label = "prompt accuracy (%) read by the shapes judge"

    def __init__(self, pipe: Any, judge_dir: Path, prompts: int = 48, steps: int = 25, guidance: float = 4.0,
                 seed: int = 0):
        # Imported here: only the judge-scored search needs the evaluation stack, and run_search treats it as
        # optional (it falls back to OutputDistance when the judge cannot be found or imported).
        from edgediff.evaluate import EvalSettings, prompt_set
        from edgediff.runtime.pipeline import initial_noise
        from edgediff.shapes.judge import load_judge

        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self.judge = load_judge(judge_dir)
        self.settings = EvalSettings(steps=steps, guidance=guidance, prompts=prompts, seed=seed)
        self.pairs = prompt_set(self.settings)
        cfg = pipe.unet.config
        shape = (1, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        self.latents = torch.from_numpy(np.concatenate([initial_noise(s, shape) for _, s in self.pairs]))

    def images(self, spec: PruneSpec) -> np.ndarray:
        size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        with subnet_view(self.pipe.unet, spec), torch.inference_mode():
            out = self.pipe(prompt=[s.caption for s, _ in self.pairs], latents=self.latents.clone(),
                            num_inference_steps=self.settings.steps, guidance_scale=self.settings.guidance,
                            height=size, width=size, output_type="np")
        return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)

    def __call__(self, spec: PruneSpec) -> float:
        from edgediff.shapes.judge import predict  # optional like the imports in __init__
        from edgediff.shapes.metrics import prompt_accuracy

        preds, _ = predict(self.judge, self.images(spec))
        return 100.0 * float(prompt_accuracy(preds, [s for s, _ in self.pairs])["prompt_accuracy"])
