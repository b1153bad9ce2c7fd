"""Qualcomm AI Hub: the `qai_hub_models` export's "Profile Job summary" text and `ProfileJob.download_profile()`
dicts. AI Hub reports an *estimated* inference time, not a median, so these are parsed for reading and comparison
but not turned into ProfileRecords."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import NUM, ensure_not_cut, fail, full_match

TOOL = "qai-hub"


@dataclass
class JobSummary:
    model: str
    device: str | None = None
    estimated_inference_ms: float | None = None
    peak_memory_range_mb: tuple[float, float] | None = None
    compute_units: dict[str, int] = field(default_factory=dict)
    total_ops: int | None = None


_HEAD = re.compile(r"Profile Job summary of (?P<m>.+)")
_DEVICE = re.compile(r"Device: (?P<d>.+)")
_TIME = re.compile(rf"Estimated Inference Time: (?P<v>{NUM}) ms")
_MEM = re.compile(rf"Estimated Peak Memory Range: (?P<a>{NUM})-(?P<b>{NUM}) MB")
_UNITS = re.compile(r"Compute Units: (?P<u>.+?) \| Total \((?P<t>\d+)\)")
_UNIT = re.compile(r"(?P<n>[A-Z]+) \((?P<c>\d+)\)")


def parse_job_summaries(text: str) -> list[JobSummary]:
    ensure_not_cut(text, TOOL)
    jobs: list[JobSummary] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s.startswith("Profile Job summary of"):
            jobs.append(JobSummary(full_match(_HEAD, s, TOOL, line_no, raw, "header")["m"]))
        elif not jobs or not s or set(s) == {"-"}:
            continue
        elif s.startswith("Device:"):
            jobs[-1].device = full_match(_DEVICE, s, TOOL, line_no, raw, "device")["d"]
        elif s.startswith("Estimated Inference Time"):
            jobs[-1].estimated_inference_ms = float(full_match(_TIME, s, TOOL, line_no, raw, "time")["v"])
        elif s.startswith("Estimated Peak Memory Range"):
            m = full_match(_MEM, s, TOOL, line_no, raw, "memory")
            jobs[-1].peak_memory_range_mb = (float(m["a"]), float(m["b"]))
        elif s.startswith("Compute Units"):
            m = full_match(_UNITS, s, TOOL, line_no, raw, "compute units")
            units = m["u"].split(",")
            for unit in units:
                u = full_match(_UNIT, unit.strip(), TOOL, line_no, raw, "compute unit")
                jobs[-1].compute_units[u["n"]] = int(u["c"])
            jobs[-1].total_ops = int(m["t"])
    if not jobs:
        raise fail(TOOL, "no 'Profile Job summary of' block")
    return jobs


def parse_profile_dict(text: str) -> dict:
    """A printed `download_profile()` dict (Python literal with tuples): read with ast.literal_eval, never eval."""
    try:
        data = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        raise fail(TOOL, f"not a complete Python literal ({exc.__class__.__name__})",
                   hint="pass the whole printed dict") from None
    if not isinstance(data, dict) or "execution_summary" not in data:
        raise fail(TOOL, "no execution_summary in the profile dict")
    return data
