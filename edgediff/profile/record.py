"""One record per measurement, whatever produced it (host timer, benchmark_model, trtexec, the iOS app...)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgediff import __version__


@dataclass
class OpTime:
    """Time spent in one op (or layer / node type) as reported by a profiler."""

    name: str
    ms: float
    percent: float | None = None
    count: int | None = None


@dataclass
class ProfileRecord:
    """A comparable latency/memory measurement of one component on one backend and device.

    Fields a tool does not report stay None; nothing is ever filled in by guess.
    """

    component: str
    backend: str
    precision: str
    device: str
    tool: str
    median_ms: float | None  # None when the tool reports no median (e.g. TFLite benchmark_model: only avg)
    tool_version: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    warmup: int | None = None
    runs: int | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    peak_memory_mb: float | None = None
    ops: list[OpTime] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProfileRecord":
        data = dict(data)
        data.pop("edgediff_version", None)  # stamped on the file by write_records
        data["ops"] = [OpTime(**op) for op in data.get("ops", [])]
        return cls(**data)


def records_json(records: list[ProfileRecord]) -> str:
    """Records as a JSON list, each stamped with the edgediff version that wrote it (printed and saved alike)."""
    return json.dumps([r.to_dict() | {"edgediff_version": __version__} for r in records], indent=2) + "\n"


def write_records(records: list[ProfileRecord], path: Path) -> None:
    path.write_text(records_json(records))


def read_records(path: Path) -> list[ProfileRecord]:
    return [ProfileRecord.from_dict(d) for d in json.loads(path.read_text())]
