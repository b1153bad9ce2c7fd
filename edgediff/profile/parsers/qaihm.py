"""Qualcomm AI Hub: the `qai_hub_models` export's summaries, both the older "Profile Job summary of X" block and the
newer "Performance results on-device for X." table (`Estimated inference time (ms)   : 23.3`, which may read
`<0.1`), and `ProfileJob.download_profile()` dicts. AI Hub reports an *estimated* inference time, not a median,
so these are parsed for reading and comparison but not turned into ProfileRecords."""

from __future__ import annotations

import ast
import re
import warnings
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

TOOL = "qai-hub"


@dataclass
class JobSummary:
    model: str
    device: str | None = None
    estimated_inference_ms: float | None = None
    peak_memory_range_mb: tuple[float, float] | None = None
    compute_units: dict[str, int] = field(default_factory=dict)
    total_ops: int | None = None
    runtime: str | None = None  # newer exports: TFLITE, QNN, ONNX...
    estimated_inference_below_ms: float | None = None  # newer exports print `<0.1` for very fast models


_HEAD = re.compile(r"Profile Job summary of (?P<m>.+)")
_NEW_HEAD = re.compile(r"Performance results on-device for (?P<m>.+?)\.?")
_DEVICE = re.compile(r"Device\s*: (?P<d>.+)")
_TIME = re.compile(rf"Estimated Inference Time: (?P<v>{LNUM}) ms")
_NEW_TIME = re.compile(rf"Estimated inference time \(ms\)\s*: (?:(?P<v>{LNUM})|<(?P<below>{LNUM}))")
_MEM = re.compile(rf"Estimated Peak Memory Range: (?P<a>{LNUM})-(?P<b>{LNUM}) MB")
_NEW_MEM = re.compile(rf"Estimated peak memory usage \(MB\)\s*: \[(?P<a>{LNUM}), (?P<b>{LNUM})\]")
_UNITS = re.compile(r"Compute Units: (?P<u>[^|]+) \| Total \((?P<t>\d{1,12})\)")
_UNIT = re.compile(r"(?P<n>[A-Z]+) \((?P<c>\d{1,12})\)")
_NEW_UNITS = re.compile(r"Compute Unit\(s\)\s*: (?P<u>(?:\w+ \(\d{1,12} ops\) ?)+)")
_NEW_UNIT = re.compile(r"(?P<n>\w+) \((?P<c>\d{1,12}) ops\)")
_OPS = re.compile(r"Total # Ops\s*: (?P<t>\d{1,12})")
_RUNTIME = re.compile(r"Runtime\s*: (?P<r>\S+)")
_FIGURE_LABELS = ("Estimated", "Compute Unit", "Total")


def parse_job_summaries(text: str) -> list[JobSummary]:
    text = clean_text(text)
    ensure_not_cut(text, TOOL, _FIGURE_LABELS)
    nums = Numbers(text, TOOL)
    jobs: list[JobSummary] = []
    for line_no, raw in numbered_lines(text):
        s = raw.strip()
        if s.startswith("Profile Job summary of"):
            jobs.append(JobSummary(full_match(_HEAD, s, TOOL, line_no, raw, "header")["m"]))
        elif s.startswith("Performance results on-device for"):
            jobs.append(JobSummary(full_match(_NEW_HEAD, s, TOOL, line_no, raw, "header")["m"]))
        elif not jobs or not s or set(s) == {"-"}:
            continue
        elif s.startswith("Device"):
            if (m := _DEVICE.fullmatch(s)) is not None:
                jobs[-1].device = m["d"].strip()
        elif s.startswith("Runtime"):
            if (m := _RUNTIME.fullmatch(s)) is not None:
                jobs[-1].runtime = m["r"]
        elif s.startswith("Estimated Inference Time"):
            jobs[-1].estimated_inference_ms = nums.f(full_match(_TIME, s, TOOL, line_no, raw, "time")["v"],
                                                     line_no, raw)
        elif s.startswith("Estimated inference time (ms)"):
            m = full_match(_NEW_TIME, s, TOOL, line_no, raw, "time")
            if m["v"] is not None:
                jobs[-1].estimated_inference_ms = nums.f(m["v"], line_no, raw)
            else:  # `<0.1`: a bound, not a figure
                jobs[-1].estimated_inference_below_ms = nums.f(m["below"], line_no, raw)
        elif s.startswith(("Estimated Peak Memory Range", "Estimated peak memory usage")):
            m = full_match(_MEM if s.startswith("Estimated Peak") else _NEW_MEM, s, TOOL, line_no, raw, "memory")
            jobs[-1].peak_memory_range_mb = (nums.f(m["a"], line_no, raw), nums.f(m["b"], line_no, raw))
        elif s.startswith("Compute Units:"):
            m = full_match(_UNITS, s, TOOL, line_no, raw, "compute units")
            for unit in m["u"].split(","):
                u = full_match(_UNIT, unit.strip(), TOOL, line_no, raw, "compute unit")
                jobs[-1].compute_units[u["n"]] = int(u["c"])
            jobs[-1].total_ops = int(m["t"])
        elif s.startswith("Compute Unit(s)"):
            m = full_match(_NEW_UNITS, s, TOOL, line_no, raw, "compute units")
            for u in _NEW_UNIT.finditer(m["u"]):
                jobs[-1].compute_units[u["n"].upper()] = int(u["c"])
        elif s.startswith("Total # Ops"):
            jobs[-1].total_ops = int(full_match(_OPS, s, TOOL, line_no, raw, "op count")["t"])
    if not jobs:
        raise fail_absent(TOOL, "'Profile Job summary of' or 'Performance results on-device for' block",
                          last_line(text), hint="pass the output of the qai_hub_models export command")
    return jobs


def parse_profile_dict(text: str) -> dict:
    """A printed `download_profile()` dict (Python literal with tuples): read with ast.literal_eval, never eval.
    Text after the dict's closing brace (a shell prompt, a log line) is ignored."""
    body = clean_text(text).strip()
    data: object = None
    for candidate in (body, body[: body.rfind("}") + 1]):
        try:
            with warnings.catch_warnings():  # a garbled literal would print SyntaxWarnings before it fails
                warnings.simplefilter("ignore")
                data = ast.literal_eval(candidate)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            problem = exc.__class__.__name__
    else:
        end = last_line(body)
        raise fail(TOOL, f"not a complete Python literal ({problem})", end[0], end[1] or "(empty)",
                   hint="pass the whole printed dict")
    if not isinstance(data, dict) or "execution_summary" not in data:
        end = last_line(body)
        raise fail_absent(TOOL, "execution_summary in the profile dict", end)
    return data
