"""Parity metrics and the gate: every artifact against its PyTorch component on seeded inputs.

PSNR uses the reference's own dynamic range as the peak (max - min of the PyTorch output), so the figure
means the same thing for a latent, a noise prediction or an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from edgediff.errors import ParityError

# Defaults when the recipe does not set a threshold, by precision. 35 dB is Apple's gate for fp16 Core ML.
DEFAULT_MIN_PSNR_DB = {"fp32": 40.0, "fp16": 35.0, "int8": 20.0}
DEFAULT_MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.98}


@dataclass(frozen=True)
class Metrics:
    psnr_db: float
    cosine: float
    max_abs_error: float

    def to_dict(self) -> dict[str, float]:
        return {"psnr_db": round(self.psnr_db, 3), "cosine": round(self.cosine, 7),
                "max_abs_error": float(f"{self.max_abs_error:.4g}")}


def compare(reference: np.ndarray, candidate: np.ndarray) -> Metrics:
    """PSNR (dB, peak = reference range), cosine similarity and max-abs error of two same-shaped arrays."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    got = np.asarray(candidate, dtype=np.float64).ravel()
    if ref.shape != got.shape:
        raise ValueError(f"shape mismatch: reference {np.shape(reference)} vs candidate {np.shape(candidate)}")
    if not np.all(np.isfinite(got)):
        return Metrics(float("-inf"), float("nan"), float("inf"))
    err = ref - got
    mse = float(np.mean(err**2))
    peak = float(ref.max() - ref.min()) or 1.0
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)
    denom = float(np.linalg.norm(ref) * np.linalg.norm(got))
    cosine = float(ref @ got / denom) if denom else (1.0 if not ref.any() and not got.any() else 0.0)
    return Metrics(psnr, cosine, float(np.max(np.abs(err))))


def worst(metrics: list[Metrics]) -> Metrics:
    """The gate judges the worst sample, not the mean: one bad input is a bug."""
    return Metrics(
        min(m.psnr_db for m in metrics), min(m.cosine for m in metrics), max(m.max_abs_error for m in metrics)
    )


@dataclass(frozen=True)
class Thresholds:
    min_psnr_db: float
    min_cosine: float


@dataclass
class ComponentResult:
    component: str
    status: str  # "passed", "failed" or "skipped"
    metrics: Metrics | None = None
    samples: int = 0
    reason: str = ""
    per_output: dict[str, Metrics] = field(default_factory=dict)
    structural: dict[str, Any] | None = None  # backends that cannot run here report structural checks

    def shortfall(self, limits: Thresholds) -> str:
        m = self.metrics
        parts = []
        if m.psnr_db < limits.min_psnr_db:
            parts.append(f"PSNR {m.psnr_db:.1f} dB < {limits.min_psnr_db:g} dB")
        if m.cosine < limits.min_cosine:
            parts.append(f"cosine {m.cosine:.5f} < {limits.min_cosine:g}")
        return f"{self.component}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "samples": self.samples}
        if self.metrics is not None:
            data.update(self.metrics.to_dict())
        if self.reason:
            data["reason"] = self.reason
        return data


def check_component(name: str, reference_fn, candidate_fn, inputs_list: list[Mapping[str, np.ndarray]],
                    limits: Thresholds) -> ComponentResult:
    """Run both sides on every input set; judge the worst sample of every output."""
    per_output: dict[str, list[Metrics]] = {}
    for inputs in inputs_list:
        ref = reference_fn(inputs)
        got = candidate_fn(inputs)
        for key, value in ref.items():
            if key not in got:
                raise ParityError([f"{name}: artifact produced no output '{key}' (got {', '.join(got)})"])
            per_output.setdefault(key, []).append(compare(value, got[key]))
    worst_per_output = {k: worst(v) for k, v in per_output.items()}
    overall = worst(list(worst_per_output.values()))
    ok = overall.psnr_db >= limits.min_psnr_db and overall.cosine >= limits.min_cosine
    return ComponentResult(name, "passed" if ok else "failed", overall, len(inputs_list), per_output=worst_per_output)


def gate(results: list[ComponentResult], limits: Mapping[str, Thresholds]) -> None:
    """Raise ParityError naming every failing component and its shortfall."""
    failures = [r.shortfall(limits[r.component]) for r in results if r.status == "failed"]
    if failures:
        raise ParityError(failures)
