"""The JSON report written by the edgediff apps' benchmark screen (iOS first; the Android app may write the same).

Format `edgediff-app-benchmark/1`:

    {
      "format": "edgediff-app-benchmark/1",
      "app": {"name": "EdgeDiff", "version": "0.1.0"},
      "device": {"model": "iPhone16,1", "name": "iPhone 15 Pro", "system": "iOS 18.2", "chip": "A17 Pro",
                 "physical_memory_mb": 8192},
      "bundle": {"backend": "coreml", "precision": "fp16", "manifest_sha256": "..."},
      "created": "2026-05-01T10:00:00Z",
      "results": [
        {"component": "unet", "compute_units": "cpuAndNeuralEngine",
         "load_ms": 1843.2, "first_inference_ms": 412.9, "warmup": 3,
         "latencies_ms": [101.2, 99.8, ...],            # one per measured run (preferred)
         "peak_memory_mb": 812.4,                        # phys_footprint high-water mark, if measured
         "thermal_state": {"start": "nominal", "end": "fair"}}
      ]
    }

A result may give `median_ms` (and `p90_ms`, `mean_ms`, `min_ms`, `max_ms`, `runs`) instead of `latencies_ms`;
when both are given they must agree. Required: `format`, `device.model`, `bundle.backend`, and per result
`component` plus latencies or a median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from edgediff.profile.parsers._common import (
    clean_text,
    fail,
    fail_absent,
    finite,
    last_line,
    load_json,
    summarize_ms,
)
from edgediff.profile.record import ProfileRecord

TOOL = "app"
FORMAT = "edgediff-app-benchmark/1"
_RESULT_KEYS = {"component", "compute_units", "load_ms", "first_inference_ms", "warmup", "latencies_ms",
                "peak_memory_mb", "thermal_state", "median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "runs",
                "settings", "notes"}


@dataclass
class AppResult:
    component: str
    compute_units: str | None
    latencies_ms: list[float]
    load_ms: float | None = None
    first_inference_ms: float | None = None
    warmup: int | None = None
    peak_memory_mb: float | None = None
    thermal_state: dict[str, str] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)  # median_ms/p90_ms/... as given by the app
    runs: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class AppReport:
    app: dict[str, Any]
    device: dict[str, Any]
    bundle: dict[str, Any]
    created: str | None
    results: list[AppResult]

    @property
    def device_name(self) -> str:
        return str(self.device.get("name") or self.device["model"])


def _num(value: Any, where: str, *, positive: bool = False) -> float:
    if not finite(value):
        raise fail(TOOL, f"{where} should be a finite number, got {value!r}")
    if positive and value < 0:
        raise fail(TOOL, f"{where} should not be negative, got {value!r}")
    return float(value)


def _opt(d: dict, key: str, where: str) -> float | None:
    return None if d.get(key) is None else _num(d[key], f"{where}.{key}", positive=True)


def _result_line(text: str, index: int) -> tuple[int, str] | None:
    """Line of the `index`-th `"component"` key: where results[index] is, for an error about it."""
    at = -1
    for _ in range(index + 1):
        at = text.find('"component"', at + 1)
        if at < 0:
            return None
    line_no = text.count("\n", 0, at) + 1
    return line_no, text.split("\n")[line_no - 1]


def _object(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(TOOL, f"{where} should be an object, got {str(value)[:40]!r}")
    return value


def parse_app_report(text: str) -> AppReport:
    text = clean_text(text)
    data = load_json(text, TOOL, "report", "the file looks truncated; export the report again from the app's "
                     "benchmark screen")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise fail(TOOL, f"expected format {FORMAT!r}, got {str(got)[:60]!r}",
                   hint="pass the JSON written by the edgediff app's benchmark screen")
    device, bundle = data.get("device"), data.get("bundle")
    if not isinstance(device, dict) or not device.get("model"):
        raise fail_absent(TOOL, "device.model in the report", last_line(text))
    if not isinstance(bundle, dict) or not bundle.get("backend"):
        raise fail_absent(TOOL, "bundle.backend in the report", last_line(text))
    raw_results = data.get("results")
    if not isinstance(raw_results, list) or not raw_results:
        raise fail_absent(TOOL, "results in the report", last_line(text),
                          hint="run the benchmark in the app before exporting")
    results = []
    for i, r in enumerate(raw_results):
        where = f"results[{i}]"
        at = _result_line(text, i) or last_line(text)
        if not isinstance(r, dict) or not r.get("component"):
            raise fail(TOOL, f"{where} has no component", *at)
        unknown = set(r) - _RESULT_KEYS
        if unknown:
            raise fail(TOOL, f"{where} has unknown keys {sorted(unknown)}; valid keys: {sorted(_RESULT_KEYS)}", *at)
        lat = r.get("latencies_ms") or []
        if not isinstance(lat, list):
            raise fail(TOOL, f"{where}.latencies_ms should be a list of numbers", *at)
        latencies = [_num(x, f"{where}.latencies_ms[{j}]", positive=True) for j, x in enumerate(lat)]
        summary = {k: v for k in ("median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms")
                   if (v := _opt(r, k, where)) is not None}
        if not latencies and "median_ms" not in summary:
            raise fail(TOOL, f"{where} ({str(r['component'])[:60]}) has neither latencies_ms nor median_ms", *at,
                       hint="export the report again after the benchmark finished")
        thermal = r.get("thermal_state") or {}
        if not isinstance(thermal, dict):
            raise fail(TOOL, f"{where}.thermal_state should be an object like {{'start': 'nominal', 'end': 'fair'}}",
                       *at)
        warmup = r.get("warmup")
        runs = r.get("runs")
        results.append(AppResult(
            component=str(r["component"]), compute_units=r.get("compute_units"), latencies_ms=latencies,
            load_ms=_opt(r, "load_ms", where), first_inference_ms=_opt(r, "first_inference_ms", where),
            warmup=int(_num(warmup, f"{where}.warmup")) if warmup is not None else None,
            peak_memory_mb=_opt(r, "peak_memory_mb", where),
            thermal_state={str(k): str(v) for k, v in thermal.items()}, summary=summary,
            runs=int(_num(runs, f"{where}.runs")) if runs is not None else None,
            settings=dict(_object(r.get("settings"), f"{where}.settings")),
        ))
    return AppReport(app=dict(_object(data.get("app"), "app")), device=device, bundle=bundle,
                     created=data.get("created"), results=results)


def to_records(report: AppReport) -> list[ProfileRecord]:
    records = []
    for r in report.results:
        runs: int | None
        if r.latencies_ms:
            stats = summarize_ms(r.latencies_ms)
            computed = {"median_ms": stats.median, "p90_ms": stats.p90, "mean_ms": stats.mean,
                        "min_ms": stats.min, "max_ms": stats.max}
            for key, given in r.summary.items():
                if not math.isclose(given, computed[key], rel_tol=1e-3, abs_tol=1e-3):
                    raise fail(TOOL, f"{r.component}: {key}={given} disagrees with its latencies_ms ({computed[key]:.4g})")
            if r.runs is not None and r.runs != stats.count:
                raise fail(TOOL, f"{r.component}: runs={r.runs} but {stats.count} latencies")
            values, runs = computed, stats.count
        else:
            values, runs = r.summary, r.runs
        settings = dict(r.settings)
        if r.compute_units:
            settings["compute_units"] = r.compute_units
        extra: dict[str, Any] = {}
        if r.thermal_state:
            extra["thermal_state"] = dict(r.thermal_state)
        extra["device_info"] = dict(report.device)
        if report.app:
            extra["app"] = dict(report.app)
        if report.created:
            extra["created"] = report.created
        records.append(ProfileRecord(
            component=r.component, backend=str(report.bundle["backend"]),
            precision=str(report.bundle.get("precision", "unknown")), device=report.device_name, tool=TOOL,
            tool_version=str(report.app["version"]) if report.app.get("version") else None, settings=settings,
            warmup=r.warmup, runs=runs, median_ms=values.get("median_ms"), p90_ms=values.get("p90_ms"),
            mean_ms=values.get("mean_ms"), min_ms=values.get("min_ms"), max_ms=values.get("max_ms"),
            init_ms=r.load_ms, first_inference_ms=r.first_inference_ms, peak_memory_mb=r.peak_memory_mb,
            extra=extra,
        ))
    return records
