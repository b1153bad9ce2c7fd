"""Prompt accuracy and Frechet distance in the judge's feature space (numpy only, no scipy)."""

from __future__ import annotations

import numpy as np

from edgediff.shapes import dataset
from edgediff.shapes.judge import HEADS, JUDGED


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets ([N, D] each), as in FID.

    tr(sqrt(S1 S2)) is computed as tr(sqrt(sqrt(S1) S2 sqrt(S1))), whose argument is symmetric PSD,
    so two symmetric eigendecompositions replace a general matrix square root.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two [N>=2, D] feature sets with equal D, got {a.shape} and {b.shape}")
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    sqrt_s1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = sqrt_s1 @ s2 @ sqrt_s1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def prompt_accuracy(predictions: dict[str, np.ndarray], specs: list[dataset.ShapeSpec]) -> dict[str, float]:
    """`prompt_accuracy`: fraction whose shape, shape colour and background colour all match the prompt;
    plus per-attribute accuracy (size and position are reported, not required)."""
    labels = {name: np.array([s.labels()[name] for s in specs]) for name in HEADS}
    per = {name: float((predictions[name] == labels[name]).mean()) for name in HEADS}
    every = np.all([predictions[k] == labels[k] for k in JUDGED], axis=0)
    return {"prompt_accuracy": float(every.mean()), **{f"{k}_accuracy": v for k, v in per.items()}}
