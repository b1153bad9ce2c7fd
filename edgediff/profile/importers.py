"""`edgediff profile --import FILE --tool T`: read a saved output of a supported tool into ProfileRecords."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgediff.errors import ParseError, RecipeError
from edgediff.profile.parsers import (
    app_report,
    litert_benchmark,
    mlperf,
    ort_perf_test,
    ort_profile,
    tflite_benchmark,
    trtexec,
)
from edgediff.profile.parsers._common import clean_text, fail_absent, last_line
from edgediff.profile.record import ProfileRecord

# tool name -> default backend of the artifacts it measures
TOOLS: dict[str, str] = {
    "benchmark_model": "litert",
    "litert-benchmark": "litert",
    "onnxruntime_perf_test": "onnxruntime",
    "ort-profile": "onnxruntime",
    "trtexec": "tensorrt",
    "app": "coreml",
    "mlperf": "unknown",
}
_ALIASES = {"litert_benchmark": "litert-benchmark", "ort_profile": "ort-profile", "ios": "app",
            "tflite_benchmark": "benchmark_model"}


def normalize_tool(tool: str) -> str:
    name = _ALIASES.get(tool, tool)
    if name not in TOOLS:
        raise RecipeError(f"unknown tool {tool!r}; supported: {', '.join(TOOLS)}")
    return name


def read_output(path: Path) -> str:
    """A saved tool output as text, whatever wrote it: UTF-8 with or without BOM, or UTF-16 (what Windows
    PowerShell's `>` writes) with its BOM; undecodable bytes become U+FFFD and are never read as figures."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    if len(data) >= 4 and data[1:4:2] == b"\x00\x00" and data[0:4:2] != b"\x00\x00":  # UTF-16-LE, no BOM
        return data.decode("utf-16-le", errors="replace")
    return data.decode("utf-8", errors="replace")


def import_report(path: str | Path, tool: str, *, component: str | None = None, backend: str | None = None,
                  precision: str | None = None, device: str | None = None) -> list[ProfileRecord]:
    """Parse one saved tool output. Plain tool logs do not say which component or device they measured: pass
    them (they default to 'model' and 'unknown'); the app report carries its own."""
    tool = normalize_tool(tool)
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"no such file: {path}")
    text = clean_text(read_output(path))
    meta: dict[str, Any] = {"component": component or "model", "backend": backend or TOOLS[tool],
            "precision": precision or "unknown", "device": device or "unknown"}
    if tool == "app":
        records = app_report.to_records(app_report.parse_app_report(text))
        for r in records:  # explicit options override what the app wrote
            r.component = component or r.component
            r.backend, r.precision, r.device = backend or r.backend, precision or r.precision, device or r.device
        return records
    if tool == "benchmark_model":
        runs = tflite_benchmark.parse_benchmark_model(text)
        if not runs:
            raise fail_absent("benchmark_model", f"benchmark_model line in {path}", last_line(text),
                              hint="pass the tool's stdout and stderr (2>&1)")
        return [tflite_benchmark.to_record(run, **meta) for run in runs]
    if tool == "litert-benchmark":
        stripped = text.lstrip()
        result = (litert_benchmark.parse_result_json(text) if stripped.startswith("{")
                  else litert_benchmark.parse_stdout(text))
        return [litert_benchmark.to_record(result, **meta)]
    if tool == "onnxruntime_perf_test":
        return [ort_perf_test.to_record(ort_perf_test.parse_perf_test(text), **meta)]
    if tool == "mlperf":
        parsed = mlperf.parse_detail(text) if ":::MLLOG" in text else mlperf.parse_summary(text)
        return [mlperf.to_record(parsed, **meta)]
    if tool == "ort-profile":
        return [ort_profile.to_record(ort_profile.parse_ort_profile(text), **meta)]
    # trtexec
    if re.match(r"\s*\[\s*\{", text):
        raise ParseError("trtexec output: this is an --exportProfile JSON (per-layer times only, no latency "
                         "summary); import the trtexec log instead (its stdout)")
    return [trtexec.to_record(trtexec.parse_trtexec_log(text), **meta)]
