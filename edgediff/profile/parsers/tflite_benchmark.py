"""TFLite / LiteRT `benchmark_model` text output (binary on Android/Linux, the benchmark APK's logcat, MCU ports).

Handles the versions seen in the wild: with or without the `INFO: ` prefix, logcat and glog prefixes, the parameter
dump, warm-up and measured `count=... avg=... std=...` lines, `Inference timings in us: ...` (and the older
`Average inference timings in us: Warmup: .., Init: .., Inference|no stats: ..` of TF 2.0 and TF 1.x, and TF 1.x
classic's `Warmup: .., no stats: .., with stats: ..`), the phase lines of every version (`for at least N iterations
... but terminate if exceeding`, `for at least N iterations and at least S seconds`, `for N iterations`, `for max N
iterations, max S seconds`), the memory lines (old `Peak memory footprint`, newer `Memory footprint delta`,
periodic-monitoring peak, VmRSS block), delegate lines and the op-profiling tables, tab-separated as printed or
space-aligned as copied from a web page. One output may hold several runs (e.g. an XNNPACK run then a GPU run);
each becomes a BenchmarkRun.

The tool prints no median (only avg/min/max/std), so records from it carry median_ms=None and mean_ms=avg.
"""

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
    full_match,
    mark_end,
    numbered_lines,
    rescale,
    strip_glog,
    strip_level,
    strip_logcat,
)
from edgediff.profile.record import OpTime, ProfileRecord

TOOL = "benchmark_model"


