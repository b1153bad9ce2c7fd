"""`TableScheduler`: the device algorithm, run from the tables alone in float32 numpy.

Separate from the builders: this is what a bundle's runtime needs, and it reads only the tables (no
scheduler class, no config), exactly as an on-device implementation does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgediff.errors import UnsupportedError
from edgediff.runtime.schedulers.coefficients import TABLES_FORMAT, StepCoefficients
from edgediff.runtime.schedulers.tables import scheduler_tables


class TableScheduler:
    """Runs a scheduler from its tables alone: the device algorithm, in float32 numpy.

    Call `reset()` before each image; then for each step i: `scale_model_input(x, i)`, run the model,
    `x = step(model_output, i, x, noise)`.
    """

    def __init__(self, tables: dict[str, Any]):
        if tables.get("format") != TABLES_FORMAT:
            raise UnsupportedError(
                f"scheduler tables have format {tables.get('format')!r}, this runtime reads {TABLES_FORMAT!r}; "
                "re-create the bundle with this edgediff version"
            )
        self.tables = tables
        self.class_name: str = tables["class_name"]
        self.name: str = tables.get("sampler") or self.class_name  # a preset's name, else the class
        self.steps = [StepCoefficients.from_json(row) for row in tables["steps"]]
        self.timesteps = np.array([s.timestep for s in self.steps], dtype=np.float32)
        self.init_noise_sigma = float(tables["init_noise_sigma"])
        self.history_size = int(tables["history_size"])
        self.clip_range = tables.get("clip_range")
        self.needs_noise = bool(tables.get("needs_noise", False))
        self.reset()

    @classmethod
    def create(cls, class_name: str, config: dict[str, Any], num_inference_steps: int) -> "TableScheduler":
        return cls(scheduler_tables(class_name, config, num_inference_steps))

    def __len__(self) -> int:
        return len(self.steps)

    def reset(self) -> None:
        self._history: list[np.ndarray] = []
        self._saved: np.ndarray | None = None

    def step_needs_noise(self, index: int) -> bool:
        return self.steps[index].update[3] != 0.0

    def scale_model_input(self, sample: np.ndarray, index: int) -> np.ndarray:
        scale = self.steps[index].input_scale
        return sample if scale == 1.0 else (sample * scale).astype(np.float32)

    def step(self, model_output: np.ndarray, index: int, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        row = self.steps[index]
        m = model_output.astype(np.float32, copy=False)
        x = sample.astype(np.float32, copy=False)
        if row.base == "saved":
            if self._saved is None:
                raise UnsupportedError(f"step {index} restarts from a saved sample but none was saved; call reset() and step in order")
            base = self._saved
        else:
            base = x
        if row.save_sample:
            self._saved = x
        d = _axpby(row.convert[0], base, row.convert[1], m)
        combined = d * row.combine[0] if row.combine[0] != 1.0 else d
        for k, weight in enumerate(row.combine[1:], start=1):
            if k > len(self._history):
                raise UnsupportedError(f"step {index} needs {k} earlier outputs; step the scheduler in order from reset()")
            combined = combined + weight * self._history[-k]
        if row.push:
            self._history.append(d)
            if self.history_size:
                del self._history[: -self.history_size]
            else:
                self._history.clear()
        out = _axpby(row.update[0], base, row.update[1], combined)
        if row.x0 is not None:
            x0 = _axpby(row.x0[0], base, row.x0[1], m)
            if self.clip_range is not None:
                x0 = np.clip(x0, -self.clip_range, self.clip_range)
            out = out + row.update[2] * x0
        if row.update[3] != 0.0:
            if noise is None:
                raise UnsupportedError(f"{self.class_name} step {index} injects noise; pass noise= (a standard-normal array)")
            out = out + row.update[3] * noise.astype(np.float32, copy=False)
        return out.astype(np.float32, copy=False)


def _axpby(a: float, x: np.ndarray, b: float, y: np.ndarray) -> np.ndarray:
    """a*x + b*y in float32, skipping zero terms (so 0 * inf never appears)."""
    if a == 0.0:
        return (b * y).astype(np.float32, copy=False)
    if b == 0.0:
        return (a * x).astype(np.float32, copy=False)
    return (a * x + b * y).astype(np.float32, copy=False)
