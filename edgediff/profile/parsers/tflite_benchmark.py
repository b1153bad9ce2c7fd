"""TFLite / LiteRT `benchmark_model` text output (binary on Android/Linux, the benchmark APK's logcat, MCU ports).

Handles the versions seen in the wild: with or without the `INFO: ` prefix, logcat prefixes, the parameter dump,
warm-up and measured `count=... avg=... std=...` lines, `Inference timings in us: ...` (and the TF 2.0-era
`Average inference timings in us: ...`), the memory lines (old `Peak memory footprint`, newer `Memory footprint
delta`, periodic-monitoring peak, VmRSS block), delegate lines and the op-profiling tables. One output may hold
several runs (e.g. an XNNPACK run then a GPU run); each becomes a BenchmarkRun.

The tool prints no median (only avg/min/max/std), so records from it carry median_ms=None and mean_ms=avg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    INT,
    NUM,
    ensure_not_cut,
    fail,
    full_match,
    rescale,
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
    rf"count=(?P<count>{INT})(?: first=(?P<first>{NUM}))?(?: curr=(?P<curr>{NUM}))?"
    rf"(?: min=(?P<min>{NUM}) max=(?P<max>{NUM}) avg=(?P<avg>{NUM}) std=(?P<std>{NUM}))?(?P<same>\(all same\))?"
)
_PARAM = re.compile(r"(?P<name>[A-Za-z#][^:\[\]]*?)\s*:\s*\[(?P<value>[^\]]*)\]")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{NUM}), First inference: (?P<first>{NUM}), "
    rf"Warmup \(avg\): (?P<warm>{NUM}), Inference \(avg\): (?P<inf>{NUM})"
)
_OLD_TIMINGS = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warm>{NUM}), Init: (?P<init>{NUM}), Inference: (?P<inf>{NUM})"
)
_RUNNING = re.compile(
    rf"Running benchmark for at least (?P<n>{INT}) iterations and at least (?P<min>{NUM}) seconds "
    rf"but terminate if exceeding (?P<max>{NUM}) seconds\."
)
_INIT_SESSION = re.compile(rf"Initialized session in (?P<ms>{NUM}) ?ms\.")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): (?P<mb>{NUM})")
_PEAK_OLD = re.compile(rf"Peak memory footprint \(MB\): init=(?P<init>{NUM}) overall=(?P<overall>{NUM})")
_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{NUM}) overall=(?P<overall>{NUM})"
)
_PEAK_MON = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{NUM})")
_MEM_ITEM = re.compile(rf"[-+] (?P<name>.+?)\s*: (?P<mb>{NUM}) MB")
_REPLACING = re.compile(
    rf"Replacing (?P<n>{INT}) out of (?P<total>{INT}) node\(s\) with delegate \((?P<delegate>[^)]+)\) node, "
    rf"yielding (?P<parts>{INT}) partitions(?: for the whole graph)?\."
)
_CREATED_DELEGATE = re.compile(r"Created TensorFlow Lite (?P<what>.*?)delegate for (?P<dev>[\w ]+)\.")
_GPU_KERNELS = re.compile(rf"Created (?P<n>{INT}) GPU delegate kernels\.")
_NODES_EXECUTED = re.compile(rf"Number of nodes executed: (?P<n>{INT})")
_NODES_OBSERVED = re.compile(rf"(?P<n>{INT}) nodes observed")
_TIMINGS_US = re.compile(r"Timings \(microseconds\): (?P<stat>.*)")
_MEMORY_BYTES = re.compile(r"Memory \(bytes\): (?P<stat>.*)")
_SECTION = re.compile(r"=+ (?P<name>[A-Za-z ]+?) =+")

_LOGCAT_TAGS = ("tflite", "TFLite", "tflite_benchmark")


def _stat(text: str, line_no: int, raw: str) -> RunStat:
    m = full_match(_STAT, text, TOOL, line_no, raw, "run statistics")
    f = {k: float(v) for k, v in m.groupdict().items() if v is not None and k not in ("count", "same")}
    return RunStat(count=int(m["count"]), all_same=bool(m["same"]), **f)


def _percent(cell: str, line_no: int, raw: str) -> float:
    cell = cell.strip()
    if not cell.endswith("%"):
        raise fail(TOOL, "expected a percentage cell", line_no, raw)
    return float(cell[:-1])


class _TableParser:
    """Tab-separated op tables whose header row names the columns, e.g. `[node type]  [start]  [first] ...`."""

    def __init__(self, header: str):
        self.columns = [c.strip().lower() for c in header.strip("\t ").split("\t")]

    def row(self, line: str, line_no: int) -> dict[str, str]:
        cells = line.strip("\n").lstrip("\t").split("\t")
        if len(cells) != len(self.columns):
            raise fail(TOOL, f"op table row has {len(cells)} cells, header has {len(self.columns)}", line_no, line,
                       "the table looks truncated; pass the complete output")
        return dict(zip(self.columns, (c.strip() for c in cells)))


def _op_row(cells: dict[str, str], line_no: int, raw: str) -> OpRow:
    try:
        return OpRow(
            node_type=cells["[node type]"],
            start_ms=float(cells["[start]"]) if "[start]" in cells else None,
            first_ms=float(cells["[first]"]),
            avg_ms=float(cells["[avg ms]"]),
            percent=_percent(cells["[%]"], line_no, raw),
            cdf_percent=_percent(cells["[cdf%]"], line_no, raw),
            mem_kb=float(cells["[mem kb]"]),
            times_called=int(cells["[times called]"]),
            name=cells["[name]"],
        )
    except (KeyError, ValueError) as exc:
        raise fail(TOOL, f"unreadable op table row ({exc})", line_no, raw) from None


def _node_type_row(cells: dict[str, str], line_no: int, raw: str) -> NodeTypeRow:
    try:
        return NodeTypeRow(
            node_type=cells["[node type]"],
            count=int(cells["[count]"]),
            avg_ms=float(cells["[avg ms]"]),
            avg_percent=_percent(cells["[avg %]"], line_no, raw),
            cdf_percent=_percent(cells["[cdf %]"], line_no, raw),
            mem_kb=float(cells["[mem kb]"]),
            times_called=int(cells["[times called]"]),
        )
    except (KeyError, ValueError) as exc:
        raise fail(TOOL, f"unreadable node-type summary row ({exc})", line_no, raw) from None


def parse_benchmark_model(text: str) -> list[BenchmarkRun]:
    """Parse benchmark_model output into one BenchmarkRun per invocation found in it."""
    ensure_not_cut(text, TOOL)
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
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = strip_level(strip_logcat(raw, _LOGCAT_TAGS))
        stripped = line.strip()
        if not stripped:
            table = None
            continue

        # --- op-profiling tables (tab-indented rows) -----------------------------------------------------------
        if line.startswith("\t") and profile is not None and section is not None:
            if table is None:
                if "[node type]" not in stripped.lower():
                    raise fail(TOOL, "op table row before its header", line_no, raw)
                table = _TableParser(line)
                continue
            cells = table.row(line, line_no)
            if section == "summary by node type":
                profile.by_node_type.append(_node_type_row(cells, line_no, raw))
            elif section == "run order":
                profile.run_order.append(_op_row(cells, line_no, raw))
            elif section == "top by computation time":
                profile.top_by_time.append(_op_row(cells, line_no, raw))
            continue
        if (m := _SECTION.fullmatch(stripped)) is not None:
            section, table = m["name"].strip().lower(), None
            if profile is None:  # README excerpts start at the table, without the block title
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
            if stripped.startswith("Number of nodes executed"):
                profile.nodes_executed = int(full_match(_NODES_EXECUTED, stripped, TOOL, line_no, raw, "nodes")["n"])
                continue
            if stripped.startswith("Timings (microseconds)"):
                m = full_match(_TIMINGS_US, stripped, TOOL, line_no, raw, "profile timings")
                profile.timings_us = _stat(m["stat"], line_no, raw)
                continue
            if stripped.startswith("Memory (bytes)"):
                m = full_match(_MEMORY_BYTES, stripped, TOOL, line_no, raw, "profile memory")
                profile.memory_bytes = _stat(m["stat"], line_no, raw)
                continue
            if stripped.endswith("nodes observed"):
                profile.nodes_observed = int(full_match(_NODES_OBSERVED, stripped, TOOL, line_no, raw, "nodes")["n"])
                continue

        # --- run boundaries ---------------------------------------------------------------------------------
        starts_run = stripped == "STARTING!" or stripped.startswith(
            ("Loaded model", "Created TensorFlow Lite", "Initialized session", "Running benchmark", "count=",
             "Min num runs", "Log parameter values")
        )
        if starts_run and run.complete:
            run = start_new_run()
        if stripped == "STARTING!":
            if run.params or run.phases or run.session_init_ms is not None:
                run = start_new_run()
            continue

        # --- timings -----------------------------------------------------------------------------------------
        if "Inference timings in us" in stripped and not stripped.startswith("Average"):
            if run.complete:
                if stripped == last_timing_line:  # some ports print the summary twice
                    continue
                run = start_new_run()
            m = full_match(_TIMINGS, stripped, TOOL, line_no, raw, "inference timings")
            run.init_us, run.first_inference_us = float(m["init"]), float(m["first"])
            run.warmup_avg_us, run.inference_avg_us = float(m["warm"]), float(m["inf"])
            last_timing_line = stripped
            profile = None
            continue
        if stripped.startswith("Average inference timings in us"):
            if run.complete:
                run = start_new_run()
            m = full_match(_OLD_TIMINGS, stripped, TOOL, line_no, raw, "inference timings")
            run.init_us, run.warmup_avg_us, run.inference_avg_us = float(m["init"]), float(m["warm"]), float(m["inf"])
            last_timing_line = stripped
            continue
        if stripped.startswith("count="):
            stat = _stat(stripped, line_no, raw)
            phase_count = len(run.phases)
            if run.warmup is None and phase_count <= 1:
                run.warmup = stat
            elif run.inference is None:
                run.inference = stat
            else:
                raise fail(TOOL, "a third run-statistics line in one benchmark run", line_no, raw)
            continue
        if stripped.startswith("Running benchmark for at least"):
            m = full_match(_RUNNING, stripped, TOOL, line_no, raw, "benchmark phase")
            run.phases.append({"min_runs": int(m["n"]), "min_secs": float(m["min"]), "max_secs": float(m["max"])})
            continue
        if stripped.startswith("Initialized session in"):
            run.session_init_ms = float(full_match(_INIT_SESSION, stripped, TOOL, line_no, raw, "session init")["ms"])
            continue

        # --- model, delegates ------------------------------------------------------------------------------------
        if stripped.startswith("Loaded model"):
            run.model_path = stripped[len("Loaded model"):].strip() or None
            continue
        if stripped.startswith("The input model file size"):
            run.model_size_mb = float(full_match(_MODEL_SIZE, stripped, TOOL, line_no, raw, "model size")["mb"])
            continue
        if stripped.startswith("Created TensorFlow Lite"):
            m = full_match(_CREATED_DELEGATE, stripped, TOOL, line_no, raw, "delegate")
            name = (m["what"].strip() or m["dev"].strip()).upper()
            run.delegates.append(name)
            continue
        if stripped.startswith("Replacing "):
            m = full_match(_REPLACING, stripped, TOOL, line_no, raw, "delegation")
            run.delegation.append({"delegate": m["delegate"], "nodes_delegated": int(m["n"]),
                                   "nodes_total": int(m["total"]), "partitions": int(m["parts"])})
            continue
        if "applied" in stripped.lower() and "delegate" in stripped and "model graph will be" in stripped:
            run.fully_delegated = "completely executed" in stripped
            continue
        if stripped.startswith("Created ") and "GPU delegate kernels" in stripped:
            run.gpu_delegate_kernels = int(full_match(_GPU_KERNELS, stripped, TOOL, line_no, raw, "GPU kernels")["n"])
            continue

        # --- memory -------------------------------------------------------------------------------------------
        if stripped.startswith("Peak memory footprint (MB)"):
            m = full_match(_PEAK_OLD, stripped, TOOL, line_no, raw, "peak memory")
            run.peak_memory_init_mb, run.peak_memory_overall_mb = float(m["init"]), float(m["overall"])
            continue
        if stripped.startswith("Memory footprint delta"):
            m = full_match(_DELTA, stripped, TOOL, line_no, raw, "memory delta")
            run.memory_delta_init_mb, run.memory_delta_overall_mb = float(m["init"]), float(m["overall"])
            continue
        if stripped.startswith("Overall peak memory footprint"):
            run.peak_memory_monitored_mb = float(full_match(_PEAK_MON, stripped, TOOL, line_no, raw, "peak")["mb"])
            continue
        if stripped.startswith("Memory status at the end of"):  # the tool spells it "exeution"
            memory_block = True
            continue
        if memory_block and stripped[:1] in "-+":
            m = full_match(_MEM_ITEM, stripped, TOOL, line_no, raw, "memory status")
            run.memory_at_end_mb[m["name"].strip()] = float(m["mb"])
            continue

        # --- parameter dump and the rest ------------------------------------------------------------------------
        if stripped.startswith("Duplicate flags"):
            run.warnings.append(stripped)
            continue
        if not line[:1].isspace() and stripped.endswith("]") and ": [" in stripped.replace(" : [", ": ["):
            m = full_match(_PARAM, stripped, TOOL, line_no, raw, "parameter")
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
    if threads is not None:
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
        raise fail(TOOL, "no 'Inference timings in us' summary line", hint="the output looks truncated or the "
                   "benchmark failed before finishing; check the tool's exit status and full log")
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