@dataclass
class RunStat:
    """One `tensorflow::Stat` line, in the tool's unit (microseconds for run times, bytes for memory)."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    all_same: bool = False


@dataclass
class OpRow:
    """A row of the `Run Order` / `Top by Computation Time` tables (times in ms)."""

    node_type: str
    first_ms: float
    avg_ms: float
    percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int
    name: str
    start_ms: float | None = None


@dataclass
class NodeTypeRow:
    """A row of `Summary by node type`."""

    node_type: str
    count: int
    avg_ms: float
    avg_percent: float
    cdf_percent: float
    mem_kb: float
    times_called: int


@dataclass
class OpProfile:
    """One op-profiling block (`Profiling Info for Benchmark Initialization` or `... Regular Benchmark Runs`)."""

    title: str
    run_order: list[OpRow] = field(default_factory=list)
    top_by_time: list[OpRow] = field(default_factory=list)
    by_node_type: list[NodeTypeRow] = field(default_factory=list)
    nodes_executed: int | None = None
    timings_us: RunStat | None = None
    memory_bytes: RunStat | None = None
    nodes_observed: int | None = None

    @property
    def is_init(self) -> bool:
        return "initialization" in self.title.lower()


@dataclass
class BenchmarkRun:
    """Everything one benchmark_model invocation printed."""

    params: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model_path: str | None = None
    model_size_mb: float | None = None
    session_init_ms: float | None = None
    phases: list[dict[str, float]] = field(default_factory=list)  # "Running benchmark for at least ..." lines
    warmup: RunStat | None = None
    inference: RunStat | None = None
    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    peak_memory_init_mb: float | None = None  # older tools: "Peak memory footprint (MB): init= overall="
    peak_memory_overall_mb: float | None = None
    memory_delta_init_mb: float | None = None  # newer tools: "Memory footprint delta from the start ..."
    memory_delta_overall_mb: float | None = None
    peak_memory_monitored_mb: float | None = None
    memory_at_end_mb: dict[str, float] = field(default_factory=dict)
    delegates: list[str] = field(default_factory=list)
    delegation: list[dict[str, object]] = field(default_factory=list)
    fully_delegated: bool | None = None
    gpu_delegate_kernels: int | None = None
    profiles: list[OpProfile] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.inference_avg_us is not None


_STAT = re.compile(
    rf"count=(?P<count>{LINT})(?: first=(?P<first>{LNUM}))?(?: curr=(?P<curr>{LNUM}))?"
    rf"(?: min=(?P<min>{LNUM}) max=(?P<max>{LNUM}) avg=(?P<avg>{LNUM}) std=(?P<std>{LNUM}))?(?P<same>\(all same\))?"
)
_PARAM = re.compile(r"(?P<name>[A-Za-z#][^:\[\]]*):[ \t]*\[(?P<value>[^\]]*)\]")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{LNUM}), First inference: (?P<first>{LNUM}), "
    rf"Warmup \(avg\): (?P<warm>{LNUM}), Inference \(avg\): (?P<inf>{LNUM})"
)
# TF 2.0 `Warmup, Init, Inference`; TF 1.x Lite `Warmup, Init, no stats`; TF 1.x classic `Warmup, no stats, with stats`
_OLD_TIMINGS = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warm>{LNUM}), (?:Init: (?P<init>{LNUM}), )?"
    rf"(?:Inference|no stats): (?P<inf>{LNUM})(?:, with stats: (?P<stats>{LNUM}))?"
)
_RUNNING = re.compile(
    rf"Running benchmark for (?:at least (?P<n>{LINT}) iterations and at least (?P<min>{LNUM}) seconds"
    rf"(?: but terminate if exceeding (?P<max>{LNUM}) seconds)?"
    rf"|(?P<n_only>{LINT}) iterations"
    rf"|max (?P<n_max>{LINT}) iterations, max (?P<max_s>{LNUM}) seconds (?:with|without) detailed stat logging, "
    rf"with {LNUM}s sleep between inferences)\.?"
)
_INIT_SESSION = re.compile(rf"Initialized session in (?P<ms>{LNUM}) ?ms\.?")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): (?P<mb>{LNUM})")
_PEAK_OLD = re.compile(rf"Peak memory footprint \(MB\): init=(?P<init>{LNUM}) overall=(?P<overall>{LNUM})")
_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{LNUM}) overall=(?P<overall>{LNUM})"
)
_PEAK_MON = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{LNUM})")
_MEM_ITEM = re.compile(rf"[-+] (?P<name>[^:]+): (?P<mb>{LNUM}) MB")
_REPLACING = re.compile(
    rf"Replacing (?P<n>{LINT}) out of (?P<total>{LINT}) node\(s\) with delegate \((?P<delegate>[^)]+)\) node, "
    rf"yielding (?P<parts>{LINT}) partitions?(?: for [^.]*)?\.?"
)
_CREATED_DELEGATE = re.compile(r"Created TensorFlow Lite (?P<what>(?:\w+ )*)delegate for (?P<dev>[\w ]+)\.?")
_GPU_KERNELS = re.compile(rf"Created (?P<n>{LINT}) GPU delegate kernels\.?")
_NODES_EXECUTED = re.compile(rf"Number of nodes executed: (?P<n>{LINT})")
_NODES_OBSERVED = re.compile(rf"(?P<n>{LINT}) nodes observed")
_TIMINGS_US = re.compile(r"Timings \(microseconds\): (?P<stat>.*)")
_MEMORY_BYTES = re.compile(r"Memory \(bytes\): (?P<stat>.*)")
_SECTION = re.compile(r"=+ (?P<name>[A-Za-z ]+?) =+")
_HEADER_CELL = re.compile(r"\[[^\]\t]*\]")
_NUMBER_START = re.compile(r"[-+]?[\d.,]|(?i:nan|inf|-nan|-inf)")

_LOGCAT_TAGS = ("tflite", "TFLite", "tflite_benchmark")
# Lines carrying these are figure lines: the output must not stop in the middle of one.
_FIGURE_LABELS = ("count=", "timings in us", "footprint", "Initialized session", "file size", "nodes", "Timings (",
                  "Memory (bytes)", " MB", "%")


def _stat(text: str, line_no: int, raw: str, nums: Numbers) -> RunStat:
    m = full_match(_STAT, text, TOOL, line_no, raw, "run statistics")
    f = {k: nums.f(v, line_no, raw) for k, v in m.groupdict().items() if v is not None and k not in ("count", "same")}
    return RunStat(count=nums.i(m["count"], line_no, raw), all_same=bool(m["same"]), **f)


def _percent(cell: str, line_no: int, raw: str, nums: Numbers) -> float:
    cell = cell.strip()
    if not cell.endswith("%"):
        raise fail(TOOL, "expected a percentage cell", line_no, raw)
    return nums.f(cell[:-1], line_no, raw)


class _TableParser:
    """Op tables whose header row names the columns, e.g. `[node type]  [start]  [first] ...`: tab-separated as
    the tool prints them, or space-aligned (tabs lost in a copy from a web page or terminal)."""

    def __init__(self, header: str):
        self.tabs = "\t" in header.strip(" ")
        if self.tabs:
            self.columns = [c.strip().lower() for c in header.strip("\t ").split("\t")]
            self.spaced = None
        else:
            self.columns = [c.lower() for c in _HEADER_CELL.findall(header)]
            cells = []
            for col in self.columns:
                if col == "[node type]":
                    cells.append(r"\s*(?P<c0>\S.*?)")
                elif col == "[name]":
                    cells.append(r"(?:\s+(?P<cname>.+?))?")
                else:
                    cells.append(rf"\s+(?P<c{len(cells)}>{LNUM}%?)")
            self.spaced = re.compile("".join(cells) + r"\s*")

    def row(self, line: str, line_no: int) -> dict[str, str] | None:
        """The row's cells by column; None for a space-aligned line that is not a row (the table ended)."""
        if self.spaced is not None:
            m = self.spaced.fullmatch(line)
            if m is None:
                return None
            values = [m[f"c{i}"] if col != "[name]" else (m["cname"] or "") for i, col in enumerate(self.columns)]
            return dict(zip(self.columns, values))
        cells = line.strip("\n").lstrip("\t").split("\t")
        if len(cells) != len(self.columns):
            raise fail(TOOL, f"op table row has {len(cells)} cells, header has {len(self.columns)}", line_no, line,
                       "the table looks truncated; pass the complete output")
        return dict(zip(self.columns, (c.strip() for c in cells)))


