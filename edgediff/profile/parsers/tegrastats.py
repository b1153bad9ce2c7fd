"""Jetson `tegrastats` lines (Nano/TX1/TX2/Xavier AGX before JetPack 5, AGX Orin with JetPack 5, Orin with JetPack
6): RAM/SWAP/IRAM, per-core CPU load and clock, EMC/GR3D and engine loads (`NVENC 1%@115`, `GR3D_FREQ 0%@[0,0]`),
engine clocks and engines that are `off`, temperatures (`-256C` is a sensor that is off: not recorded) and power
rails (with or without `mW`).

tegrastats is sampled in the background during a benchmark and stopped by a signal, so its log's last line may be
cut: a log that does not end with a newline has its last line dropped (and `dropped_partial_line` set). Lines that
are not samples (a shell prompt, `^C`, a warning) are skipped; a sample line with a field cut or garbled fails."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import clean_text, fail, fail_absent, last_line, numbered_lines

TOOL = "tegrastats"


@dataclass
class CpuCore:
    load_percent: float | None  # None when the core is `off`
    freq_mhz: int | None


@dataclass
class TegraSample:
    timestamp: str | None = None
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    lfb: tuple[int, int] | None = None  # (count, block size MB): largest free block
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    swap_cached_mb: int | None = None
    iram_used_kb: int | None = None
    iram_total_kb: int | None = None
    iram_lfb_kb: int | None = None
    cpus: list[CpuCore] = field(default_factory=list)
    loads: dict[str, tuple[float, list[int]]] = field(default_factory=dict)  # EMC_FREQ/GR3D_FREQ: (%, [MHz])
    clocks_mhz: dict[str, int] = field(default_factory=dict)  # APE, NVENC, ...
    temps_c: dict[str, float] = field(default_factory=dict)
    rails_mw: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (instant, running average)
    mts: tuple[int, int] | None = None


@dataclass
class TegraLog:
    samples: list[TegraSample]
    dropped_partial_line: bool = False

    def summary(self) -> dict[str, object]:
        """Peak RAM, mean/max power per rail, max temperatures, mean GPU load over the sampled window."""
        s = self.samples
        out: dict[str, object] = {"samples": len(s)}
        ram = [x.ram_used_mb for x in s if x.ram_used_mb is not None]
        if ram:
            out.update(ram_used_mb_first=ram[0], ram_used_mb_max=max(ram), ram_total_mb=s[0].ram_total_mb)
        rails: dict[str, list[int]] = {}
        temps: dict[str, list[float]] = {}
        for x in s:
            for name, (now, _avg) in x.rails_mw.items():
                rails.setdefault(name, []).append(now)
            for name, t in x.temps_c.items():
                temps.setdefault(name, []).append(t)
        if rails:
            out["power_mw_mean"] = {k: statistics.fmean(v) for k, v in rails.items()}
            out["power_mw_max"] = {k: max(v) for k, v in rails.items()}
        if temps:
            out["temp_c_max"] = {k: max(v) for k, v in temps.items()}
        gpu = [x.loads["GR3D_FREQ"][0] for x in s if "GR3D_FREQ" in x.loads]
        if gpu:
            out["gpu_load_percent_mean"] = statistics.fmean(gpu)
        return out


_TS = re.compile(r"(?P<ts>\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")
_SAMPLE_START = re.compile(r"(?:\d\d-\d\d-\d{4} \d\d:\d\d:\d\d )?RAM \d")
_TOKENS: list[tuple[str, re.Pattern[str]]] = [
    ("ram", re.compile(r"RAM (\d{1,12})/(\d{1,12})MB \(lfb (\d{1,12})x(\d{1,12})MB\)")),
    ("swap", re.compile(r"SWAP (\d{1,12})/(\d{1,12})MB \(cached (\d{1,12})MB\)")),
    ("iram", re.compile(r"IRAM (\d{1,12})/(\d{1,12})kB ?\(lfb (\d{1,12})kB\)")),
    ("cpu", re.compile(r"CPU \[([^\]]{0,2000})\]")),
    ("load", re.compile(r"([A-Z][A-Z0-9_]{0,40}) (\d{1,3})%(?:@\[?(\d{1,9}(?:,\d{1,9}){0,15})\]?)?")),
    ("mts", re.compile(r"MTS fg (\d{1,3})% bg (\d{1,3})%")),
    ("temp", re.compile(r"([A-Za-z][\w-]{0,40})@(-?\d{1,6}(?:\.\d{1,9})?)C")),
    ("rail", re.compile(r"([A-Za-z]\w{0,60}) (\d{1,9})(?:mW)?/(\d{1,9})(?:mW)?")),
    ("clock", re.compile(r"([A-Z][A-Z0-9_]{0,40}) (\d{1,9})(?=\s|$)")),
    ("off", re.compile(r"([A-Z][A-Z0-9_]{0,40}) off(?=\s|$)")),
]
_CORE = re.compile(r"(\d{1,3})%@(\d{1,9})|(\d{1,3})%|off")
_SENSOR_OFF_C = -256.0  # what tegrastats prints for a thermal zone that is powered down


def _parse_line(line: str, line_no: int) -> TegraSample:
    sample = TegraSample()
    pos = 0
    if (m := _TS.match(line)) is not None:
        sample.timestamp, pos = m["ts"], m.end()
    while pos < len(line):
        if line[pos].isspace():
            pos += 1
            continue
        for kind, pattern in _TOKENS:  # noqa: B007  (`kind` is read after the loop breaks)
            m = pattern.match(line, pos)
            if m is not None and (m.end() == len(line) or line[m.end()].isspace()):
                break
        else:
            raise fail(TOOL, f"unknown or cut field {line[pos:pos + 40]!r}", line_no, line,
                       "pass the log tegrastats wrote, unedited")
        g = m.groups()
        if kind == "ram":
            sample.ram_used_mb, sample.ram_total_mb, sample.lfb = int(g[0]), int(g[1]), (int(g[2]), int(g[3]))
        elif kind == "swap":
            sample.swap_used_mb, sample.swap_total_mb, sample.swap_cached_mb = int(g[0]), int(g[1]), int(g[2])
        elif kind == "iram":
            sample.iram_used_kb, sample.iram_total_kb, sample.iram_lfb_kb = int(g[0]), int(g[1]), int(g[2])
        elif kind == "cpu":
            for cell in g[0].split(","):
                c = _CORE.fullmatch(cell.strip())
                if c is None:
                    raise fail(TOOL, f"unreadable CPU core {cell[:20]!r}", line_no, line)
                if c.group(1):
                    sample.cpus.append(CpuCore(float(c.group(1)), int(c.group(2))))
                elif c.group(3):
                    sample.cpus.append(CpuCore(float(c.group(3)), None))
                else:
                    sample.cpus.append(CpuCore(None, None))
        elif kind == "load":
            sample.loads[g[0]] = (float(g[1]), [int(f) for f in g[2].split(",")] if g[2] else [])
        elif kind == "mts":
            sample.mts = (int(g[0]), int(g[1]))
        elif kind == "temp":
            if float(g[1]) != _SENSOR_OFF_C:
                sample.temps_c[g[0]] = float(g[1])
        elif kind == "rail":
            sample.rails_mw[g[0]] = (int(g[1]), int(g[2]))
        elif kind == "clock":
            sample.clocks_mhz[g[0]] = int(g[1])
        pos = m.end()
    if sample.ram_used_mb is None:
        raise fail(TOOL, "line without a RAM field", line_no, line)
    return sample


def parse_tegrastats(text: str) -> TegraLog:
    text = clean_text(text)
    lines = list(numbered_lines(text))
    dropped = bool(text) and not text.endswith("\n")
    if dropped:
        lines = lines[:-1]
    samples = [_parse_line(line.strip(), n) for n, line in lines if _SAMPLE_START.match(line.strip())]
    if not samples and not dropped:
        raise fail_absent(TOOL, "samples (lines starting with 'RAM' or a timestamp and 'RAM')", last_line(text),
                          hint="was tegrastats running during the benchmark?")
    return TegraLog(samples, dropped)
