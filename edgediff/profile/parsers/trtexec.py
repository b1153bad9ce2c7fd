"""TensorRT `trtexec` output: the text log (TRT 7 multi-line `Host Latency` blocks, TRT >= 8 one-line
`=== Performance summary ===`, trace averages, `--dumpProfile` tables in both column orders, build/load times,
version and device information) and the `--exportProfile` JSON (with `medianMs` from 8.4 on, without before)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    INT,
    NUM,
    ensure_not_cut,
    fail,
    full_match,
    load_json_records,
    rescale,
    strip_trt,
)
from edgediff.profile.record import OpTime, ProfileRecord

TOOL = "trtexec"


@dataclass
class LatencyStats:
    """min/max/mean/median/percentiles of one metric, in ms (percentile keys are the percent, e.g. 90.0)."""

    min: float | None = None
    max: float | None = None
    mean: float | None = None
    median: float | None = None
    percentiles: dict[float, float] = field(default_factory=dict)
    end_to_end: "LatencyStats | None" = None  # TRT 7's "(end to end ...)" companions of Host Latency


@dataclass
class TraceAverage:
    runs: int
    gpu_ms: float
    host_ms: float | None = None
    end_to_end_ms: float | None = None
    enqueue_ms: float | None = None


@dataclass
class LayerTime:
    name: str
    total_ms: float
    avg_ms: float
    median_ms: float | None
    percent: float


@dataclass
class TrtexecLog:
    version: str | None = None
    status: str | None = None  # PASSED / FAILED from the `&&&&` line
    command: str | None = None
    options: dict[str, dict[str, str]] = field(default_factory=dict)  # "=== Model Options ===" etc.
    metrics: dict[str, LatencyStats] = field(default_factory=dict)  # "Latency", "GPU Compute Time", "Host Latency"
    throughput_qps: float | None = None
    total_host_walltime_s: float | None = None
    total_gpu_compute_s: float | None = None
    warmup_queries: int | None = None
    warmup_ms: float | None = None
    timed_queries: int | None = None
    timed_s: float | None = None
    trace: list[TraceAverage] = field(default_factory=list)
    engine_build_s: float | None = None
    engine_deserialize_s: float | None = None
    engine_size_mib: float | None = None
    profile_iterations: int | None = None
    layers: list[LayerTime] = field(default_factory=list)
    layers_total: LayerTime | None = None

    @property
    def host_latency(self) -> LatencyStats | None:
        return self.metrics.get("Latency") or self.metrics.get("Host Latency")


_METRIC = re.compile(rf"(?P<name>[A-Za-z][\w -]*?): (?P<body>min = {NUM} ms, .*)")
_PART = re.compile(rf"(?P<key>min|max|mean|median|percentile\((?P<pct>{NUM})%\)) = (?P<v>{NUM}) ms")
_T7_VALUE = re.compile(
    rf"(?P<key>min|max|mean|median): (?P<v>{NUM}) ms(?: \(end to end (?P<e2e>{NUM}) ms\))?"
)
_T7_PCT = re.compile(
    rf"percentile: (?P<v>{NUM}) ms at (?P<pct>{NUM})%(?: \(end to end (?P<e2e>{NUM}) ms at {NUM}%\))?"
)
_THROUGHPUT = re.compile(rf"[Tt]hroughput: (?P<v>{NUM}) qps")
_SECONDS = re.compile(rf"(?P<name>Total Host Walltime|Total GPU Compute Time|walltime|total compute time): "
                      rf"(?P<v>{NUM}) s")
_WARMUP = re.compile(rf"Warmup completed (?P<n>{INT}) queries over (?P<ms>{NUM}) ms")
_TIMING = re.compile(rf"Timing trace has (?P<n>{INT}) queries over (?P<s>{NUM}) s")
_TRACE = re.compile(
    rf"Average on (?P<runs>{INT}) runs - GPU latency: (?P<gpu>{NUM}) ms"
    rf"(?: - Host latency: (?P<host>{NUM}) ms)?"
    rf"(?: \((?:end to end (?P<e2e>{NUM}) ms, )?enqueue (?P<enq>{NUM}) ms\))?"
)
_BUILT = re.compile(rf"Engine built in (?P<s>{NUM}) sec\.")
_DESER = re.compile(rf"Engine deserialized in (?P<s>{NUM}) sec\.")
_ENGINE_SIZE = re.compile(rf"Created engine with size: (?P<mib>{NUM}) MiB")
_PROFILE_HEAD = re.compile(rf"=== Profile \((?P<n>{INT}) iterations ?\) ===")
_RUNNING = re.compile(r"&&&& (?P<status>RUNNING|PASSED|FAILED) TensorRT\.trtexec(?: \[TensorRT v(?P<v>\d+)\])?"
                      r"(?: # (?P<cmd>.*))?")
_VERSION = re.compile(r"TensorRT version: (?P<v>[\d.]+)")
_SECTION = re.compile(r"=== (?P<name>[^=]+?) ===")
_KV = re.compile(r"(?P<k>[^:]+?):\s*(?P<v>.*)")
_T7_HEADERS = ("Host Latency", "Enqueue Time", "GPU Compute")


def _decode_version(code: str) -> str:
    """8601 -> 8.6.1, 100300 -> 10.3.0 (NV_TENSORRT_VERSION encodings of TRT 8 and 10)."""
    if len(code) == 4:
        return f"{int(code[0])}.{int(code[1])}.{int(code[2:])}"
    if len(code) == 6:
        return f"{int(code[:2])}.{int(code[2:4])}.{int(code[4:])}"
    return code


def _metric(body: str, line_no: int, raw: str) -> LatencyStats:
    stats = LatencyStats()
    for part in body.split(", "):
        m = _PART.fullmatch(part.strip())
        if m is None:
            raise fail(TOOL, "malformed or truncated latency statistics", line_no, raw,
                       "pass the complete trtexec log")
        value = float(m["v"])
        if m["pct"] is not None:
            stats.percentiles[float(m["pct"])] = value
        else:
            setattr(stats, m["key"], value)
    if None in (stats.min, stats.max, stats.mean, stats.median):
        raise fail(TOOL, "latency statistics without min/max/mean/median", line_no, raw)
    return stats


def _layer_table_header(line: str) -> tuple[str, list[str]] | None:
    """The dumpProfile header: name last (`Time(ms) Avg.(ms) Median(ms) Time(%) Layer`, TRT >= 8.6) or first
    (`Layer Time (ms) Avg. Time (ms) Time %`, older)."""
    squeezed = re.sub(r"\s+", "", line)
    if squeezed == "Time(ms)Avg.(ms)Median(ms)Time(%)Layer":
        return "last", ["total", "avg", "median", "percent"]
    if squeezed == "Time(ms)Avg.(ms)Time(%)Layer":
        return "last", ["total", "avg", "percent"]
    if squeezed in ("LayerTime(ms)Avg.Time(ms)Time%", "LayerTime(ms)Avg.Time(ms)MedianTime(ms)Time%"):
        return "first", ["total", "avg", "median", "percent"] if "Median" in line else ["total", "avg", "percent"]
    return None


def _layer_row(line: str, layout: tuple[str, list[str]], line_no: int, raw: str) -> LayerTime:
    where, cols = layout
    n = len(cols)
    parts = line.split()
    nums, name_parts = (parts[:n], parts[n:]) if where == "last" else (parts[-n:], parts[:-n])
    try:
        values = dict(zip(cols, (float(x) for x in nums)))
    except ValueError:
        raise fail(TOOL, "unreadable profile row", line_no, raw, "pass the complete --dumpProfile table") from None
    if len(nums) != n or not name_parts:
        raise fail(TOOL, "profile row has missing cells", line_no, raw)
    return LayerTime(" ".join(name_parts), values["total"], values["avg"], values.get("median"), values["percent"])


def parse_trtexec_log(text: str) -> TrtexecLog:
    ensure_not_cut(text, TOOL)
    out = TrtexecLog()
    section: str | None = None
    t7_block: str | None = None
    layout: tuple[str, list[str]] | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = strip_trt(raw).strip()
        if not line:
            continue
        if line.startswith("&&&&"):
            m = full_match(_RUNNING, line, TOOL, line_no, raw, "status")
            out.status = m["status"] if m["status"] != "RUNNING" else out.status
            if m["v"]:
                out.version = _decode_version(m["v"])
            if m["cmd"] and out.command is None:
                out.command = m["cmd"]
            continue
        if line.startswith("TensorRT version:"):
            out.version = full_match(_VERSION, line, TOOL, line_no, raw, "version")["v"]
            continue
        if line.startswith("=== Profile"):
            out.profile_iterations = int(full_match(_PROFILE_HEAD, line, TOOL, line_no, raw, "profile")["n"])
            section, layout = "profile", None
            continue
        if (m := _SECTION.fullmatch(line)) is not None:
            section, t7_block, layout = m["name"].strip(), None, None
            continue
        if section == "profile":
            if layout is None:
                layout = _layer_table_header(line)
                if layout is None:
                    raise fail(TOOL, "unknown --dumpProfile table header", line_no, raw)
                continue
            row = _layer_row(line, layout, line_no, raw)
            if row.name == "Total":
                out.layers_total, section = row, None
            else:
                out.layers.append(row)
            continue
        # one-line performance summary (TRT >= 8)
        if (m := _METRIC.match(line)) is not None and "=" in line:
            m = full_match(_METRIC, line, TOOL, line_no, raw, "latency statistics")
            out.metrics[m["name"].strip()] = _metric(m["body"], line_no, raw)
            continue
        if line in _T7_HEADERS:
            t7_block = line
            out.metrics.setdefault(line, LatencyStats())
            continue
        if t7_block and line.startswith(("min:", "max:", "mean:", "median:")):
            m = full_match(_T7_VALUE, line, TOOL, line_no, raw, f"{t7_block} value")
            stats = out.metrics[t7_block]
            setattr(stats, m["key"], float(m["v"]))
            if m["e2e"] is not None:
                stats.end_to_end = stats.end_to_end or LatencyStats()
                setattr(stats.end_to_end, m["key"], float(m["e2e"]))
            continue
        if t7_block and line.startswith("percentile:"):
            m = full_match(_T7_PCT, line, TOOL, line_no, raw, f"{t7_block} percentile")
            stats = out.metrics[t7_block]
            stats.percentiles[float(m["pct"])] = float(m["v"])
            if m["e2e"] is not None:
                stats.end_to_end = stats.end_to_end or LatencyStats()
                stats.end_to_end.percentiles[float(m["pct"])] = float(m["e2e"])
            continue
        if line.lower().startswith("throughput:"):
            out.throughput_qps = float(full_match(_THROUGHPUT, line, TOOL, line_no, raw, "throughput")["v"])
            continue
        if line.startswith(("Total Host Walltime", "Total GPU Compute Time", "walltime:", "total compute time:")):
            m = full_match(_SECONDS, line, TOOL, line_no, raw, "time")
            if m["name"] in ("Total Host Walltime", "walltime"):
                out.total_host_walltime_s = float(m["v"])
            else:
                out.total_gpu_compute_s = float(m["v"])
            continue
        if line.startswith("Warmup completed"):
            m = full_match(_WARMUP, line, TOOL, line_no, raw, "warm-up")
            out.warmup_queries, out.warmup_ms = int(m["n"]), float(m["ms"])
            continue
        if line.startswith("Timing trace has"):
            m = full_match(_TIMING, line, TOOL, line_no, raw, "timing trace")
            out.timed_queries, out.timed_s = int(m["n"]), float(m["s"])
            continue
        if line.startswith("Average on"):
            m = full_match(_TRACE, line, TOOL, line_no, raw, "trace average")
            out.trace.append(TraceAverage(
                int(m["runs"]), float(m["gpu"]), *(float(m[k]) if m[k] else None for k in ("host", "e2e", "enq"))))
            continue
        if line.startswith("Engine built in"):
            out.engine_build_s = float(full_match(_BUILT, line, TOOL, line_no, raw, "build time")["s"])
            continue
        if line.startswith("Engine deserialized in"):
            out.engine_deserialize_s = float(full_match(_DESER, line, TOOL, line_no, raw, "load time")["s"])
            continue
        if line.startswith("Created engine with size"):
            out.engine_size_mib = float(full_match(_ENGINE_SIZE, line, TOOL, line_no, raw, "engine size")["mib"])
            continue
        if section and (section.endswith("Options") or section == "Device Information"):
            m = _KV.fullmatch(line)
            if m:
                out.options.setdefault(section, {})[m["k"].strip()] = m["v"].strip()
    if section == "profile" and out.layers and out.layers_total is None:
        raise fail(TOOL, "the --dumpProfile table has no 'Total' row", hint="the log looks truncated")
    return out


@dataclass
class ExportedProfile:
    iterations: int | None
    layers: list[LayerTime]
    complete_file: bool


def parse_export_profile(text: str) -> ExportedProfile:
    """The `--exportProfile` JSON: `[{"count": N}, {"name", "timeMs", "averageMs", ["medianMs",] "percentage"}...]`."""
    records = load_json_records(text, TOOL)
    iterations = None
    layers: list[LayerTime] = []
    for item in records.items:
        if "count" in item and "name" not in item:
            iterations = int(item["count"])
            continue
        try:
            layers.append(LayerTime(str(item["name"]), float(item["timeMs"]), float(item["averageMs"]),
                                    float(item["medianMs"]) if "medianMs" in item else None,
                                    float(item["percentage"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise fail(TOOL, f"exportProfile entry without a readable {exc}: {str(item)[:120]}") from None
    if not layers:
        raise fail(TOOL, "exportProfile JSON has no layers")
    return ExportedProfile(iterations, layers, records.closed)


def layer_ops(layers: list[LayerTime]) -> list[OpTime]:
    """Per-layer average ms per inference and share of the total."""
    return [OpTime(layer.name, layer.avg_ms, layer.percent) for layer in layers]


def to_record(log: TrtexecLog, *, component: str, backend: str = "tensorrt", precision: str = "unknown",
              device: str = "unknown", settings: dict[str, object] | None = None) -> ProfileRecord:
    """Headline = host latency (H2D + compute + D2H, what an app waits for); GPU compute and the rest go to extra."""
    if log.status == "FAILED":
        raise fail(TOOL, "the run FAILED (see the log's errors)", hint="fix the engine build or inputs and re-run")
    lat = log.host_latency
    if lat is None or lat.median is None:
        what = "only trace averages" if log.trace else "no performance summary"
        raise fail(TOOL, f"{what} in the log, so no median latency",
                   hint="the log looks cut before '=== Performance summary ==='; pass the whole log")
    extra: dict[str, object] = {}
    for name, stats in log.metrics.items():
        if stats is not lat:
            extra[name] = {"min_ms": stats.min, "max_ms": stats.max, "mean_ms": stats.mean,
                           "median_ms": stats.median, **{f"p{p:g}_ms": v for p, v in stats.percentiles.items()}}
    if lat.end_to_end is not None:
        extra["end_to_end_median_ms"] = lat.end_to_end.median
    other_pcts = {f"p{p:g}_ms": v for p, v in lat.percentiles.items() if p != 90.0}
    extra.update(other_pcts)
    for key in ("throughput_qps", "total_host_walltime_s", "total_gpu_compute_s", "engine_build_s",
                "engine_size_mib", "warmup_ms", "timed_s"):
        if getattr(log, key) is not None:
            extra[key] = getattr(log, key)
    if log.options:
        extra["options"] = log.options
    runs = log.timed_queries if log.timed_queries else None  # TRT 7-8.3 may print "0 queries" (a known quirk)
    return ProfileRecord(
        component=component, backend=backend, precision=precision, device=device, tool=TOOL,
        tool_version=log.version, settings=dict(settings or {}),
        warmup=log.warmup_queries if log.warmup_queries else None, runs=runs,
        median_ms=lat.median, p90_ms=lat.percentiles.get(90.0), mean_ms=lat.mean, min_ms=lat.min, max_ms=lat.max,
        init_ms=rescale(log.engine_deserialize_s, 1000) if log.engine_deserialize_s is not None else None,
        ops=layer_ops(log.layers), extra=extra,
    )