def _op_row(cells: dict[str, str], line_no: int, raw: str, nums: Numbers) -> OpRow:
    try:
        return OpRow(
            node_type=cells["[node type]"],
            start_ms=nums.f(cells["[start]"], line_no, raw) if "[start]" in cells else None,
            first_ms=nums.f(cells["[first]"], line_no, raw),
            avg_ms=nums.f(cells["[avg ms]"], line_no, raw),
            percent=_percent(cells["[%]"], line_no, raw, nums),
            cdf_percent=_percent(cells["[cdf%]"], line_no, raw, nums),
            mem_kb=nums.f(cells["[mem kb]"], line_no, raw),
            times_called=nums.i(cells["[times called]"], line_no, raw),
            name=cells["[name]"],
        )
    except KeyError as exc:
        raise fail(TOOL, f"op table without a {exc} column", line_no, raw) from None


def _node_type_row(cells: dict[str, str], line_no: int, raw: str, nums: Numbers) -> NodeTypeRow:
    try:
        return NodeTypeRow(
            node_type=cells["[node type]"],
            count=nums.i(cells["[count]"], line_no, raw),
            avg_ms=nums.f(cells["[avg ms]"], line_no, raw),
            avg_percent=_percent(cells["[avg %]"], line_no, raw, nums),
            cdf_percent=_percent(cells["[cdf %]"], line_no, raw, nums),
            mem_kb=nums.f(cells["[mem kb]"], line_no, raw),
            times_called=nums.i(cells["[times called]"], line_no, raw),
        )
    except KeyError as exc:
        raise fail(TOOL, f"node-type summary without a {exc} column", line_no, raw) from None


def _figure(stripped: str, label: str) -> bool:
    """`label` is followed by a number: a figure line (prose that merely starts with the label is not)."""
    return stripped.startswith(label) and _NUMBER_START.match(stripped[len(label):].lstrip()) is not None


