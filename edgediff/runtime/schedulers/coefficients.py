"""One row of a scheduler table (`StepCoefficients`) and the tables' format tag.

Separate because both ends use it: the builders write rows, `TableScheduler` (and devices) read them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TABLES_FORMAT = "edgediff-scheduler-tables/1"


@dataclass(frozen=True)
class StepCoefficients:
    """One row of the table (see the package docstring for how a device applies it)."""

    timestep: float
    input_scale: float
    convert: tuple[float, float]
    combine: tuple[float, ...]
    push: bool
    update: tuple[float, float, float, float]
    x0: tuple[float, float] | None = None
    base: str = "sample"
    save_sample: bool = False

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "timestep": self.timestep,
            "input_scale": self.input_scale,
            "convert": list(self.convert),
            "combine": list(self.combine),
            "push": self.push,
            "update": list(self.update),
            "x0": list(self.x0) if self.x0 is not None else None,
            "base": self.base,
            "save_sample": self.save_sample,
        }
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "StepCoefficients":
        return cls(
            timestep=float(row["timestep"]),
            input_scale=float(row["input_scale"]),
            convert=tuple(float(v) for v in row["convert"]),  # type: ignore[arg-type]
            combine=tuple(float(v) for v in row["combine"]),
            push=bool(row["push"]),
            update=tuple(float(v) for v in row["update"]),  # type: ignore[arg-type]
            x0=tuple(float(v) for v in row["x0"]) if row.get("x0") is not None else None,  # type: ignore[arg-type]
            base=str(row.get("base", "sample")),
            save_sample=bool(row.get("save_sample", False)),
        )
