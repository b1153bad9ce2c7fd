"""Shared pieces of the device-tool parsers: text cleaning, lenient numbers, line prefixes, strict errors.

Lenient reader, strict reporter. Every parser first cleans the text (BOM, CRLF, ANSI colours, odd spaces and
control characters), skips lines it does not know (interleaved warnings, vendor log lines, trailing garbage) and
reads numbers as people save them (`1.234,5`, `1,234.5`, `1 234,5` with a no-break space, `nan`). A line it
does recognise, by its label followed by a number, must still match its full shape, units included, or the parse
fails with a ParseError naming the line: a truncated or garbled figure never turns into a number. When a figure a
person needs is absent, the error names the line where the output ended.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterator

from edgediff.errors import ParseError

# A decimal number as C++ iostreams, printf("%g") and Python print them (incl. 1e+06, .5, -3).
NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
INT = r"[-+]?\d+"

# The lenient forms: thousands groups (`,` `.` `'` and the no-break / thin spaces), a decimal comma, and the
# spellings of non-finite values (C's nan/inf, MSVC's 1.#INF / -1.#IND). Numbers() turns a match into a value.
_GROUP_SEPS = ",.'\u00a0\u202f\u2009"
_GROUPED = rf"\d{{1,3}}(?:[{_GROUP_SEPS}]\d{{3}})+"
_NON_FINITE = r"(?i:nan(?:\(\w*\))?|inf(?:inity)?|\d\.#(?:inf|ind|qnan|snan)\d*)"
LNUM = rf"[-+]?(?:(?:{_GROUPED}(?:[.,]\d+)?|\d+(?:\.\d*|,\d+)?|[.,]\d+)(?:[eE][-+]?\d+)?|{_NON_FINITE})"
LINT = rf"[-+]?(?:{_GROUPED}|\d+)"
_LNUM_RE = re.compile(LNUM)
_NON_FINITE_RE = re.compile(_NON_FINITE)
_MAX_NUMBER_CHARS = 64  # no tool prints a longer number; int() of a 5000-digit string even raises ValueError
MAX_LINE = 20_000  # a longer line is no tool's output line (binary garbage, a pasted blob): it is skipped

_LEVEL_PREFIX = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG):\s?")
# logcat: "... tflite  : msg" (docs), "01-02 10:00:00.123  123  456 I tflite  : msg" (threadtime),
# "I/tflite  ( 1234): msg" (brief).
_LOGCAT_PREFIX = re.compile(
    r"^(?:\.\.\.\s+|.{0,80}?\s[VDIWEF]\s+)(?P<tag>[\w.-]{1,64})[ \t]*:\s"
    r"|^[VDIWEF]/(?P<tag2>[\w.-]{1,64})[ \t]*\(\s*\d+\):\s"
)
# glog / absl: "2017-11-27 08:56:45.691915: I tensorflow/tools/benchmark/benchmark_model.cc:324] msg" (TF 1.x),
# "I0000 00:00:1700000000.123456    1234 benchmark_tflite_model.cc:123] msg".
_GLOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ )[\w./+-]{1,200}:\d+\] ?"
)
_TRT_PREFIX = re.compile(r"^(?:\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\]\s*)?\[(?P<sev>[IWEVF])\]\s?")

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u200e\u200f]")
_ODD_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x85\u2028\u2029]")
_LOOSE_SPACE = re.compile("(?<![0-9])[\u00a0\u202f\u2009]|[\u00a0\u202f\u2009](?![0-9])")


def clean_text(text: str) -> str:
    """The text as the tool printed it: no BOM or zero-width marks, no ANSI colour codes, `\\n` line ends (CRLF and
    CR become one break each, so line numbers stay those an editor shows), other control characters as spaces (a
    NUL inside a number makes it malformed, never a different number), no-break spaces as plain spaces except
    between digits (there they group thousands), and the Unicode minus as `-`."""
    text = _INVISIBLE.sub("", text)
    text = _ANSI.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ODD_CONTROLS.sub(" ", text)
    return _LOOSE_SPACE.sub(" ", text).replace("\u2212", "-")


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a cleaned text, skipping lines too long to be any tool's output."""
    for line_no, raw in enumerate(text.split("\n"), start=1):
        if len(raw) <= MAX_LINE:
            yield line_no, raw


