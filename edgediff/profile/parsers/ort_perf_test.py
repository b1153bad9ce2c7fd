"""`onnxruntime_perf_test` text output, from the 2019 formats (`Total time cost:58.8`, `Min Latency is 0.05sec`, and
the LoadGen-based build's `Session creation time cost:0.02 s` without a space) to 1.2x (`Average inference time
cost total: ... ms`, duplicate machine-readable CPU/working-set lines, percentiles in s). Vendor execution
providers' lines (`using SpaceMITExecutionProvider`, `setting SPACEMIT_EP_INTRA_THREAD_NUM : 4`) are read or
skipped; any other line is skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    LINT,
    LNUM,
    Numbers,
    clean_text,
    ensure_not_cut,
    fail,
    fail_absent,
    full_match,
    last_line,
    numbered_lines,
    rescale,
)
from edgediff.profile.record import ProfileRecord

TOOL = "onnxruntime_perf_test"

_S = r"\s*"
# (key, regex for the whole line, unit multiplier to the stored unit)
_LINES: list[tuple[str, str, re.Pattern[str], float]] = [
    ("Session creation time cost", "session_creation_ms",
     re.compile(rf"Session creation time cost:{_S}({LNUM}) s"), 1000),
    ("First inference time cost", "first_inference_ms", re.compile(rf"First inference time cost:{_S}({LNUM}) ms"), 1),
    ("Total inference time cost", "total_inference_time_s",
     re.compile(rf"Total inference time cost:{_S}({LNUM}) s"), 1),
    ("Total inference requests", "requests", re.compile(rf"Total inference requests:{_S}({LINT})"), 1),
    ("Average inference time cost", "average_ms",
     re.compile(rf"Average inference time cost(?: total)?:{_S}({LNUM}) ms"), 1),
    ("Total inference run time", "total_run_time_s", re.compile(rf"Total inference run time:{_S}({LNUM}) s"), 1),
    ("Number of inferences per second", "inferences_per_second",
     re.compile(rf"Number of inferences per second:{_S}({LNUM})"), 1),
    ("Avg CPU usage", "avg_cpu_percent", re.compile(rf"Avg CPU usage:{_S}({LNUM})(?: %)?"), 1),
    ("Peak working set size", "peak_working_set_bytes", re.compile(rf"Peak working set size:{_S}({LINT})(?: bytes)?"),
     1),
    ("Runs:", "runs", re.compile(rf"Runs:{_S}({LINT})"), 1),
    # the 2019 README format
    ("Total time cost", "total_time_cost_s", re.compile(rf"Total time cost:{_S}({LNUM})"), 1),
    ("Total iterations", "requests", re.compile(rf"Total iterations:{_S}({LINT})"), 1),
    ("Average time cost", "average_ms", re.compile(rf"Average time cost:{_S}({LNUM}) ms"), 1),
    ("Total run time", "total_run_time_s", re.compile(rf"Total run time:{_S}({LNUM}) s"), 1),
]
# "P90 Latency: 0.1 s" (1.x) and "P90 Latency is 0.1sec" (2019; the README even cuts one unit to "se").
_LATENCY = re.compile(rf"(?P<which>Min|Max|P\d+) Latency(?::| is){_S}(?P<v>{LNUM}){_S}(?:s|sec|se)")
_INT_KEYS = ("requests", "runs", "peak_working_set_bytes")
_THREADS = re.compile(rf"Setting intra_op_num_threads to (?P<n>{LINT})")
_USING = re.compile(r"using (?P<ep>\w+ExecutionProvider)")


@dataclass
class OrtPerfTest:
    values: dict[str, float | int] = field(default_factory=dict)  # session_creation_ms, average_ms, requests, ...
    latency_ms: dict[str, float] = field(default_factory=dict)  # min, max, p50, p90, p95, p99, p999
    intra_op_threads: int | None = None
    spinning_disabled: bool = False
    execution_providers: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return "average_ms" in self.values or "p50" in self.latency_ms


_FIGURE_LABELS = tuple(prefix for prefix, *_ in _LINES) + ("Latency",)


def parse_perf_test(text: str) -> OrtPerfTest:
    text = clean_text(text)
    ensure_not_cut(text, TOOL, _FIGURE_LABELS)
    nums = Numbers(text, TOOL)
    out = OrtPerfTest()

    def put(store: dict[str, float], key: str, value: float, line_no: int, raw: str) -> None:
        if key in store and store[key] != value:  # 1.x prints CPU usage and working set twice: they must agree
            raise fail(TOOL, f"{key} printed twice with different values ({store[key]} vs {value})", line_no, raw)
        store[key] = value

    for line_no, raw in numbered_lines(text):
        line = raw.strip()
        if not line:
            continue
        if "Latency" in line and line.split(" ", 1)[0] in ("Min", "Max") or re.match(r"P\d+ Latency", line):
            m = full_match(_LATENCY, line, TOOL, line_no, raw, "latency")
            put(out.latency_ms, m["which"].lower(), rescale(nums.f(m["v"], line_no, raw), 1000), line_no, raw)
            continue
        if line.startswith("Setting intra_op_num_threads"):
            out.intra_op_threads = nums.i(full_match(_THREADS, line, TOOL, line_no, raw, "threads")["n"],
                                          line_no, raw)
            continue
        if line.startswith("Disabling intra-op thread spinning"):
            out.spinning_disabled = True
            continue
        if (used := _USING.fullmatch(line)) is not None:
            out.execution_providers.append(used["ep"])
            continue
        for prefix, key, pattern, scale in _LINES:
            if line.startswith(prefix):
                m = full_match(pattern, line, TOOL, line_no, raw, prefix.rstrip(":"))
                if key in _INT_KEYS:
                    value: float | int = nums.i(m.group(1), line_no, raw)
                else:
                    value = rescale(nums.f(m.group(1), line_no, raw), scale)
                put(out.values, key, value, line_no, raw)
                break
    if not out.complete:
        raise fail_absent(TOOL, "'Average inference time cost' or 'P50 Latency' line", last_line(text),
                          hint="the output looks truncated or the run failed; pass the tool's full stdout")
    return out


def to_record(result: OrtPerfTest, *, component: str, backend: str = "onnxruntime", precision: str = "unknown",
              device: str = "unknown", tool_version: str | None = None,
              settings: dict[str, object] | None = None, warmup: int | None = None) -> ProfileRecord:
    v, lat = result.values, result.latency_ms
    settings = dict(settings or {})
    if result.intra_op_threads is not None:
        settings.setdefault("intra_op_num_threads", result.intra_op_threads)
    if result.execution_providers:
        settings.setdefault("execution_providers", list(result.execution_providers))
    runs = v.get("runs", v.get("requests"))
    extra = {k: val for k, val in v.items() if k not in ("session_creation_ms", "first_inference_ms", "average_ms")}
    extra.update({f"{k}_ms": val for k, val in lat.items() if k not in ("min", "max", "p50", "p90")})
    if result.spinning_disabled:
        extra["intra_op_spinning_disabled"] = True
    peak = v.get("peak_working_set_bytes")
    return ProfileRecord(
        component=component, backend=backend, precision=precision, device=device, tool=TOOL,
        tool_version=tool_version, settings=settings, warmup=warmup, runs=int(runs) if runs is not None else None,
        median_ms=lat.get("p50"), p90_ms=lat.get("p90"), mean_ms=v.get("average_ms"),
        min_ms=lat.get("min"), max_ms=lat.get("max"), init_ms=v.get("session_creation_ms"),
        first_inference_ms=v.get("first_inference_ms"),
        peak_memory_mb=rescale(peak, 1 / 2**20) if peak is not None else None, extra=extra,
    )
