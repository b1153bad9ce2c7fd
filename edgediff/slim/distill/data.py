"""Training data through the teacher: latents of a `TrainingData` source (edgediff.slim.data: the shapes task or
a folder of the user's images) through the teacher's VAE (cached), and prompt embeddings.

Separate because pruning's search and recovery training draw from the same data with the same classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from edgediff.slim.data import ShapesData, TrainingData


class EncodedLatents:
    """(x0 latent, caption) pairs: the first `cache_size` samples of `data` through the teacher's VAE.

    Encoded once (into `cache_file` when given, so a resumed or second process reuses them); batches are drawn
    from that cache with replacement."""

    def __init__(self, vae: Any, data: TrainingData, cache_size: int = 4096, cache_file: Path | None = None):
        self.data = data
        size = min(cache_size, len(data))
        if cache_file is not None and Path(cache_file).is_file():
            saved = torch.load(cache_file, weights_only=True)
            if saved.get("source") == data.name and len(saved["captions"]) == size:
                self.latents, self.captions = saved["latents"], list(saved["captions"])
                return
        self.latents, self.captions = self._encode(vae, size)
        if cache_file is not None:
            Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"source": data.name, "latents": self.latents, "captions": self.captions}, cache_file)

    @torch.no_grad()
    def _encode(self, vae: Any, size: int, chunk: int = 64) -> tuple[torch.Tensor, list[str]]:
        device = next(vae.parameters()).device
        scaling = float(vae.config.scaling_factor)
        latents, captions = [], []
        for start in tqdm(range(0, size, chunk), desc=f"encoding {self.data.name} latents", leave=False):
            images, texts = self.data.batch(start, min(chunk, size - start))
            pixels = torch.from_numpy(images).to(device)
            latents.append(vae.encode(pixels).latent_dist.mean.cpu() * scaling)
            captions += texts
        return torch.cat(latents), captions

    def batch(self, gen: torch.Generator, size: int, device: torch.device) -> tuple[torch.Tensor, list[str]]:
        idx = torch.randint(0, len(self.captions), (size,), generator=gen)
        return self.latents[idx].to(device), [self.captions[i] for i in idx.tolist()]


class ShapesLatents(EncodedLatents):
    """The shapes task through the teacher's VAE (the default model's training data)."""

    def __init__(self, vae: Any, dataset_seed: int, cache_size: int = 4096, cache_file: Path | None = None):
        super().__init__(vae, ShapesData(dataset_seed), cache_size, cache_file)


def cache_file(run_dir: Path, data: TrainingData, cache_size: int) -> Path:
    return Path(run_dir) / f"latents_{data.name}_{cache_size}.pt"


def native_size(pipe: Any) -> int:
    """The image size the teacher generates (its UNet's sample size times the VAE's downscale)."""
    sample = pipe.unet.config.sample_size
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    return int(sample) * 2 ** (len(pipe.vae.config.block_out_channels) - 1)


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
