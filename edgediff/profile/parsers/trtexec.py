"""TensorRT `trtexec` output: the text log (TRT 5's one-line `Average over N runs is ...`, TRT 7's multi-line
`Host latency` / `Host Latency` blocks, TRT >= 8's one-line `=== Performance summary ===`, trace averages,
`--dumpProfile` tables in both column orders, build/load times, version and device information) and the
`--exportProfile` JSON (with `medianMs` from 8.4 on, without before).

Warning, error and verbose lines (`[W]`, `[E]`, `[V]`) never carry figures: they are skipped wherever they fall,
which also skips the `--verbose` metric explanations (`Throughput: the observed throughput ...`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    LINT,
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
    load_json_records,
    mark_end,
    numbered_lines,
    rescale,
    strip_trt,
    trt_severity,
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


_METRIC = re.compile(rf"(?P<name>[A-Za-z][\w -]*?): (?P<body>min = {LNUM} ms, .*)")
_PART = re.compile(rf"(?P<key>min|max|mean|median|percentile\((?P<pct>{LNUM})%\)) = (?P<v>{LNUM}) ms")
_T7_VALUE = re.compile(
    rf"(?P<key>min|max|mean|median): (?P<v>{LNUM}) ms(?: \(end to end (?P<e2e>{LNUM}) ms\))?"
)
_T7_PCT = re.compile(
    rf"percentile: (?P<v>{LNUM}) ms at (?P<pct>{LNUM})%(?: \(end to end (?P<e2e>{LNUM}) ms at {LNUM}%\))?"
)
_THROUGHPUT = re.compile(rf"[Tt]hroughput: (?P<v>{LNUM}) qps")
_SECONDS = re.compile(rf"(?P<name>Total Host Walltime|Total GPU Compute Time|walltime|total compute time): "
                      rf"(?P<v>{LNUM}) s")
_WARMUP = re.compile(rf"Warmup completed (?P<n>{LINT}) queries over (?P<ms>{LNUM}) ms")
_TIMING = re.compile(rf"Timing trace has (?P<n>{LINT}) queries over (?P<s>{LNUM}) s")
_TRACE = re.compile(
    rf"Average on (?P<runs>{LINT}) runs - GPU latency: (?P<gpu>{LNUM}) ms"
    rf"(?: - Host latency: (?P<host>{LNUM}) ms)?"
    rf"(?: \((?:end to end (?P<e2e>{LNUM}) ms(?:, )?)?(?:enqueue (?P<enq>{LNUM}) ms)?\))?"
)
# TRT 5.x: "Average over 10 runs is 1.2 ms (host walltime is 1.3 ms, 99% percentile time is 1.5)."
_TRT5 = re.compile(
    rf"Average over (?P<runs>{LINT}) runs is (?P<gpu>{LNUM}) ms \(host walltime is (?P<host>{LNUM}) ms, "
    rf"{LNUM}\\?% percentile time is {LNUM}\)\.?"
)
_BUILT = re.compile(rf"Engine built in (?P<s>{LNUM}) sec\.?")
_DESER = re.compile(rf"Engine deserialized in (?P<s>{LNUM}) sec\.?")
_ENGINE_SIZE = re.compile(rf"Created engine with size: (?P<mib>{LNUM}) MiB")
_PROFILE_HEAD = re.compile(rf"=== Profile \((?P<n>{LINT}) iterations ?\) ===")
_RUNNING = re.compile(r"&&&& (?P<status>RUNNING|PASSED|FAILED) TensorRT\.trtexec(?: \[TensorRT v(?P<v>\d+)\])?"
                      r"(?: # (?P<cmd>.*))?")
_VERSION = re.compile(r"TensorRT version: (?P<v>\d+(?:\.\d+)*)")
_SECTION = re.compile(r"=== (?P<name>[^=]+?) ===")
_KV = re.compile(r"(?P<k>[^:]+):\s*(?P<v>.*)")
_T7_HEADERS = {"Host Latency": "Host Latency", "Host latency": "Host Latency", "Enqueue Time": "Enqueue Time",
               "GPU Compute": "GPU Compute"}
_NUMBER_START = re.compile(r"[-+]?[\d.,]|(?i:[-+]?(?:nan|inf))")
# Lines carrying these are figure lines: the log must not stop in the middle of one.
_FIGURE_LABELS = (" ms", "qps", " s", "Average", "queries", "Total", "%")


def _decode_version(code: str) -> str:
    """8601 -> 8.6.1, 100300 -> 10.3.0 (NV_TENSORRT_VERSION encodings of TRT 8 and 10)."""
    if len(code) == 4:
        return f"{int(code[0])}.{int(code[1])}.{int(code[2:])}"
    if len(code) == 6:
        return f"{int(code[:2])}.{int(code[2:4])}.{int(code[4:])}"
    return code


def _figure(line: str, label: str) -> bool:
    """`label` is followed by a number: a figure line (the verbose explanation of a metric is not)."""
    return line.startswith(label) and _NUMBER_START.match(line[len(label):].lstrip()) is not None


def _metric(body: str, line_no: int, raw: str, nums: Numbers) -> LatencyStats:
    stats = LatencyStats()
    for part in body.split(", "):
        m = _PART.fullmatch(part.strip())
        if m is None:
            raise fail(TOOL, "malformed or truncated latency statistics", line_no, raw,
                       "pass the complete trtexec log")
        value = nums.f(m["v"], line_no, raw)
        if m["pct"] is not None:
            stats.percentiles[nums.f(m["pct"], line_no, raw)] = value
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


def _layer_row(line: str, layout: tuple[str, list[str]], line_no: int, raw: str, nums: Numbers) -> LayerTime:
    where, cols = layout
    n = len(cols)
    parts = line.split()
    nums_, name_parts = (parts[:n], parts[n:]) if where == "last" else (parts[-n:], parts[:-n])
    if len(nums_) != n or not name_parts:
        raise fail(TOOL, "profile row has missing cells", line_no, raw, "pass the complete --dumpProfile table")
    values = dict(zip(cols, (nums.f(x, line_no, raw) for x in nums_)))
    return LayerTime(" ".join(name_parts), values["total"], values["avg"], values.get("median"), values["percent"])


def parse_trtexec_log(text: str) -> TrtexecLog:
    text = clean_text(text)
    ensure_not_cut(text, TOOL, _FIGURE_LABELS)
    nums = Numbers(text, TOOL)
    out = TrtexecLog()
    mark_end(out, last_line(text))
    section: str | None = None
    t7_block: str | None = None
    layout: tuple[str, list[str]] | None = None
    for line_no, raw in numbered_lines(text):
        if trt_severity(raw) in ("W", "E", "V", "F"):
            continue
        line = strip_trt(raw).strip()
        if not line:
            continue
        if line.startswith("&&&&"):
            if (m := _RUNNING.fullmatch(line)) is None:
                continue  # another program's status line
            if m["status"] != "RUNNING":
                out.status = m["status"]
                out.__dict__["_status_at"] = (line_no, raw)
            if m["v"]:
                out.version = _decode_version(m["v"])
            if m["cmd"] and out.command is None:
                out.command = m["cmd"]
            continue
        if line.startswith("TensorRT version:") and (m := _VERSION.fullmatch(line)) is not None:
            out.version = m["v"]
            continue
        if line.startswith("=== Profile ("):
            out.profile_iterations = nums.i(full_match(_PROFILE_HEAD, line, TOOL, line_no, raw, "profile")["n"],
                                            line_no, raw)
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
            row = _layer_row(line, layout, line_no, raw, nums)
            if row.name == "Total":
                out.layers_total, section = row, None
            else:
                out.layers.append(row)
            continue
        # one-line performance summary (TRT >= 8)
        if (m := _METRIC.match(line)) is not None:
            m = full_match(_METRIC, line, TOOL, line_no, raw, "latency statistics")
            out.metrics[m["name"].strip()] = _metric(m["body"], line_no, raw, nums)
            continue
        if line in _T7_HEADERS:
            t7_block = _T7_HEADERS[line]
            out.metrics.setdefault(t7_block, LatencyStats())
            continue
        if t7_block and any(_figure(line, k) for k in ("min:", "max:", "mean:", "median:")):
            m = full_match(_T7_VALUE, line, TOOL, line_no, raw, f"{t7_block} value")
            stats = out.metrics[t7_block]
            setattr(stats, m["key"], nums.f(m["v"], line_no, raw))
            if m["e2e"] is not None:
                stats.end_to_end = stats.end_to_end or LatencyStats()
                setattr(stats.end_to_end, m["key"], nums.f(m["e2e"], line_no, raw))
            continue
        if t7_block and _figure(line, "percentile:"):
            m = full_match(_T7_PCT, line, TOOL, line_no, raw, f"{t7_block} percentile")
            stats = out.metrics[t7_block]
            pct = nums.f(m["pct"], line_no, raw)
            stats.percentiles[pct] = nums.f(m["v"], line_no, raw)
            if m["e2e"] is not None:
                stats.end_to_end = stats.end_to_end or LatencyStats()
                stats.end_to_end.percentiles[pct] = nums.f(m["e2e"], line_no, raw)
            continue
        if _figure(line, "Throughput:") or _figure(line, "throughput:"):
            out.throughput_qps = nums.f(full_match(_THROUGHPUT, line, TOOL, line_no, raw, "throughput")["v"],
                                        line_no, raw)
            continue
        if any(_figure(line, k) for k in ("Total Host Walltime:", "Total GPU Compute Time:", "walltime:",
                                          "total compute time:")):
            m = full_match(_SECONDS, line, TOOL, line_no, raw, "time")
            if m["name"] in ("Total Host Walltime", "walltime"):
                out.total_host_walltime_s = nums.f(m["v"], line_no, raw)
            else:
                out.total_gpu_compute_s = nums.f(m["v"], line_no, raw)
            continue
        if _figure(line, "Warmup completed"):
            m = full_match(_WARMUP, line, TOOL, line_no, raw, "warm-up")
            out.warmup_queries, out.warmup_ms = nums.i(m["n"], line_no, raw), nums.f(m["ms"], line_no, raw)
            continue
        if _figure(line, "Timing trace has"):
            m = full_match(_TIMING, line, TOOL, line_no, raw, "timing trace")
            out.timed_queries, out.timed_s = nums.i(m["n"], line_no, raw), nums.f(m["s"], line_no, raw)
            continue
        if _figure(line, "Average on"):
            m = full_match(_TRACE, line, TOOL, line_no, raw, "trace average")
            out.trace.append(TraceAverage(nums.i(m["runs"], line_no, raw), nums.f(m["gpu"], line_no, raw),
                                          *(nums.f(m[k], line_no, raw) if m[k] else None
                                            for k in ("host", "e2e", "enq"))))
            continue
        if _figure(line, "Average over"):
            m = full_match(_TRT5, line, TOOL, line_no, raw, "average")
            out.trace.append(TraceAverage(nums.i(m["runs"], line_no, raw), nums.f(m["gpu"], line_no, raw),
                                          nums.f(m["host"], line_no, raw)))
            continue
        if _figure(line, "Engine built in"):
            out.engine_build_s = nums.f(full_match(_BUILT, line, TOOL, line_no, raw, "build time")["s"], line_no, raw)
            continue
        if _figure(line, "Engine deserialized in"):
            out.engine_deserialize_s = nums.f(full_match(_DESER, line, TOOL, line_no, raw, "load time")["s"],
                                              line_no, raw)
            continue
        if _figure(line, "Created engine with size:"):
            out.engine_size_mib = nums.f(full_match(_ENGINE_SIZE, line, TOOL, line_no, raw, "engine size")["mib"],
                                         line_no, raw)
            continue
        if section and (section.endswith("Options") or section == "Device Information"):
            m = _KV.fullmatch(line)
            if m:
                out.options.setdefault(section, {})[m["k"].strip()] = m["v"].strip()
    if section == "profile" and out.layers and out.layers_total is None:
        raise fail_absent(TOOL, "'Total' row in the --dumpProfile table", end_of(out),
                          hint="the log looks truncated")
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
    for index, item in enumerate(records.items):
        where = f"line {records.lines[index]}" if records.lines else f"entry {index}"
        if "count" in item and "name" not in item:
            if not finite(item["count"]) or item["count"] != int(item["count"]) or item["count"] < 0:
                raise fail(TOOL, f"exportProfile iteration count at {where} is not a whole number: "
                           f"{item['count']!r}")
            iterations = int(item["count"])
            continue
        keys = ("timeMs", "averageMs", "percentage") + (("medianMs",) if "medianMs" in item else ())
        missing = [k for k in ("name",) + keys if k not in item]
        bad = [k for k in keys if k in item and not finite(item[k])]
        if missing or bad:
            what = f"without {', '.join(missing)}" if missing else f"with non-numeric {', '.join(bad)}"
            raise fail(TOOL, f"exportProfile entry at {where} {what}: {str(item)[:120]}",
                       hint="pass the file trtexec --exportProfile wrote, unedited")
        layers.append(LayerTime(str(item["name"]), float(item["timeMs"]), float(item["averageMs"]),
                                float(item["medianMs"]) if "medianMs" in item else None, float(item["percentage"])))
    if not layers:
        raise fail(TOOL, "exportProfile JSON has no layers", hint="profile a run with --exportProfile=FILE")
    return ExportedProfile(iterations, layers, records.closed)


def layer_ops(layers: list[LayerTime]) -> list[OpTime]:
    """Per-layer average ms per inference and share of the total."""
    return [OpTime(layer.name, layer.avg_ms, layer.percent) for layer in layers]


def to_record(log: TrtexecLog, *, component: str, backend: str = "tensorrt", precision: str = "unknown",
              device: str = "unknown", settings: dict[str, object] | None = None) -> ProfileRecord:
    """Headline = host latency (H2D + compute + D2H, what an app waits for); GPU compute and the rest go to extra."""
    if log.status == "FAILED":
        line_no, line = log.__dict__.get("_status_at") or (None, None)
        raise fail(TOOL, "the run FAILED (see the log's errors)", line_no, line,
                   hint="fix the engine build or inputs and re-run")
    lat = log.host_latency
    if lat is None or lat.median is None:
        what = "median latency (only trace averages)" if log.trace else "performance summary, so no median latency"
        hint = ("trtexec printed only averages (TRT 5.x, or a log cut before the summary), and an average is no "
                "median; pass a whole TRT >= 7 log" if log.trace else
                "the log looks cut before '=== Performance summary ==='; pass the whole log")
        raise fail_absent(TOOL, what, end_of(log), hint=hint)
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
