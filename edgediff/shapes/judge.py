"""The judge: a small CNN that reads shape, shape colour, background colour (plus size and position)
back from a 64x64 image. It scores generated images (prompt accuracy) and supplies the feature
space for the Frechet distance.

It is trained on rendered samples with mild noise, blur and colour-shift augmentation so it stays
reliable on the slightly soft images a diffusion model produces.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgediff.errors import ModelLoadError
from edgediff.shapes import dataset

HEADS: dict[str, int] = {
    "shape": len(dataset.SHAPES),
    "color": len(dataset.COLORS),
    "background": len(dataset.COLORS),
    "size": len(dataset.SIZE_NAMES),
    "position": len(dataset.POSITIONS),
}
# Prompt accuracy requires these; size and position are predicted and reported but not required.
JUDGED: tuple[str, ...] = ("shape", "color", "background")
WEIGHTS_FILE = "judge.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class JudgeConfig:
    widths: tuple[int, ...] = (24, 48, 96, 128)
    feature_dim: int = 64


@dataclass(frozen=True)
class JudgeTrainSettings:
    seed: int = 1234  # dataset seed for training samples
    heldout_seed: int = 999_001  # a different seed: held-out samples never seen in training
    train_samples: int = 16_000
    heldout_samples: int = 4_000
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3


class ShapesJudge(nn.Module):
    """Four stride-2 conv stages (64 -> 4 px), a flatten that keeps position, a feature layer, five heads."""

    def __init__(self, config: JudgeConfig = JudgeConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_ch = 3
        for width in config.widths:
            layers += [
                nn.Conv2d(in_ch, width, 3, stride=2, padding=1),
                nn.GroupNorm(8, width),
                nn.SiLU(),
                nn.Conv2d(width, width, 3, padding=1),
                nn.SiLU(),
            ]
            in_ch = width
        self.body = nn.Sequential(*layers)
        side = dataset.RESOLUTION // 2 ** len(config.widths)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(in_ch * side * side, config.feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({name: nn.Linear(config.feature_dim, n) for name, n in HEADS.items()})

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [-1, 1], NCHW (the Frechet-distance space)."""
        return self.features(self.body(images))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.embed(images)
        return {name: head(feats) for name, head in self.heads.items()}


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Noise, blur and colour shifts of the size a diffusion model's errors have."""
    n = x.shape[0]
    blur_mask = torch.rand(n, 1, 1, 1, generator=gen) < 0.5
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = torch.where(blur_mask, blurred, x)
    x = x + torch.randn(n, 3, 1, 1, generator=gen) * 0.06  # per-channel colour shift
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.12
    return x.clamp(-1, 1)


def _labels(specs: list[dataset.ShapeSpec]) -> dict[str, torch.Tensor]:
    rows = [s.labels() for s in specs]
    return {name: torch.tensor([r[name] for r in rows]) for name in HEADS}


@torch.no_grad()
def predict(judge: ShapesJudge, images_uint8: np.ndarray, batch_size: int = 256) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Class predictions per head and penultimate features for uint8 NHWC images."""
    judge.eval()
    preds: dict[str, list[np.ndarray]] = {name: [] for name in HEADS}
    feats: list[np.ndarray] = []
    for start in range(0, len(images_uint8), batch_size):
        x = torch.from_numpy(dataset.to_tensor_range(images_uint8[start : start + batch_size]))
        f = judge.embed(x)
        feats.append(f.numpy())
        for name, head in judge.heads.items():
            preds[name].append(head(f).argmax(-1).numpy())
    return {k: np.concatenate(v) for k, v in preds.items()}, np.concatenate(feats).astype(np.float64)


def accuracy(judge: ShapesJudge, images: np.ndarray, specs: list[dataset.ShapeSpec]) -> dict[str, float]:
    """Per-head accuracy plus `all` (shape, colour and background all right)."""
    preds, _ = predict(judge, images)
    labels = {k: v.numpy() for k, v in _labels(specs).items()}
    out = {name: float((preds[name] == labels[name]).mean()) for name in HEADS}
    out["all"] = float(np.all([preds[k] == labels[k] for k in JUDGED], axis=0).mean())
    return out


def train_judge(settings: JudgeTrainSettings = JudgeTrainSettings(), config: JudgeConfig = JudgeConfig(), progress: bool = True) -> tuple[ShapesJudge, dict]:
    """Train from scratch on rendered samples; returns the judge and its held-out accuracy report."""
    from tqdm import tqdm

    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    started = time.perf_counter()
    images, specs = dataset.batch(settings.seed, 0, settings.train_samples)
    x_all = torch.from_numpy(dataset.to_tensor_range(images))
    y_all = _labels(specs)
    judge = ShapesJudge(config)
    steps_per_epoch = settings.train_samples // settings.batch_size
    opt = torch.optim.AdamW(judge.parameters(), lr=settings.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch)
    bar = tqdm(total=settings.epochs * steps_per_epoch, desc="judge", disable=not progress)
    for _ in range(settings.epochs):
        judge.train()
        order = torch.randperm(settings.train_samples, generator=gen)
        for step in range(steps_per_epoch):
            idx = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            logits = judge(_augment(x_all[idx], gen))
            loss = sum(F.cross_entropy(logits[k], y_all[k][idx]) for k in HEADS)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    held_images, held_specs = dataset.batch(settings.heldout_seed, 0, settings.heldout_samples)
    report = {
        "heldout_accuracy": accuracy(judge, held_images, held_specs),
        "heldout_samples": settings.heldout_samples,
        "train_seconds": round(time.perf_counter() - started, 1),
        "settings": asdict(settings),
    }
    return judge, report


def save_judge(judge: ShapesJudge, folder: str | Path, report: dict | None = None) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in judge.state_dict().items()}, str(folder / WEIGHTS_FILE))
    meta = {"config": asdict(judge.config), "heads": HEADS, "judged": list(JUDGED), "report": report or {}}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load_judge(folder: str | Path) -> ShapesJudge:
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(f"no judge in {folder}: expected {WEIGHTS_FILE} and {CONFIG_FILE} (train one with `edgediff train-default --only judge`)")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    cfg = meta["config"]
    judge = ShapesJudge(JudgeConfig(widths=tuple(cfg["widths"]), feature_dim=int(cfg["feature_dim"])))
    judge.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    judge.eval()
    return judge
