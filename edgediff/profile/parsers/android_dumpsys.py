"""Android `dumpsys meminfo <package|pid>` and `dumpsys thermalservice` output, plus `getprop` listings.

meminfo: Android 4-9 tables (`Pss Private Private SwapPss ...`, header words that do not line up, App Summary with
`TOTAL:` and `TOTAL SWAP PSS:`) and Android 10+ (`Pss Total ... Rss Total`, `TOTAL PSS:` / `TOTAL RSS:`), aligned
as printed or with the spacing lost in a copy from a web page (columns then go by order, and a row whose label is
garbled fails). thermalservice: tab or space indented blocks, trailing spaces, `HAL Ready` / listener lines, sensors
reporting `NaN` (not recorded)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    LNUM,
    Numbers,
    clean_text,
    ensure_not_cut,
    fail,
    fail_absent,
    full_match,
    last_line,
    numbered_lines,
)

TOOL_MEMINFO = "dumpsys meminfo"
TOOL_THERMAL = "dumpsys thermalservice"
INT = r"[-+]?\d{1,18}"  # pids, uptimes, enum values: bounded, so int() never meets a 5000-digit string


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
_TOTALS = re.compile(r"(TOTAL(?: [A-Z]+)*(?: \(KB\))?):\s+(\d{1,15})")
_DIGITS = re.compile(r"\d{1,15}")


def _spans(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]


def _column_of(end: int, spans: list[tuple[int, int]]) -> int | None:
    """The column whose dashes a right-aligned value ending at `end` sits under."""
    return next((i for i, (a, b) in enumerate(spans) if a < end <= b + 1), None)


def _table_columns(header: list[str], spans: list[tuple[int, int]], line_no: int, raw: str) -> list[str]:
    """Column names from the header lines above the dashes: by position (as printed: Android 4-9 put `Pss` alone
    on the lower line), else word by word when the spacing was lost and both lines have one word per column."""
    names: list[list[str]] = [[] for _ in spans]
    aligned = True
    for text in header:
        for m in re.finditer(r"\S+", text):
            col = next((i for i, (a, b) in enumerate(spans) if m.start() < b and m.end() > a), None)
            if col is None:
                aligned = False
                break
            names[col].append(m.group())
    if aligned and all(names):
        return [" ".join(n) for n in names]
    words = [h.split() for h in header]
    if words and all(len(w) == len(spans) for w in words):
        return [" ".join(parts) for parts in zip(*words)]
    raise fail(TOOL_MEMINFO, "unexpected table header", line_no, raw, "pass the output of `dumpsys meminfo PKG`")


def _row_values(line: str, spans: list[tuple[int, int]], line_no: int, raw: str) -> tuple[str, list[tuple[int, int]]]:
    """(label, [(column, value)]) of a table row: by position when every value sits under a column's dashes,
    else in order (spacing lost), which needs a label without digits (a garbled value would shift the rest)."""
    tokens = list(re.finditer(r"\S+", line))
    first = next((i for i, t in enumerate(tokens) if t.group().isdecimal()), len(tokens))
    label = " ".join(t.group() for t in tokens[:first])
    values = tokens[first:]
    if not label or not values or not all(_DIGITS.fullmatch(t.group()) for t in values) or \
            any(ch.isdigit() for ch in label):  # no row label has digits: one that does hides a garbled value
        raise fail(TOOL_MEMINFO, "malformed or truncated memory table row", line_no, raw)
    cols = [_column_of(t.end(), spans) for t in values]
    placed = [c for c in cols if c is not None]
    if len(placed) == len(cols) and len(set(placed)) == len(placed):
        return label, [(c, int(t.group())) for c, t in zip(placed, values)]
    if len(values) > len(spans):
        raise fail(TOOL_MEMINFO, "memory table row whose values do not line up with the columns", line_no, raw)
    return label, [(i, int(t.group())) for i, t in enumerate(values)]


_ROW_SHAPE = re.compile(r"\s+[A-Za-z.][A-Za-z .]{0,40}(?:\s+\d{1,15})+")
_ENDS_IN_VALUE = re.compile(r"\s\d{1,15}\Z")


def _meminfo_figure(line: str) -> bool:
    """The shape of a table row (`  Native Heap   24482 ...`) or a summary/total line (`Code:   880`)."""
    return _ROW_SHAPE.fullmatch(line) is not None or (":" in line and _ENDS_IN_VALUE.search(line) is not None)


def parse_meminfo(text: str) -> MemInfo:
    text = clean_text(text)
    ensure_not_cut(text, TOOL_MEMINFO, _meminfo_figure)
    out = MemInfo()
    state = "start"
    header: list[str] = []
    spans: list[tuple[int, int]] = []
    summary_cols: list[str] = []
    for line_no, raw in numbered_lines(text):
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
                spans = _spans(line)
                out.columns = _table_columns(header[-2:], spans, line_no, raw)
                state = "table"
            elif s:
                header.append(line)
            continue
        if state == "table":
            if not s or s == "App Summary":
                state = "after_table" if s != "App Summary" else "summary_header"
                summary_cols = []
                continue
            label, values = _row_values(line, spans, line_no, raw)
            out.rows[label] = {out.columns[c]: v for c, v in values}
            continue
        if s == "App Summary":
            state, summary_cols = "summary_header", []
            continue
        if state == "summary_header":
            if s and set(s.replace(" ", "")) == {"-"}:
                spans = _spans(line)
                if len(spans) != len(summary_cols):
                    raise fail(TOOL_MEMINFO, "App Summary header and rule disagree", line_no, raw)
                state = "summary"
            elif s:
                summary_cols = [c.replace("(KB)", "") for c in s.split()]
            continue
        if state == "summary":
            if not s:
                continue
            if s.startswith("TOTAL"):
                for name, value in _TOTALS.findall(s):
                    name = name.replace(" (KB)", "")
                    out.totals_kb["TOTAL PSS" if name == "TOTAL" else name] = int(value)
                if not out.totals_kb:
                    raise fail(TOOL_MEMINFO, "unreadable totals", line_no, raw)
                state = "done"
                continue
            label, colon, rest = line.partition(":")
            if not colon:
                raise fail(TOOL_MEMINFO, "App Summary line without ':'", line_no, raw)
            found = list(_DIGITS.finditer(line, len(label) + 1))
            if any(not t.group().isdecimal() for t in re.finditer(r"\S+", rest)):
                raise fail(TOOL_MEMINFO, "malformed App Summary line", line_no, raw)
            cols = [_column_of(t.end(), spans) for t in found]
            if None in cols and len(found) == len(summary_cols):  # spacing lost: one value per column
                cols = list(range(len(found)))
            placed = [c for c in cols if c is not None]
            if len(placed) == len(cols):
                out.app_summary[label.strip()] = {summary_cols[c]: int(t.group()) for c, t in zip(placed, found)}
            # else: a partial row whose values cannot be placed once the spacing is lost: not recorded
    if out.pid is None and not out.rows:
        raise fail_absent(TOOL_MEMINFO, "'** MEMINFO in pid' block", last_line(text),
                          hint="is the app running? pass a package or pid")
    if state in ("table_header", "table") and not out.rows:
        raise fail_absent(TOOL_MEMINFO, "memory table (it is missing or cut)", last_line(text))
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


_EXTRA = r"(?:, \w+=[^,{}]{0,200})*"  # fields a newer Android may add
_TEMP = re.compile(rf"Temperature\{{mValue=(?P<v>{LNUM}), mType=(?P<t>{INT}), mName=(?P<n>[^,}}]+), "
                   rf"mStatus=(?P<s>{INT}){_EXTRA}\}}")
_COOLING = re.compile(rf"CoolingDevice\{{mValue=(?P<v>{INT}), mType=(?P<t>{INT}), mName=(?P<n>[^,}}]+){_EXTRA}\}}")
_STATUS = re.compile(rf"Thermal Status: (?P<s>{INT})")
_UNAVAILABLE = ("nan", "-nan")


def parse_thermalservice(text: str) -> ThermalState:
    """Current HAL temperatures and cooling devices; the `Cached temperatures` block (stale values) is skipped."""
    text = clean_text(text)
    ensure_not_cut(text, TOOL_THERMAL, ("Temperature{", "CoolingDevice{", "Thermal Status"))
    nums = Numbers(text, TOOL_THERMAL)
    out = ThermalState()
    block: str | None = None
    for line_no, raw in numbered_lines(text):
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
            if m["v"].lower() in _UNAVAILABLE:  # a sensor the HAL lists but cannot read
                continue
            out.temperatures.append(Temperature(m["n"], nums.f(m["v"], line_no, raw), int(m["t"]), int(m["s"])))
        elif block == "cooling" and s.startswith("CoolingDevice{"):
            m = full_match(_COOLING, s, TOOL_THERMAL, line_no, raw, "cooling device")
            out.cooling_devices[m["n"]] = int(m["v"])
    if not out.temperatures and out.thermal_status is None:
        raise fail_absent(TOOL_THERMAL, "'Current temperatures from HAL' block or 'Thermal Status' line",
                          last_line(text), hint="the device's thermal HAL may be missing; the thermal state is then "
                          "not recorded")
    return out


_GETPROP = re.compile(r"\[(?P<k>[^\]]+)\]: \[(?P<v>[^\]]*)\]")


def parse_getprop(text: str) -> dict[str, str]:
    """`adb shell getprop` listing: `[key]: [value]` per line (multi-line values are skipped)."""
    return {m["k"]: m["v"] for line in clean_text(text).split("\n") if (m := _GETPROP.fullmatch(line.strip()))}
