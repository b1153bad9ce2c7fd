"""Training data: shapes-dataset latents through the teacher's VAE (cached), and prompt embeddings.

Separate because pruning's search and recovery training draw from the same data with the same classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from edgediff.shapes import dataset


class ShapesLatents:
    """(x0 latent, caption) pairs from the deterministic shapes dataset through the teacher's VAE.

    The first `cache_size` samples are rendered and encoded once (into `cache_file` when given, so a
    resumed or second process reuses them); batches are drawn from that cache with replacement."""

    def __init__(self, vae: Any, dataset_seed: int, cache_size: int = 4096, cache_file: Path | None = None):
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
