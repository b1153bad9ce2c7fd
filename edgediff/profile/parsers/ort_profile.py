"""ONNX Runtime profiler output (`SessionOptions.enable_profiling`, `onnxruntime_perf_test -p`): a Chrome-trace
JSON array of Session events (model loading, session initialization, one `model_run` per inference) and Node
events (`<node>_kernel_time`, plus `_fence_before/_after` markers in older versions, which carry no time)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgediff.profile.parsers._common import (
    clean_text,
    end_of,
    fail,
    fail_absent,
    finite,
    last_line,
    load_json_records,
    mark_end,
    summarize_ms,
)
from edgediff.profile.record import OpTime, ProfileRecord

TOOL = "ort-profile"
_MEM_ARGS = ("mem_in_use_peak", "mem_bytes_in_use", "mem_arena_held", "mem_bytes_requested_in_use")


@dataclass
class NodeTiming:
    """All kernel_time events of one graph node."""

    name: str
    op_name: str
    provider: str | None
    durations_us: list[float] = field(default_factory=list)
    output_size: int | None = None
    activation_size: int | None = None
    parameter_size: int | None = None
    input_type_shape: list | None = None
    output_type_shape: list | None = None
    memory: dict[str, int] = field(default_factory=dict)  # max over calls of the mem_* args (ORT >= 1.2x)


@dataclass
class OrtProfile:
    model_loading_us: float | None = None
    session_initialization_us: float | None = None
    run_us: list[float] = field(default_factory=list)  # one per model_run event (warm-up runs included)
    executor_us: list[float] = field(default_factory=list)  # SequentialExecutor::Execute
    nodes: dict[str, NodeTiming] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)
    complete_file: bool = True


def _int_arg(args: dict, key: str) -> int | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise fail(TOOL, f"node arg {key!r} is not an integer: {str(value)[:40]!r}") from None


def parse_ort_profile(text: str) -> OrtProfile:
    records = load_json_records(text, TOOL, allow_unclosed=False)
    out = OrtProfile(complete_file=records.closed)
    mark_end(out, last_line(clean_text(text)))
    for index, ev in enumerate(records.items):
        where = f" (line {records.lines[index]})" if records.lines else ""
        if not {"cat", "name", "dur"} <= ev.keys():
            raise fail(TOOL, f"trace event{where} without cat/name/dur: {str(ev)[:120]}")
        dur = ev["dur"]
        if not finite(dur) or dur < 0:
            raise fail(TOOL, f"event {str(ev['name'])[:80]!r}{where} has no usable duration: {str(dur)[:40]!r}",
                       hint="pass the JSON file the profiler wrote, unedited")
        if isinstance(ev.get("pid"), int) and not isinstance(ev["pid"], bool):
            out.pids.add(ev["pid"])
        name, cat = str(ev["name"]), ev["cat"]
        if cat == "Session":
            if name.startswith("model_loading"):
                out.model_loading_us = float(dur)
            elif name == "session_initialization":
                out.session_initialization_us = float(dur)
            elif name == "model_run":
                out.run_us.append(float(dur))
            elif name.endswith("::Execute"):
                out.executor_us.append(float(dur))
        elif cat == "Node":
            if not name.endswith("_kernel_time"):
                continue  # _fence_before / _fence_after markers
            args: dict = ev["args"] if isinstance(ev.get("args"), dict) else {}
            node_name = name[: -len("_kernel_time")]
            node = out.nodes.get(node_name)
            if node is None:
                provider = args.get("provider")
                node = out.nodes[node_name] = NodeTiming(
                    name=node_name, op_name=str(args.get("op_name", "?")),
                    provider=str(provider) if provider is not None else None,
                    output_size=_int_arg(args, "output_size"), activation_size=_int_arg(args, "activation_size"),
                    parameter_size=_int_arg(args, "parameter_size"), input_type_shape=args.get("input_type_shape"),
                    output_type_shape=args.get("output_type_shape"))
            node.durations_us.append(float(dur))
            for key in _MEM_ARGS:
                value = _int_arg(args, key)
                if value is not None:
                    node.memory[key] = max(value, node.memory.get(key, value))
    if not records.items:
        raise fail_absent(TOOL, "trace events", end_of(out), hint="pass the JSON file the profiler wrote")
    return out


def op_table(profile: OrtProfile) -> list[OpTime]:
    """Per op type: average ms per inference, share of kernel time, number of nodes of that type."""
    per_op: dict[str, list[NodeTiming]] = {}
    for node in profile.nodes.values():
        per_op.setdefault(node.op_name, []).append(node)
    runs = max(len(profile.run_us), max((len(n.durations_us) for n in profile.nodes.values()), default=0), 1)
    total = sum(sum(n.durations_us) for n in profile.nodes.values()) or 1.0
    rows = [
        OpTime(op, sum(sum(n.durations_us) for n in nodes) / runs / 1e3,
               100.0 * sum(sum(n.durations_us) for n in nodes) / total, len(nodes))
        for op, nodes in per_op.items()
    ]
    return sorted(rows, key=lambda r: r.ms, reverse=True)


def to_record(profile: OrtProfile, *, component: str, backend: str = "onnxruntime", precision: str = "unknown",
              device: str = "unknown", tool_version: str | None = None) -> ProfileRecord:
    if not profile.run_us:
        raise fail_absent(TOOL, "model_run events, so no per-inference latency", end_of(profile),
                          hint="profile at least one run (the file holds only session or node events)")
    stats = summarize_ms([us / 1e3 for us in profile.run_us])
    init_parts = [x for x in (profile.model_loading_us, profile.session_initialization_us) if x is not None]
    peak = max((n.memory.get("mem_in_use_peak", 0) for n in profile.nodes.values()), default=0)
    extra: dict[str, object] = {"model_run_count_includes_warmup": True}
    if profile.model_loading_us is not None:
        extra["model_loading_ms"] = profile.model_loading_us / 1e3
    if profile.session_initialization_us is not None:
        extra["session_initialization_ms"] = profile.session_initialization_us / 1e3
    if peak:
        extra["arena_in_use_peak_mb"] = peak / 2**20
    if not profile.complete_file:
        extra["incomplete_file"] = True
    return ProfileRecord(
        component=component, backend=backend, precision=precision, device=device, tool=TOOL,
        tool_version=tool_version, runs=stats.count, median_ms=stats.median, p90_ms=stats.p90, mean_ms=stats.mean,
        min_ms=stats.min, max_ms=stats.max, init_ms=sum(init_parts) / 1e3 if init_parts else None,
        first_inference_ms=profile.run_us[0] / 1e3, ops=op_table(profile), extra=extra,
    )