def last_line(text: str) -> tuple[int, str]:
    """Number and text of the last non-blank line (1, '') for an empty text: where an absent figure was missed."""
    lines = text.rstrip().split("\n")
    return len(lines), lines[-1][:MAX_LINE]


def strip_level(line: str) -> str:
    """Drop a TFLite-style `INFO: ` / `VERBOSE: ` prefix."""
    return _LEVEL_PREFIX.sub("", line, count=1)


def strip_logcat(line: str, tags: tuple[str, ...]) -> str:
    """Drop a logcat prefix when the line's tag is one of `tags`; other lines are returned unchanged."""
    m = _LOGCAT_PREFIX.match(line)
    if m and (m.group("tag") or m.group("tag2")) in tags:
        return line[m.end():]
    return line


def strip_glog(line: str) -> str:
    """Drop a glog/absl `... file.cc:123] ` prefix (TF 1.x tools, absl-logging builds)."""
    return _GLOG_PREFIX.sub("", line, count=1)


def strip_trt(line: str) -> str:
    """Drop trtexec's optional `[MM/DD/YYYY-hh:mm:ss] ` timestamp and `[I] ` severity."""
    return _TRT_PREFIX.sub("", line, count=1)


def trt_severity(line: str) -> str | None:
    """The `[I]`/`[W]`/`[E]`/`[V]` severity letter of a trtexec line, if it has one."""
    m = _TRT_PREFIX.match(line)
    return m["sev"] if m else None


def rescale(value: float | str, factor: float | int | str) -> float:
    """Unit conversion without binary noise: rescale(0.101519, 1000) == 101.519, not 101.51899999999999."""
    return float(Decimal(value if isinstance(value, str) else repr(float(value))) * Decimal(str(factor)))


def fail(tool: str, problem: str, line_no: int | None = None, line: str | None = None, hint: str = "") -> ParseError:
    """Build a ParseError that says which tool, what is wrong, where, and what to do."""
    where = f" at line {line_no}: {line.strip()[:160]!r}" if line_no is not None and line is not None else ""
    fix = f"; {hint}" if hint else ""
    return ParseError(f"{tool} output: {problem}{where}{fix}")


def fail_absent(tool: str, what: str, end: tuple[int, str] | None, hint: str = "") -> ParseError:
    """A needed figure is missing: say which, and the line where the output (or the run) ended."""
    if end is None:
        return fail(tool, f"no {what}", hint=hint)
    return fail(tool, f"no {what}; the output ends", end[0], end[1] or "(empty line)", hint)


def mark_end(obj: object, end: tuple[int, str]) -> None:
    """Remember on a parse result where its text ended, for a later 'figure absent' error. A plain attribute,
    not a dataclass field: results compare and serialise as before."""
    obj.__dict__["_end"] = end


def end_of(obj: object) -> tuple[int, str] | None:
    return getattr(obj, "_end", None)


_CUT_TAIL = re.compile(r"\d[.,]?\Z")


def ensure_not_cut(text: str, tool: str, labels: tuple[str, ...] | Callable[[str], bool] = ()) -> None:
    """A text that stops mid-line right after a digit may have lost the rest of that number (`avg=8680` of
    `avg=8680.33`): refuse it rather than read a wrong value. With `labels` (strings, or a test of the line), only
    a last line that is a figure line is refused; a cut line of noise is no figure and is left to be skipped."""
    if text and not text.endswith("\n"):
        last = text.split("\n")[-1]
        figure = labels(last) if callable(labels) else not labels or any(label in last for label in labels)
        if _CUT_TAIL.search(last) and figure:
            raise fail(tool, "the output stops in the middle of a line that ends in a number, so that number may be "
                       "cut", text.count("\n") + 1, last,
                       "pass the complete output (if it is complete, it only lacks its final newline: add one)")


def full_match(pattern: re.Pattern[str], text: str, tool: str, line_no: int, raw: str, what: str) -> re.Match[str]:
    """Match a recognised line against its full shape or fail: a partial line must never yield a number."""
    m = pattern.fullmatch(text.rstrip())
    if m is None:
        raise fail(tool, f"malformed or truncated {what} line", line_no, raw,
                   "re-run the tool and pass its complete, unedited output")
    return m


# --------------------------------------------------------------------------------------------- lenient numbers

