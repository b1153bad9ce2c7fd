"""MLPerf LoadGen results: the `mlperf_log_summary.txt` text (every scenario: SingleStream's percentile line,
Offline's `Samples per second`, early-stopping notes, indented or with trailing spaces as some submitters' logs are)
and `:::MLLOG {json}` detail lines (as written by LoadGen, e.g. inside the MLPerf Mobile app, also behind a logcat
or timestamp prefix)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    LINT,
    LNUM,
    NUM,
    Numbers,
    clean_text,
    end_of,
    ensure_not_cut,
    fail,
    fail_absent,
    finite,
    last_line,
    mark_end,
    numbered_lines,
    rescale,
)
from edgediff.profile.record import ProfileRecord

TOOL = "mlperf-loadgen"
_KV = re.compile(r"(?P<k>[^:]+):\s*(?P<v>.*)")
_LINT = re.compile(LINT)
_LNUM = re.compile(LNUM)
_PCT = re.compile(rf"(?P<p>{NUM})(?:th)? percentile latency \(ns\)")


@dataclass
class LoadGenSummary:
    fields: dict[str, str] = field(default_factory=dict)  # SUT name, Scenario, Mode, Result is, ...
    latency_ns: dict[str, int] = field(default_factory=dict)  # min, max, mean, p50, p90, ...
    qps: dict[str, float] = field(default_factory=dict)
    test_parameters: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # early-stopping explanations


def parse_summary(text: str) -> LoadGenSummary:
    text = clean_text(text)
    ensure_not_cut(text, TOOL, ("(ns)", "QPS", "per second", "latency"))
    nums = Numbers(text, TOOL)
    out = LoadGenSummary()
    mark_end(out, last_line(text))
    section = "results"
    for line_no, raw in numbered_lines(text):
        s = raw.strip()
        if not s or set(s) == {"="}:
            continue
        if s in ("MLPerf Results Summary", "Additional Stats", "Test Parameters Used"):
            section = s
            continue
        if s.startswith("*"):
            out.notes.append(s.lstrip("* "))
            continue
        m = _KV.fullmatch(s)
        if m is None:
            continue
        key, value = m["k"].strip(), m["v"].strip()
        if "latency (ns)" in key and section != "Test Parameters Used":
            if _LINT.fullmatch(value) is None:
                raise fail(TOOL, "latency value is not an integer of nanoseconds", line_no, raw)
            p = _PCT.fullmatch(key)
            name = f"p{float(p['p']):g}" if p else key.split()[0].lower()
            ns = nums.i(value, line_no, raw)
            if name in out.latency_ns and out.latency_ns[name] != ns:
                raise fail(TOOL, f"{name} printed twice with different values", line_no, raw)
            out.latency_ns[name] = ns
        elif key.startswith("QPS"):
            if _LNUM.fullmatch(value) is None:
                raise fail(TOOL, "malformed or truncated QPS line", line_no, raw)
            out.qps[key] = nums.f(value, line_no, raw)
        elif section == "Test Parameters Used":
            out.test_parameters[key] = value
        elif value:
            out.fields[key] = value
    if not out.latency_ns:
        raise fail_absent(TOOL, "latency lines", end_of(out), hint="pass mlperf_log_summary.txt")
    return out


class _Detail(dict):
    """The detail log's {key: value}; a dict that also remembers where its text ended."""


def parse_detail(text: str) -> dict[str, object]:
    """`:::MLLOG {...}` lines -> {key: value} (the last value of a key wins, as LoadGen logs finals last)."""
    text = clean_text(text)
    values = _Detail()
    mark_end(values, last_line(text))
    for line_no, raw in numbered_lines(text):
        at = raw.find(":::MLLOG")
        if at < 0:
            continue
        try:
            entry = json.loads(raw[at + len(":::MLLOG"):])
        except (ValueError, RecursionError):
            raise fail(TOOL, "MLLOG line is not complete JSON", line_no, raw, "pass the whole log") from None
        if not isinstance(entry, dict) or "key" not in entry:
            raise fail(TOOL, "MLLOG entry without a key", line_no, raw, "pass the log LoadGen wrote, unedited")
        values[str(entry["key"])] = entry.get("value")
    if not values:
        raise fail_absent(TOOL, ":::MLLOG lines", end_of(values), hint="pass mlperf_log_detail.txt")
    return values


def _ms(ns: object) -> float | None:
    return rescale(ns, "0.000001") if isinstance(ns, (int, float)) and finite(ns) else None


def to_record(result: LoadGenSummary | dict, *, component: str, backend: str = "unknown", precision: str = "unknown",
              device: str = "unknown") -> ProfileRecord:
    if isinstance(result, LoadGenSummary):
        lat = result.latency_ns
        if "p50" not in lat and "mean" not in lat:
            raise fail_absent(TOOL, "'Mean latency (ns)' or '50.00 percentile latency (ns)' line", end_of(result),
                              hint="pass the whole mlperf_log_summary.txt (its Additional Stats section)")
        extra = {"result": result.fields.get("Result is"), "scenario": result.fields.get("Scenario"),
                 **{f"{k}_ms": _ms(v) for k, v in lat.items() if k not in ("min", "max", "mean", "p50", "p90")},
                 **result.qps}
        return ProfileRecord(component=component, backend=backend, precision=precision, device=device, tool=TOOL,
                             settings=dict(result.test_parameters), median_ms=_ms(lat.get("p50")),
                             p90_ms=_ms(lat.get("p90")), mean_ms=_ms(lat.get("mean")), min_ms=_ms(lat.get("min")),
                             max_ms=_ms(lat.get("max")), extra=extra)
    v = result
    mean = _ms(v.get("result_mean_latency_ns"))
    median = _ms(v.get("result_50.00_percentile_latency_ns"))
    if mean is None and median is None:
        raise fail_absent(TOOL, "result_mean_latency_ns or 50th percentile in the detail log", end_of(result))
    count = v.get("result_query_count")
    return ProfileRecord(component=component, backend=backend, precision=precision, device=device, tool=TOOL,
                         median_ms=median, p90_ms=_ms(v.get("result_90.00_percentile_latency_ns")), mean_ms=mean,
                         min_ms=_ms(v.get("result_min_latency_ns")), max_ms=_ms(v.get("result_max_latency_ns")),
                         runs=count if isinstance(count, int) else None,
                         extra={"result": v.get("result_validity"), "min_duration_met": v.get("result_min_duration_met"),
                                "min_queries_met": v.get("result_min_queries_met"),
                                "early_stopping_met": v.get("early_stopping_met")})