def parse_benchmark_model(text: str) -> list[BenchmarkRun]:
    """Parse benchmark_model output into one BenchmarkRun per invocation found in it."""
    text = clean_text(text)
    ensure_not_cut(text, TOOL, _FIGURE_LABELS)
    nums = Numbers(text, TOOL)
    runs: list[BenchmarkRun] = []
    run = BenchmarkRun()
    profile: OpProfile | None = None
    section: str | None = None
    table: _TableParser | None = None
    memory_block = False
    last_timing_line: str | None = None

    def start_new_run() -> BenchmarkRun:
        nonlocal profile, section, table, memory_block
        profile, section, table, memory_block = None, None, None, False
        runs.append(BenchmarkRun())
        return runs[-1]

    runs.append(run)
    for line_no, raw in numbered_lines(text):
        line = strip_level(strip_logcat(strip_glog(raw), _LOGCAT_TAGS))
        stripped = line.strip()
        if not stripped:
            table = None
            continue
        mark_end(run, (line_no, raw))

        # --- op-profiling tables ---------------------------------------------------------------------------------
        if profile is not None and section is not None:
            if table is None and line[:1] in "\t " and "[node type]" in stripped.lower():
                table = _TableParser(line)
                continue
            if table is not None and (not table.tabs or line.startswith("\t")):
                cells = table.row(line, line_no)
                if cells is not None:
                    if section == "summary by node type":
                        profile.by_node_type.append(_node_type_row(cells, line_no, raw, nums))
                    elif section == "run order":
                        profile.run_order.append(_op_row(cells, line_no, raw, nums))
                    elif section == "top by computation time":
                        profile.top_by_time.append(_op_row(cells, line_no, raw, nums))
                    continue
                table = None
            elif line.startswith("\t") and table is None and "[" not in stripped:
                raise fail(TOOL, "op table row before its header", line_no, raw)
        if (m := _SECTION.fullmatch(stripped)) is not None:
            section, table = m["name"].strip().lower(), None
            if profile is None:  # README excerpts and TF 1.x start at the table, without the block title
                profile = OpProfile(title="Operator-wise Profiling Info for Regular Benchmark Runs")
                run.profiles.append(profile)
            continue
        if stripped.endswith("Profiling Info for Benchmark Initialization:") or stripped.endswith(
            "Profiling Info for Regular Benchmark Runs:"
        ):
            profile = OpProfile(title=stripped.rstrip(":"))
            run.profiles.append(profile)
            section, table = None, None
            continue
        if profile is not None:
            if _figure(stripped, "Number of nodes executed:"):
                profile.nodes_executed = nums.i(
                    full_match(_NODES_EXECUTED, stripped, TOOL, line_no, raw, "nodes")["n"], line_no, raw)
                continue
            if stripped.startswith("Timings (microseconds): count="):
                m = full_match(_TIMINGS_US, stripped, TOOL, line_no, raw, "profile timings")
                profile.timings_us = _stat(m["stat"], line_no, raw, nums)
                continue
            if stripped.startswith("Memory (bytes): count="):
                m = full_match(_MEMORY_BYTES, stripped, TOOL, line_no, raw, "profile memory")
                profile.memory_bytes = _stat(m["stat"], line_no, raw, nums)
                continue
            if stripped.endswith(" nodes observed") and stripped[:1].isdigit():
                profile.nodes_observed = nums.i(
                    full_match(_NODES_OBSERVED, stripped, TOOL, line_no, raw, "nodes")["n"], line_no, raw)
                continue

        # --- run boundaries ---------------------------------------------------------------------------------
        starts_run = stripped == "STARTING!" or stripped.startswith(
            ("Loaded model", "Created TensorFlow Lite", "Initialized session", "Running benchmark", "count=",
             "Min num runs", "Log parameter values")
        )
        if starts_run and run.complete:
            run = start_new_run()
            mark_end(run, (line_no, raw))
        if stripped == "STARTING!":
            if run.params or run.phases or run.session_init_ms is not None:
                run = start_new_run()
                mark_end(run, (line_no, raw))
            continue

        # --- timings -----------------------------------------------------------------------------------------
        if stripped.startswith("Inference timings in us:"):
            if run.complete:
                if stripped == last_timing_line:  # some ports print the summary twice
                    continue
                run = start_new_run()
                mark_end(run, (line_no, raw))
            m = full_match(_TIMINGS, stripped, TOOL, line_no, raw, "inference timings")
            run.init_us, run.first_inference_us = nums.f(m["init"], line_no, raw), nums.f(m["first"], line_no, raw)
            run.warmup_avg_us, run.inference_avg_us = nums.f(m["warm"], line_no, raw), nums.f(m["inf"], line_no, raw)
            last_timing_line = stripped
            profile = None
            continue
        if stripped.startswith("Average inference timings in us:"):
            if run.complete:
                run = start_new_run()
                mark_end(run, (line_no, raw))
            m = full_match(_OLD_TIMINGS, stripped, TOOL, line_no, raw, "inference timings")
            run.init_us = nums.f(m["init"], line_no, raw) if m["init"] else None
            run.warmup_avg_us, run.inference_avg_us = nums.f(m["warm"], line_no, raw), nums.f(m["inf"], line_no, raw)
            last_timing_line = stripped
            continue
        if stripped.startswith("count="):
            stat = _stat(stripped, line_no, raw, nums)
            phase_count = len(run.phases)
            if run.warmup is None and phase_count <= 1:
                run.warmup = stat
            elif run.inference is None:
                run.inference = stat
            elif phase_count < 3:  # TF 1.x classic's third run (with detailed stats) comes after a third phase line
                raise fail(TOOL, "a third run-statistics line in one benchmark run", line_no, raw)
            continue
        if stripped.startswith("Running benchmark for "):
            m = full_match(_RUNNING, stripped, TOOL, line_no, raw, "benchmark phase")
            phase = {"min_runs": m["n"] or m["n_only"], "min_secs": m["min"], "max_secs": m["max"] or m["max_s"],
                     "max_runs": m["n_max"]}
            run.phases.append({k: (nums.i(v, line_no, raw) if k.endswith("runs") else nums.f(v, line_no, raw))
                               for k, v in phase.items() if v is not None})
            continue
        if _figure(stripped, "Initialized session in"):
            run.session_init_ms = nums.f(
                full_match(_INIT_SESSION, stripped, TOOL, line_no, raw, "session init")["ms"], line_no, raw)
            continue

        # --- model, delegates (names, not figures: a line of another shape is skipped) ------------------------------
        if stripped.startswith("Loaded model"):
            run.model_path = stripped[len("Loaded model"):].strip() or None
            continue
        if _figure(stripped, "The input model file size (MB):"):
            run.model_size_mb = nums.f(
                full_match(_MODEL_SIZE, stripped, TOOL, line_no, raw, "model size")["mb"], line_no, raw)
            continue
        if (m := _CREATED_DELEGATE.fullmatch(stripped)) is not None:
            run.delegates.append((m["what"].strip() or m["dev"].strip()).upper())
            continue
        if (m := _REPLACING.fullmatch(stripped)) is not None:
            run.delegation.append({"delegate": m["delegate"], "nodes_delegated": nums.i(m["n"], line_no, raw),
                                   "nodes_total": nums.i(m["total"], line_no, raw),
                                   "partitions": nums.i(m["parts"], line_no, raw)})
            continue
        if "applied" in stripped.lower() and "delegate" in stripped and "model graph will be" in stripped:
            run.fully_delegated = "completely executed" in stripped
            continue
        if (m := _GPU_KERNELS.fullmatch(stripped)) is not None:
            run.gpu_delegate_kernels = nums.i(m["n"], line_no, raw)
            continue

        # --- memory -------------------------------------------------------------------------------------------
        if stripped.startswith("Peak memory footprint (MB):"):
            m = full_match(_PEAK_OLD, stripped, TOOL, line_no, raw, "peak memory")
            run.peak_memory_init_mb = nums.f(m["init"], line_no, raw)
            run.peak_memory_overall_mb = nums.f(m["overall"], line_no, raw)
            continue
        if stripped.startswith("Memory footprint delta from the start of the tool (MB):"):
            m = full_match(_DELTA, stripped, TOOL, line_no, raw, "memory delta")
            run.memory_delta_init_mb = nums.f(m["init"], line_no, raw)
            run.memory_delta_overall_mb = nums.f(m["overall"], line_no, raw)
            continue
        if _figure(stripped, "Overall peak memory footprint (MB) via periodic monitoring:"):
            run.peak_memory_monitored_mb = nums.f(
                full_match(_PEAK_MON, stripped, TOOL, line_no, raw, "peak")["mb"], line_no, raw)
            continue
        if stripped.startswith("Memory status at the end of"):  # the tool spells it "exeution"
            memory_block = True
            continue
        if memory_block and stripped[:2] in ("- ", "+ "):
            m = full_match(_MEM_ITEM, stripped, TOOL, line_no, raw, "memory status")
            run.memory_at_end_mb[m["name"].strip()] = nums.f(m["mb"], line_no, raw)
            continue

        # --- parameter dump and the rest ------------------------------------------------------------------------
        if stripped.startswith("Duplicate flags"):
            run.warnings.append(stripped)
            continue
        if not line[:1].isspace() and stripped.endswith("]") and (m := _PARAM.fullmatch(stripped)) is not None:
            run.params[m["name"].strip()] = m["value"]
            continue

    empty = BenchmarkRun()
    return [r for r in runs if r != empty]