_FIGURE_TOKEN = re.compile(rf"(?:[=:]|\bis)[ \t]*(?P<n>{_GROUPED}(?:[.,]\d+)?|\d+[.,]\d+)(?![\d.,])")


def _convention(text: str) -> str:
    """How this document writes decimals, from its unambiguous figures (after `=`, `:` or `is`): 'point', 'comma',
    'mixed' or 'unknown'. `0,848`, `12,5`, `1.234,5` and `1.234.567` say comma; `0.848`, `12.5`, `1,234.5` and
    `1,234,567` say point; `1,234` and `1.234` say nothing."""
    point = comma = False
    for m in _FIGURE_TOKEN.finditer(text):
        token = m["n"]
        seps = [c for c in token if not c.isdigit()]
        marks = [c for c in seps if c in ",."]
        if not marks:
            continue
        if len(set(marks)) == 2 or len(marks) > 1:
            decimal_is_comma = marks[-1] == "," if len(set(marks)) == 2 else marks[0] == "."
        else:
            head, _, tail = token.replace("'", "").partition(marks[0])
            head = "".join(c for c in head if c.isdigit())
            if _ambiguous(head, tail):
                continue
            decimal_is_comma = marks[0] == ","
        comma, point = comma or decimal_is_comma, point or not decimal_is_comma
    return "mixed" if point and comma else "comma" if comma else "point" if point else "unknown"


def _ambiguous(head: str, tail: str) -> bool:
    """`1,234` / `12.500`: a 1-3 digit whole part not starting with 0 and exactly three more digits."""
    return len(tail) == 3 and tail.isdigit() and 1 <= len(head) <= 3 and head[0] != "0"


class Numbers:
    """Reads the number tokens of one document, with the document's decimal convention (see _convention)."""

    def __init__(self, text: str, tool: str):
        self.tool = tool
        self.convention = _convention(text)

    def f(self, token: str, line_no: int | None = None, line: str | None = None) -> float:
        """A finite float, or a ParseError naming the line."""
        value = self._value(token, integer=False, line_no=line_no, line=line)
        return float(value)

    def i(self, token: str, line_no: int | None = None, line: str | None = None) -> int:
        """A whole number (separators are thousands groups), or a ParseError naming the line."""
        value = self._value(token, integer=True, line_no=line_no, line=line)
        if value != value.to_integral_value():
            raise fail(self.tool, f"expected a whole number, got {token!r}", line_no, line)
        return int(value)

    def _value(self, token: str, *, integer: bool, line_no: int | None, line: str | None) -> Decimal:
        token = token.strip()
        if len(token) > _MAX_NUMBER_CHARS:
            raise fail(self.tool, f"a {len(token)}-character number is no measurement", line_no, line,
                       "the output looks corrupted; re-run the tool")
        if _LNUM_RE.fullmatch(token) is None:
            raise fail(self.tool, f"unreadable number {token[:40]!r}", line_no, line,
                       "the line looks truncated or edited; pass the tool's complete, unedited output")
        text = self._normalise(token, integer, line_no, line)
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise fail(self.tool, f"unreadable number {token!r}", line_no, line) from None
        if not value.is_finite() or not math.isfinite(float(value)):
            raise fail(self.tool, f"the figure is not a finite number ({token!r})", line_no, line,
                       "the tool measured nothing usable here (no runs, or a failed timer); re-run it")
        return value

    def _normalise(self, token: str, integer: bool, line_no: int | None, line: str | None) -> str:
        """The token in Python's syntax: grouping removed, decimal mark a point."""
        if _NON_FINITE_RE.fullmatch(token.lstrip("+-")):
            return "nan"
        sign = token[0] if token[:1] in "+-" else ""
        body = token[len(sign):]
        mantissa, e, exponent = body.replace("E", "e").partition("e")
        for space in "'\u00a0\u202f\u2009":
            mantissa = mantissa.replace(space, "")
        marks = [c for c in mantissa if c in ",."]
        if not marks:
            return f"{sign}{mantissa}{e}{exponent}"
        if len(set(marks)) == 2:  # 1.234,5 / 1,234.5: the last mark is the decimal one, and comes once
            decimal = marks[-1]
            if mantissa.count(decimal) > 1 or integer:
                raise fail(self.tool, f"unreadable number {token!r}", line_no, line)
            whole, _, frac = mantissa.rpartition(decimal)
            return f"{sign}{whole.replace(',', '').replace('.', '')}.{frac}{e}{exponent}"
        mark = marks[0]
        if len(marks) > 1:  # 1.234.567 / 1,234,567: groups only
            return f"{sign}{mantissa.replace(mark, '')}{e}{exponent}"
        head, _, tail = mantissa.partition(mark)
        if integer:
            grouping = True
        elif not _ambiguous(head, tail):
            grouping = False
        elif self.convention == "mixed" or (mark == "," and self.convention == "unknown"):
            why = "the output mixes both conventions" if self.convention == "mixed" else "nothing else says which"
            raise fail(self.tool, f"the number {token!r} could be read with {mark!r} as a decimal mark or as a "
                       f"thousands separator, and {why}", line_no, line,
                       "save the tool's output unedited (C locale) and pass that")
        else:
            grouping = (mark == ",") == (self.convention != "comma")
        if grouping:
            return f"{sign}{head}{tail}{e}{exponent}"
        return f"{sign}{head or '0'}.{tail}{e}{exponent}"


