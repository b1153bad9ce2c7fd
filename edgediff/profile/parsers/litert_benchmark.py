"""LiteRT's Python benchmark (`litert-benchmark`, ai_edge_litert.tools.benchmark_litert_model): its
`--result_json` file, its stdout summary and its stderr log (which carries the settings)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    LNUM,
    Numbers,
    clean_text,
    end_of,
    ensure_not_cut,
    fail,
    fail_absent,
    finite,
    full_match,
    last_line,
    load_json,
    mark_end,
    numbered_lines,
)
from edgediff.profile.record import ProfileRecord

TOOL = "litert-benchmark"

# JSON key -> attribute, all in milliseconds unless said otherwise.
_LATENCY_KEYS = ("init_ms", "warmup_first_ms", "warmup_avg_ms", "avg_ms", "min_ms", "max_ms", "median_ms",
                 "std_ms", "p5_ms", "p95_ms")


@dataclass
class LiteRtBenchmark:
    model: str | None = None
    model_size_mb: float | None = None
    accelerators: list[str] = field(default_factory=list)
    signature: str | None = None
    fully_accelerated: bool | None = None
    num_threads: int | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # init_ms, avg_ms, median_ms, p95_ms, ...
    num_warmup_runs: int | None = None
    num_runs: int | None = None
    throughput_mb_s: float | None = None
    log: dict[str, object] = field(default_factory=dict)  # from the stderr log: environment/model load times...


def _number(value: object, key: str) -> float:
    if not isinstance(value, (int, float)) or not finite(value):
        raise fail(TOOL, f"JSON field {key!r} should be a finite number, got {str(value)[:40]!r}",
                   hint="pass the file written by --result_json, unedited")
    return float(value)


def parse_result_json(text: str) -> LiteRtBenchmark:
    """Parse the file written by `litert-benchmark --result_json`."""
    text = clean_text(text)
    data = load_json(text, TOOL, "result JSON", "the file looks truncated; re-run")
    if not isinstance(data, dict) or not isinstance(data.get("latency"), dict):
        raise fail_absent(TOOL, "'latency' object in the result JSON", last_line(text),
                          hint="pass the file written by --result_json")
    lat = data["latency"]
    accelerators = data.get("accelerators", [])
    if isinstance(accelerators, str):
        accelerators = [accelerators]
    if not isinstance(accelerators, list):
        raise fail(TOOL, f"JSON field 'accelerators' should be a list, got {str(accelerators)[:40]!r}")
    out = LiteRtBenchmark(
        model=data.get("model"),
        model_size_mb=_number(data["model_size_mb"], "model_size_mb") if "model_size_mb" in data else None,
        accelerators=[str(a) for a in accelerators],
        signature=data.get("signature"),
        fully_accelerated=data.get("fully_accelerated"),
        num_threads=int(_number(data["num_threads"], "num_threads")) if "num_threads" in data else None,
        throughput_mb_s=_number(data["throughput_mb_s"], "throughput_mb_s") if "throughput_mb_s" in data else None,
    )
    mark_end(out, last_line(text))
    for key in _LATENCY_KEYS:
        if key in lat:
            out.latency_ms[key] = _number(lat[key], f"latency.{key}")
    if "num_warmup_runs" in lat:
        out.num_warmup_runs = int(_number(lat["num_warmup_runs"], "latency.num_warmup_runs"))
    if "num_runs" in lat:
        out.num_runs = int(_number(lat["num_runs"], "latency.num_runs"))
    return out


_STDOUT_LINE = re.compile(
    rf"(?P<label>Model initialization|Warmup \(first\)|Warmup \(avg\)"
    rf"|Inference \((?:avg|min|max|median|std|p\d{{1,3}})\)):\s+(?P<value>{LNUM}) ms(?: \((?P<runs>\d{{1,12}}) runs\))?"
)
_STDOUT_KEY = {"Model initialization": "init_ms", "Warmup (first)": "warmup_first_ms", "Warmup (avg)": "warmup_avg_ms"}
_THROUGHPUT = re.compile(rf"Throughput:\s+(?P<v>{LNUM}) MB/s")
_FULLY = re.compile(r"Fully accelerated:\s+(?P<v>True|False)")


def parse_stdout(text: str) -> LiteRtBenchmark:
    """Parse the `BENCHMARK RESULTS` block printed to stdout."""
    text = clean_text(text)
    ensure_not_cut(text, TOOL, ("ms", "runs", "Throughput"))
    nums = Numbers(text, TOOL)
    out = LiteRtBenchmark()
    mark_end(out, last_line(text))
    for line_no, raw in numbered_lines(text):
        line = raw.strip()
        if line.startswith(("Model initialization:", "Warmup (", "Inference (")):
            m = full_match(_STDOUT_LINE, line, TOOL, line_no, raw, "latency")
            label = m["label"]
            key = _STDOUT_KEY.get(label) or label[len("Inference ("):-1] + "_ms"
            out.latency_ms[key] = nums.f(m["value"], line_no, raw)
            if m["runs"] is not None:
                if label == "Warmup (avg)":
                    out.num_warmup_runs = int(m["runs"])
                else:
                    out.num_runs = int(m["runs"])
        elif line.startswith("Throughput:"):
            out.throughput_mb_s = nums.f(full_match(_THROUGHPUT, line, TOOL, line_no, raw, "throughput")["v"],
                                         line_no, raw)
        elif line.startswith("Fully accelerated:"):
            out.fully_accelerated = full_match(_FULLY, line, TOOL, line_no, raw, "acceleration")["v"] == "True"
    if not out.latency_ms:
        raise fail_absent(TOOL, "'BENCHMARK RESULTS' latency lines", last_line(text),
                          hint="pass the tool's stdout or its --result_json")
    return out


_LOG = re.compile(r"^(?:\S+ \S+ )?\w+ benchmark_litert_model: (?P<msg>.*)$")
_LOG_FIELDS = {
    "Model": ("model", str), "Accelerators": ("accelerators", str), "Num threads": ("num_threads", int),
    "Warmup runs": ("warmup_runs", int), "Benchmark runs": ("num_runs", int), "Signatures": ("signatures", int),
    "Using signature": ("signature", str), "Fully accelerated": ("fully_accelerated", str),
}
_LOG_TIMED = re.compile(rf"(?P<what>Environment created|Model loaded) \((?P<ms>{LNUM}) ms\)")
_LOG_SIZE = re.compile(rf"Model size:\s+(?P<mb>{LNUM}) MB")


def parse_log(text: str) -> dict[str, object]:
    """Settings and load times from the tool's stderr log (lines of the `benchmark_litert_model` logger)."""
    text = clean_text(text)
    ensure_not_cut(text, TOOL, ("benchmark_litert_model",))
    nums = Numbers(text, TOOL)
    info: dict[str, object] = {}
    for line_no, raw in numbered_lines(text):
        m = _LOG.match(raw.strip())
        if not m:
            continue
        msg = m["msg"].strip()
        if (t := _LOG_TIMED.fullmatch(msg)) is not None:
            info["environment_ms" if t["what"].startswith("Environment") else "model_load_ms"] = nums.f(
                t["ms"], line_no, raw)
            continue
        if msg.startswith("Model size:"):
            info["model_size_mb"] = nums.f(full_match(_LOG_SIZE, msg, TOOL, line_no, raw, "model size")["mb"],
                                           line_no, raw)
            continue
        key, _, value = msg.partition(":")
        if key.strip() in _LOG_FIELDS and value.strip():
            name, kind = _LOG_FIELDS[key.strip()]
            if kind is int:
                info[name] = nums.i(value.strip(), line_no, raw)
            else:
                info[name] = value.strip()
        elif msg.startswith("Results saved to:"):
            info["result_json"] = msg.partition(":")[2].strip()
    return info