def _ms(us: float | None) -> float | None:
    return None if us is None else rescale(us, "0.001")


def _param(run: BenchmarkRun, *names: str) -> str | None:
    for name in names:
        if name in run.params and run.params[name] != "":
            return run.params[name]
    return None


def run_settings(run: BenchmarkRun) -> dict[str, object]:
    """The settings that produced the numbers, as far as the output tells them."""
    settings: dict[str, object] = {}
    threads = _param(run, "Num threads", "#threads used for CPU inference")
    if threads is not None and re.fullmatch(r"-?\d{1,6}", threads.strip()):  # a garbled value is no setting
        settings["num_threads"] = int(threads)
    flags = {"gpu": "Use gpu", "nnapi": "Use nnapi", "xnnpack": "Use xnnpack", "hexagon": "Use Hexagon"}
    used = [d for d, p in flags.items() if _param(run, p) in ("1", "true")]
    if run.delegates:
        settings["delegates"] = list(dict.fromkeys(run.delegates))
    elif used:
        settings["delegates"] = [d.upper() for d in used]
    if _param(run, "Enable op profiling") is not None:
        settings["op_profiling"] = _param(run, "Enable op profiling") in ("1", "true")
    if run.model_path:
        settings["graph"] = run.model_path
    if run.params:
        settings["params"] = dict(run.params)
    return settings


