"""Shared pieces of the device-tool parsers: number patterns, line prefixes, strict errors.

The rule every parser follows: a line that a parser recognises (by its leading words) must match its full
expected shape, units included, or the parse fails with a ParseError naming the line. A truncated or garbled
line therefore never turns into a number; a line the parser does not know is ignored.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from decimal import Decimal

from edgediff.errors import ParseError

# A decimal number as C++ iostreams, printf("%g") and Python print them (incl. 1e+06, .5, -3).
NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
INT = r"[-+]?\d+"

_LEVEL_PREFIX = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG):\s?")
# logcat: "... tflite  : msg" (docs), "01-02 10:00:00.123  123  456 I tflite  : msg" (threadtime),
# "I/tflite  ( 1234): msg" (brief).
_LOGCAT_PREFIX = re.compile(
    r"^(?:\.\.\.\s+|.*?\s[VDIWEF]\s+)(?P<tag>[\w.-]+)\s*:\s|^[VDIWEF]/(?P<tag2>[\w.-]+)\s*\(\s*\d+\):\s"
)
_TRT_PREFIX = re.compile(r"^(?:\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]\s*)?\[[IWEVF]\]\s?")


def strip_level(line: str) -> str:
    """Drop a TFLite-style `INFO: ` / `VERBOSE: ` prefix."""
    return _LEVEL_PREFIX.sub("", line, count=1)


def strip_logcat(line: str, tags: tuple[str, ...]) -> str:
    """Drop a logcat prefix when the line's tag is one of `tags`; other lines are returned unchanged."""
    m = _LOGCAT_PREFIX.match(line)
    if m and (m.group("tag") or m.group("tag2")) in tags:
        return line[m.end():]
    return line


def strip_trt(line: str) -> str:
    """Drop trtexec's optional `[MM/DD/YYYY-hh:mm:ss] ` timestamp and `[I] ` severity."""
    return _TRT_PREFIX.sub("", line, count=1)


def rescale(value: float | str, factor: float | int | str) -> float:
    """Unit conversion without binary noise: rescale(0.101519, 1000) == 101.519, not 101.51899999999999."""
    return float(Decimal(value if isinstance(value, str) else repr(float(value))) * Decimal(str(factor)))


def fail(tool: str, problem: str, line_no: int | None = None, line: str | None = None, hint: str = "") -> ParseError:
    """Build a ParseError that says which tool, what is wrong, where, and what to do."""
    where = f" at line {line_no}: {line.strip()[:160]!r}" if line_no is not None and line is not None else ""
    fix = f"; {hint}" if hint else ""
    return ParseError(f"{tool} output: {problem}{where}{fix}")


_CUT_TAIL = re.compile(r"\d\.?\Z")


def ensure_not_cut(text: str, tool: str) -> None:
    """A text that stops mid-line right after a digit may have lost the rest of that number (`avg=8680` of
    `avg=8680.33`): refuse it rather than read a wrong value."""
    if text and not text.endswith(("\n", "\r")):
        last = text.splitlines()[-1]
        if _CUT_TAIL.search(last):
            raise fail(tool, "the output stops in the middle of a line that ends in a number, so that number may be "
                       "cut", len(text.splitlines()), last,
                       "pass the complete output (if it is complete, it only lacks its final newline: add one)")


def full_match(pattern: re.Pattern[str], text: str, tool: str, line_no: int, raw: str, what: str) -> re.Match[str]:
    """Match a recognised line against its full shape or fail: a partial line must never yield a number."""
    m = pattern.fullmatch(text.rstrip())
    if m is None:
        raise fail(tool, f"malformed or truncated {what} line", line_no, raw,
                   "re-run the tool and pass its complete, unedited output")
    return m


@dataclass
class Percentiles:
    """Summary of raw per-run samples (milliseconds)."""

    count: int
    median: float
    p90: float
    mean: float
    min: float
    max: float


def summarize_ms(samples: list[float]) -> Percentiles:
    """Median/p90/mean of measured samples; p90 by linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ParseError("no latency samples to summarize")
    data = sorted(float(x) for x in samples)
    pos = 0.9 * (len(data) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    p90 = data[lo] + (data[hi] - data[lo]) * (pos - lo)
    return Percentiles(len(data), statistics.median(data), p90, statistics.fmean(data), data[0], data[-1])


@dataclass
class JsonRecords:
    """Objects of a JSON array file, read whole or (for excerpts and unclosed arrays) one object per line."""

    items: list[dict]
    closed: bool  # False when the array was not closed with `]` or the text is an excerpt without brackets


def load_json_records(text: str, tool: str, *, allow_unclosed: bool = True) -> JsonRecords:
    """Read `[ {..}, {..} ]`; if the array is not closed (or brackets are missing: an excerpt), read one complete
    object per line instead. A line that is not a complete object is an error: it is never half-read."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if data is not None:
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise fail(tool, "expected a JSON array of objects")
        return JsonRecords(data, closed=True)
    if not allow_unclosed and text.lstrip().startswith("["):
        raise fail(tool, "the JSON array is not valid or not closed", hint="the file looks truncated (the tool "
                   "writes it whole when it finishes); re-run and pass the complete file")
    items: list[dict] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip(",").strip().rstrip(",").strip()
        if line in ("", "[", "]"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise fail(tool, "not a complete JSON object", line_no, raw,
                       "the file looks truncated or edited; re-run the tool and pass the whole file") from None
        if not isinstance(obj, dict):
            raise fail(tool, "expected a JSON object", line_no, raw)
        items.append(obj)
    if not items:
        raise fail(tool, "no JSON objects found", hint="pass the file the tool wrote")
    return JsonRecords(items, closed=False)
