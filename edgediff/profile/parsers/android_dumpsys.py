"""Android `dumpsys meminfo <package|pid>` and `dumpsys thermalservice` output, plus `getprop` listings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import INT, NUM, ensure_not_cut, fail, full_match

TOOL_MEMINFO = "dumpsys meminfo"
TOOL_THERMAL = "dumpsys thermalservice"


@dataclass
class MemInfo:
    pid: int | None = None
    process: str | None = None
    uptime_ms: int | None = None
    realtime_ms: int | None = None
    columns: list[str] = field(default_factory=list)  # e.g. "Pss Total", "Rss Total", "Heap Size"
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # "Native Heap" -> {"Pss Total": 24482, ...} KB
    app_summary: dict[str, dict[str, int]] = field(default_factory=dict)  # "Java Heap" -> {"Pss": .., "Rss": ..}
    totals_kb: dict[str, int] = field(default_factory=dict)  # TOTAL PSS / TOTAL RSS / TOTAL SWAP

    @property
    def total_pss_mb(self) -> float | None:
        kb = self.totals_kb.get("TOTAL PSS", self.rows.get("TOTAL", {}).get("Pss Total"))
        return kb / 1024 if kb is not None else None

    @property
    def total_rss_mb(self) -> float | None:
        kb = self.totals_kb.get("TOTAL RSS", self.rows.get("TOTAL", {}).get("Rss Total"))
        return kb / 1024 if kb is not None else None


_HEADER = re.compile(rf"\*\* MEMINFO in pid (?P<pid>{INT}) \[(?P<proc>[^\]]+)\] \*\*")
_UPTIME = re.compile(rf"Uptime: (?P<up>{INT}) Realtime: (?P<rt>{INT})")
_ROW = re.compile(r"(?P<label>\S.*?)\s+(?P<nums>\d+(?:\s+\d+)*)")
_TOTALS = re.compile(r"(TOTAL [A-Z]+(?: \(KB\))?):\s+(\d+)")


def parse_meminfo(text: str) -> MemInfo:
    ensure_not_cut(text, TOOL_MEMINFO)
    out = MemInfo()
    lines = text.splitlines()
    state = "start"
    header: list[str] = []
    spans: list[tuple[int, int]] = []
    summary_cols: list[str] = []
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        s = line.strip()
        if s.startswith("** MEMINFO"):
            m = full_match(_HEADER, s, TOOL_MEMINFO, line_no, raw, "header")
            out.pid, out.process = int(m["pid"]), m["proc"]
            state, header = "table_header", []
            continue
        if s.startswith("Uptime:"):
            m = full_match(_UPTIME, s, TOOL_MEMINFO, line_no, raw, "uptime")
            out.uptime_ms, out.realtime_ms = int(m["up"]), int(m["rt"])
            continue
        if state == "table_header":
            if s and set(s.replace(" ", "")) == {"-"}:
                if len(header) != 2 or len(header[0].split()) != len(header[1].split()):
                    raise fail(TOOL_MEMINFO, "unexpected table header", line_no, raw)
                out.columns = [f"{a} {b}" for a, b in zip(header[0].split(), header[1].split())]
                state = "table"
            elif s:
                header.append(s)
            continue
        if state == "table":
            if not s:
                state = "after_table"
                continue
            m = full_match(_ROW, s, TOOL_MEMINFO, line_no, raw, "memory table")
            nums = [int(x) for x in m["nums"].split()]
            if len(nums) > len(out.columns):
                raise fail(TOOL_MEMINFO, "row with more values than columns", line_no, raw)
            out.rows[m["label"]] = dict(zip(out.columns, nums))
            continue
        if s == "App Summary":
            state, summary_cols = "summary_header", []
            continue
        if state == "summary_header":
            if set(s.replace(" ", "")) == {"-"}:
                spans = [(m.start(), m.end()) for m in re.finditer(r"-+", line)]
                if len(spans) != len(summary_cols):
                    raise fail(TOOL_MEMINFO, "App Summary header and rule disagree", line_no, raw)
                state = "summary"
            else:
                summary_cols = [c.replace("(KB)", "") for c in s.split()]
            continue
        if state == "summary":
            if not s:
                continue
            if s.startswith("TOTAL"):
                for name, value in _TOTALS.findall(s):
                    out.totals_kb[name.replace(" (KB)", "")] = int(value)
                if not out.totals_kb:
                    raise fail(TOOL_MEMINFO, "unreadable totals", line_no, raw)
                state = "done"
                continue
            label, colon, rest = line.partition(":")
            if not colon:
                raise fail(TOOL_MEMINFO, "App Summary line without ':'", line_no, raw)
            values: dict[str, int] = {}
            for m in re.finditer(r"\d+", line[len(label) + 1:]):
                end = len(label) + 1 + m.end()
                col = next((c for c, (a, b) in zip(summary_cols, spans) if a < end <= b + 1), None)
                if col is None:
                    raise fail(TOOL_MEMINFO, "App Summary value outside every column", line_no, raw)
                values[col] = int(m.group())
            out.app_summary[label.strip()] = values
    if out.pid is None and not out.rows:
        raise fail(TOOL_MEMINFO, "no '** MEMINFO in pid' block", hint="is the app running? pass a package or pid")
    if state in ("table_header", "table") and not out.rows:
        raise fail(TOOL_MEMINFO, "the memory table is missing or cut")
    return out


@dataclass
class Temperature:
    name: str
    value_c: float
    type: int
    status: int


@dataclass
class ThermalState:
    temperatures: list[Temperature] = field(default_factory=list)
    cooling_devices: dict[str, int] = field(default_factory=dict)
    thermal_status: int | None = None
    status_override: bool | None = None

    def max_c(self) -> float | None:
        return max((t.value_c for t in self.temperatures), default=None)


_TEMP = re.compile(rf"Temperature\{{mValue=(?P<v>{NUM}), mType=(?P<t>{INT}), mName=(?P<n>[^,}}]+), "
                   rf"mStatus=(?P<s>{INT})\}}")
_COOLING = re.compile(rf"CoolingDevice\{{mValue=(?P<v>{INT}), mType=(?P<t>{INT}), mName=(?P<n>[^,}}]+)\}}")
_STATUS = re.compile(rf"Thermal Status: (?P<s>{INT})")


def parse_thermalservice(text: str) -> ThermalState:
    """Current HAL temperatures and cooling devices; the `Cached temperatures` block (stale values) is skipped."""
    ensure_not_cut(text, TOOL_THERMAL)
    out = ThermalState()
    block: str | None = None
    for line_no, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s:
            continue
        if not raw[:1].isspace():
            block = None
            if s == "Current temperatures from HAL:":
                block = "temps"
            elif s == "Current cooling devices from HAL:":
                block = "cooling"
            elif s.startswith("Thermal Status:"):
                out.thermal_status = int(full_match(_STATUS, s, TOOL_THERMAL, line_no, raw, "status")["s"])
            elif s.startswith("IsStatusOverride:"):
                out.status_override = s.split(":", 1)[1].strip() == "true"
            continue
        if block == "temps" and s.startswith("Temperature{"):
            m = full_match(_TEMP, s, TOOL_THERMAL, line_no, raw, "temperature")
            out.temperatures.append(Temperature(m["n"], float(m["v"]), int(m["t"]), int(m["s"])))
        elif block == "cooling" and s.startswith("CoolingDevice{"):
            m = full_match(_COOLING, s, TOOL_THERMAL, line_no, raw, "cooling device")
            out.cooling_devices[m["n"]] = int(m["v"])
    if not out.temperatures and out.thermal_status is None:
        raise fail(TOOL_THERMAL, "no 'Current temperatures from HAL' block or 'Thermal Status' line",
                   hint="the device's thermal HAL may be missing; the thermal state is then not recorded")
    return out


_GETPROP = re.compile(r"\[(?P<k>[^\]]+)\]: \[(?P<v>[^\]]*)\]")


def parse_getprop(text: str) -> dict[str, str]:
    """`adb shell getprop` listing: `[key]: [value]` per line (multi-line values are skipped)."""
    return {m["k"]: m["v"] for line in text.splitlines() if (m := _GETPROP.fullmatch(line.strip()))}