def to_record(run: BenchmarkRun, *, component: str, backend: str = "litert", precision: str = "unknown",
              device: str = "unknown", tool_version: str | None = None) -> ProfileRecord:
    """One ProfileRecord from a parsed run; fails if the run has no timing summary (truncated output)."""
    if not run.complete:
        raise fail_absent(TOOL, "'Inference timings in us' summary line", end_of(run), hint="the output looks "
                          "truncated or the benchmark failed before finishing; check the tool's exit status and log")
    regular = next((p for p in run.profiles if not p.is_init), None)
    ops = [OpTime(r.node_type, r.avg_ms, r.avg_percent, r.count) for r in regular.by_node_type] if regular else []
    if run.peak_memory_monitored_mb is not None:
        peak, source = run.peak_memory_monitored_mb, "periodic monitoring"
    elif run.peak_memory_overall_mb is not None:
        peak, source = run.peak_memory_overall_mb, "tool's 'Peak memory footprint' (max-RSS growth since start)"
    else:
        peak, source = None, None
    extra: dict[str, object] = {
        "inference_avg_us": run.inference_avg_us,
        "warmup_avg_us": run.warmup_avg_us,
    }
    if run.inference is not None and run.inference.std is not None:
        extra["std_ms"] = _ms(run.inference.std)
    for key in ("model_size_mb", "session_init_ms", "memory_delta_init_mb", "memory_delta_overall_mb",
                "peak_memory_init_mb", "fully_delegated", "gpu_delegate_kernels"):
        if getattr(run, key) is not None:
            extra[key] = getattr(run, key)
    if source:
        extra["peak_memory_source"] = source
    if run.memory_at_end_mb:
        extra["memory_at_end_mb"] = dict(run.memory_at_end_mb)
    if run.delegation:
        extra["delegation"] = list(run.delegation)
    if run.warnings:
        extra["warnings"] = list(run.warnings)
    return ProfileRecord(
        component=component, backend=backend, precision=precision, device=device, tool=TOOL,
        tool_version=tool_version, settings=run_settings(run),
        warmup=run.warmup.count if run.warmup else None,
        runs=run.inference.count if run.inference else None,
        median_ms=None,
        mean_ms=_ms(run.inference_avg_us),
        min_ms=_ms(run.inference.min if run.inference and run.inference.min is not None else None),
        max_ms=_ms(run.inference.max if run.inference and run.inference.max is not None else None),
        init_ms=_ms(run.init_us),
        first_inference_ms=_ms(run.first_inference_us),
        peak_memory_mb=peak,
        ops=ops,
        extra=extra,
    )