# --------------------------------------------------------------------------------------------- JSON


def load_json(text: str, tool: str, what: str, hint: str) -> object:
    """One JSON value from a cleaned text; trailing garbage after it is ignored. Invalid or truncated JSON, and
    JSON no parser can hold (nesting deep enough to overflow, a 5000-digit integer), fail with a ParseError."""
    body = text.lstrip()
    skipped = len(text) - len(body)
    try:
        value, _end = json.JSONDecoder().raw_decode(body)
    except json.JSONDecodeError as exc:
        line_no = text.count("\n", 0, skipped + exc.pos) + 1
        line = text.split("\n")[line_no - 1] if line_no <= text.count("\n") + 1 else ""
        raise fail(tool, f"{what} is not valid JSON ({exc.msg})", line_no, line[:MAX_LINE] or "(empty)",
                   hint) from None
    except (ValueError, RecursionError) as exc:  # int digits limit, too deep
        raise fail(tool, f"{what} is not JSON a parser can hold ({exc.__class__.__name__})", hint=hint) from None
    return value


def finite(value: object) -> bool:
    """A JSON number that is a measurement: int or float, not bool, not NaN/Infinity."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


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
    lines: list[int] | None = None  # line of each item when read one object per line


def load_json_records(text: str, tool: str, *, allow_unclosed: bool = True) -> JsonRecords:
    """Read `[ {..}, {..} ]`; if the array is not closed (or brackets are missing: an excerpt), read one complete
    object per line instead. A line that is not a complete object is an error: it is never half-read."""
    text = clean_text(text)
    try:
        data, _end = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError):  # JSONDecodeError, int digit limit, nesting
        data = None
    if isinstance(data, list):
        if not all(isinstance(x, dict) for x in data):
            bad = next(i for i, x in enumerate(data) if not isinstance(x, dict))
            raise fail(tool, f"expected a JSON array of objects; item {bad} is {type(data[bad]).__name__}")
        return JsonRecords(data, closed=True)
    if data is not None and not isinstance(data, dict):
        raise fail(tool, f"expected a JSON array of objects, got {type(data).__name__}", 1, text.split("\n")[0])
    if not allow_unclosed and text.lstrip().startswith("["):
        end = last_line(text)
        raise fail(tool, "the JSON array is not valid or not closed", end[0], end[1], hint="the file looks "
                   "truncated (the tool writes it whole when it finishes); re-run and pass the complete file")
    items: list[dict] = []
    lines: list[int] = []
    for line_no, raw in numbered_lines(text):
        line = raw.strip().lstrip(",").strip().rstrip(",").strip()
        if line in ("", "[", "]", "],", "]]"):
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise fail(tool, "not a complete JSON object", line_no, raw,
                       "the file looks truncated or edited; re-run the tool and pass the whole file") from None
        if not isinstance(obj, dict):
            raise fail(tool, "expected a JSON object", line_no, raw)
        items.append(obj)
        lines.append(line_no)
    if not items:
        end = last_line(text)
        raise fail(tool, "no JSON objects found", end[0], end[1] or "(empty)", hint="pass the file the tool wrote")
    return JsonRecords(items, closed=False, lines=lines)
