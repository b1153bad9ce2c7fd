"""The regression guard: flag a row that got more than 20% slower or larger than the last recorded run.

benchmarks/baseline.json holds, per machine fingerprint, each row's last recorded figures. Rows are compared only
with rows of the same machine class (fingerprint) and the same settings; anything else is "no baseline", never a
pass. `--record-baseline` stores the current rows for this machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgediff.errors import EdgediffError, RecipeError

TOLERANCE = 0.20
# figure -> (where it is in a row, what "worse" means)
METRICS = {
    "convert_wall_s": ("convert", "wall_s"),
    "peak_tree_rss_mb": ("convert", "peak_tree_rss_mb"),
    "artifact_bytes": ("convert", "artifact_bytes"),
    "median_s": ("timing", "artifact.median_s"),
    "ratio_to_eager": ("timing", "artifact.ratio_to_eager"),
}


class RegressionFound(EdgediffError):
    """A row is more than the tolerance slower or larger than the baseline (exit code 1, like a failed check)."""

    exit_code = 1


@dataclass
class Finding:
    key: str
    metric: str
    baseline: float
    current: float

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1.0

    def line(self) -> str:
        return f"{self.key}: {self.metric} {self.baseline:.4g} -> {self.current:.4g} ({self.change:+.0%})"


def figures(row: dict[str, Any]) -> dict[str, float]:
    """The compared figures of one row (those it has: a failed or skipped phase has none)."""
    found: dict[str, float] = {}
    for name, (phase, path) in METRICS.items():
        value: Any = row.get(phase) or {}
        if value.get("status") != "ok":
            continue
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and value > 0:
            found[name] = float(value)
    return found


def read_baseline(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": 1, "machines": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise RecipeError(f"{path} is not valid JSON ({exc}); restore it from git or record a new one "
                          "with --record-baseline") from None
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        raise RecipeError(f"{path} is not a benchmark baseline (expected {{'version': 1, 'machines': {{...}}}})")
    return data


def compare(rows: list[dict[str, Any]], baseline: dict[str, Any], fingerprint: str,
            tolerance: float = TOLERANCE) -> tuple[list[Finding], list[str]]:
    """(findings worse than tolerance, keys of rows without a baseline on this machine)."""
    recorded = (baseline.get("machines", {}).get(fingerprint) or {}).get("rows", {})
    findings, missing = [], []
    for row in rows:
        base = recorded.get(row["key"])
        if not base or base.get("settings") != row.get("settings"):
            missing.append(row["key"])
            continue
        current = figures(row)
        for metric, old in base.get("figures", {}).items():
            new = current.get(metric)
            if new is not None and old and new > old * (1.0 + tolerance):
                findings.append(Finding(row["key"], metric, float(old), new))
    return findings, missing


def record(rows: list[dict[str, Any]], baseline: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    """The baseline with this machine's rows replaced by the current ones (other machines kept)."""
    entry = baseline.setdefault("machines", {}).setdefault(machine["fingerprint"], {"rows": {}})
    entry["machine"] = {k: machine[k] for k in ("cpu_model", "flags", "logical_cpus", "memory_gb")}
    entry["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for row in rows:
        entry["rows"][row["key"]] = {"settings": row.get("settings"), "figures": figures(row),
                                     "finished": row.get("finished")}
    return baseline


def write_baseline(path: Path, baseline: dict[str, Any]) -> None:
    path.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")


def findings_dicts(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) | {"change": round(f.change, 4)} for f in findings]
