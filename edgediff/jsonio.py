"""Strict JSON as every app parses it (Kotlin's org.json, Swift's JSONDecoder, JavaScript): no NaN or
Infinity (each becomes null with the reason beside it), files written in full or not at all."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def strict_json_value(value: Any) -> Any:
    """`value` with every non-finite float replaced by None and the reason beside it as `<key>_reason`, numpy
    scalars as Python numbers and paths as strings: what every JSON parser (Kotlin's org.json, Swift's
    JSONDecoder, JavaScript) accepts."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            item = _plain(item)
            if isinstance(item, float) and not math.isfinite(item):
                out[key] = None
                out.setdefault(f"{key}_reason", _nonfinite_reason(key, item))
            else:
                out[key] = strict_json_value(item)
        return out
    if isinstance(value, (list, tuple)):
        return [None if isinstance(v := _plain(item), float) and not math.isfinite(v) else strict_json_value(v)
                for item in value]
    return _plain(value)


def restore_nonfinite(value: Any) -> Any:
    """The inverse of `strict_json_value` for configs read back from a manifest: `key: null` with
    `key_reason: "-infinity ..."` becomes -inf again (diffusers' DPM-Solver `lambda_min_clipped` is -inf)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            reason = value.get(f"{key}_reason") if item is None else None
            if key.endswith("_reason") and value.get(key[: -len("_reason")], 0) is None:
                continue
            if isinstance(reason, str):
                out[key] = (float("nan") if reason.startswith("not a number") else
                            -math.inf if reason.startswith("-infinity") else math.inf)
            else:
                out[key] = restore_nonfinite(item)
        return out
    if isinstance(value, list):
        return [restore_nonfinite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (dict, list, tuple, str)):
        return value.item()  # numpy scalar
    if isinstance(value, Path):
        return str(value)
    return value


def _nonfinite_reason(key: str, value: float) -> str:
    if math.isnan(value):
        return "not a number (the output had non-finite values)"
    if "psnr" in key and value > 0:
        return "infinite: the outputs are identical"
    return f"{'+' if value > 0 else '-'}infinity, not representable in JSON"


def write_json(path: Path, data: Any) -> None:
    """Strict JSON, written in full or not at all (a temporary file renamed into place)."""
    text = json.dumps(strict_json_value(data), indent=2, allow_nan=False) + "\n"
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_strict_json(path: Path) -> Any:
    """JSON as every app reads it: NaN / Infinity are errors."""
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=reject_constant)


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