def to_record(result: LiteRtBenchmark, *, component: str, backend: str = "litert", precision: str = "unknown",
              device: str = "unknown", tool_version: str | None = None) -> ProfileRecord:
    lat = result.latency_ms
    if "median_ms" not in lat and "avg_ms" not in lat:
        raise fail_absent(TOOL, "median or average latency in the result", end_of(result))
    settings: dict[str, object] = {}
    if result.num_threads is not None:
        settings["num_threads"] = result.num_threads
    if result.accelerators:
        settings["accelerators"] = list(result.accelerators)
    if result.signature:
        settings["signature"] = result.signature
    extra: dict[str, object] = {k: v for k, v in lat.items() if k in ("std_ms", "p5_ms", "p95_ms", "warmup_avg_ms")}
    for key in ("model", "model_size_mb", "fully_accelerated", "throughput_mb_s"):
        if getattr(result, key) is not None:
            extra[key] = getattr(result, key)
    if result.log:
        extra["log"] = dict(result.log)
    return ProfileRecord(
        component=component, backend=backend, precision=precision, device=device, tool=TOOL,
        tool_version=tool_version, settings=settings, warmup=result.num_warmup_runs, runs=result.num_runs,
        median_ms=lat.get("median_ms"), mean_ms=lat.get("avg_ms"), min_ms=lat.get("min_ms"), max_ms=lat.get("max_ms"),
        init_ms=lat.get("init_ms"), first_inference_ms=lat.get("warmup_first_ms"), extra=extra,
    )
