"""LiteRT's Python benchmark (`litert-benchmark`, ai_edge_litert.tools.benchmark_litert_model): its
`--result_json` file, its stdout summary and its stderr log (which carries the settings)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import NUM, ensure_not_cut, fail, full_match
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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(TOOL, f"JSON field {key!r} should be a number, got {value!r}")
    return float(value)


def parse_result_json(text: str) -> LiteRtBenchmark:
    """Parse the file written by `litert-benchmark --result_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(TOOL, f"result JSON is not valid JSON ({exc})", hint="the file looks truncated; re-run") from None
    if not isinstance(data, dict) or not isinstance(data.get("latency"), dict):
        raise fail(TOOL, "result JSON has no 'latency' object", hint="pass the file written by --result_json")
    lat = data["latency"]
    out = LiteRtBenchmark(
        model=data.get("model"),
        model_size_mb=_number(data["model_size_mb"], "model_size_mb") if "model_size_mb" in data else None,
        accelerators=[str(a) for a in data.get("accelerators", [])],
        signature=data.get("signature"),
        fully_accelerated=data.get("fully_accelerated"),
        num_threads=int(_number(data["num_threads"], "num_threads")) if "num_threads" in data else None,
        throughput_mb_s=_number(data["throughput_mb_s"], "throughput_mb_s") if "throughput_mb_s" in data else None,
    )
    for key in _LATENCY_KEYS:
        if key in lat:
            out.latency_ms[key] = _number(lat[key], f"latency.{key}")
    if "num_warmup_runs" in lat:
        out.num_warmup_runs = int(_number(lat["num_warmup_runs"], "latency.num_warmup_runs"))
    if "num_runs" in lat:
        out.num_runs = int(_number(lat["num_runs"], "latency.num_runs"))
    return out


_STDOUT_LINE = re.compile(
    rf"(?P<label>Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((?:avg|min|max|median|std|p\d+)\))"
    rf":\s+(?P<value>{NUM}) ms(?: \((?P<runs>\d+) runs\))?"
)
_STDOUT_KEY = {"Model initialization": "init_ms", "Warmup (first)": "warmup_first_ms", "Warmup (avg)": "warmup_avg_ms"}
_THROUGHPUT = re.compile(rf"Throughput:\s+(?P<v>{NUM}) MB/s")
_FULLY = re.compile(r"Fully accelerated:\s+(?P<v>True|False)")


def parse_stdout(text: str) -> LiteRtBenchmark:
    """Parse the `BENCHMARK RESULTS` block printed to stdout."""
    ensure_not_cut(text, TOOL)
    out = LiteRtBenchmark()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(("Model initialization", "Warmup (", "Inference (")):
            m = full_match(_STDOUT_LINE, line, TOOL, line_no, raw, "latency")
            label = m["label"]
            key = _STDOUT_KEY.get(label) or label[len("Inference ("):-1] + "_ms"
            out.latency_ms[key] = float(m["value"])
            if m["runs"] is not None:
                if label == "Warmup (avg)":
                    out.num_warmup_runs = int(m["runs"])
                else:
                    out.num_runs = int(m["runs"])
        elif line.startswith("Throughput:"):
            out.throughput_mb_s = float(full_match(_THROUGHPUT, line, TOOL, line_no, raw, "throughput")["v"])
        elif line.startswith("Fully accelerated:"):
            out.fully_accelerated = full_match(_FULLY, line, TOOL, line_no, raw, "acceleration")["v"] == "True"
    if not out.latency_ms:
        raise fail(TOOL, "no 'BENCHMARK RESULTS' latency lines", hint="pass the tool's stdout or its --result_json")
    return out


_LOG = re.compile(r"^(?:\S+ \S+ )?\w+ benchmark_litert_model: (?P<msg>.*)$")
_LOG_FIELDS = {
    "Model": ("model", str), "Accelerators": ("accelerators", str), "Num threads": ("num_threads", int),
    "Warmup runs": ("warmup_runs", int), "Benchmark runs": ("num_runs", int), "Signatures": ("signatures", int),
    "Using signature": ("signature", str), "Fully accelerated": ("fully_accelerated", str),
}
_LOG_TIMED = re.compile(rf"(?P<what>Environment created|Model loaded) \((?P<ms>{NUM}) ms\)")
_LOG_SIZE = re.compile(rf"Model size:\s+(?P<mb>{NUM}) MB")


def parse_log(text: str) -> dict[str, object]:
    """Settings and load times from the tool's stderr log (lines of the `benchmark_litert_model` logger)."""
    ensure_not_cut(text, TOOL)
    info: dict[str, object] = {}
    for line_no, raw in enumerate(text.splitlines(), start=1):
        m = _LOG.match(raw.strip())
        if not m:
            continue
        msg = m["msg"].strip()
        if (t := _LOG_TIMED.fullmatch(msg)) is not None:
            info["environment_ms" if t["what"].startswith("Environment") else "model_load_ms"] = float(t["ms"])
            continue
        if msg.startswith("Model size:"):
            info["model_size_mb"] = float(full_match(_LOG_SIZE, msg, TOOL, line_no, raw, "model size")["mb"])
            continue
        key, _, value = msg.partition(":")
        if key.strip() in _LOG_FIELDS and value.strip():
            name, kind = _LOG_FIELDS[key.strip()]
            try:
                info[name] = kind(value.strip())
            except ValueError:
                raise fail(TOOL, f"unreadable {key.strip()!r}", line_no, raw) from None
        elif msg.startswith("Results saved to:"):
            info["result_json"] = msg.partition(":")[2].strip()
    return info


def to_record(result: LiteRtBenchmark, *, component: str, backend: str = "litert", precision: str = "unknown",
              device: str = "unknown", tool_version: str | None = None) -> ProfileRecord:
    lat = result.latency_ms
    if "median_ms" not in lat and "avg_ms" not in lat:
        raise fail(TOOL, "no median or average latency in the result")
    settings: dict[str, object] = {}
    if result.num_threads is not None:
        settings["num_threads"] = result.num_threads
    if result.accelerators:
        settings["accelerators"] = list(result.accelerators)
    if result.signature:
        settings["signature"] = result.signature
    extra = {k: v for k, v in lat.items() if k in ("std_ms", "p5_ms", "p95_ms", "warmup_avg_ms")}
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
