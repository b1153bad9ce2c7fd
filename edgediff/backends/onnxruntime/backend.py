"""ONNX Runtime backend: torch.export-based ONNX export, graph clean-up, CPU sessions and ORT's op profiler.

The exported graph is portable ONNX (it also feeds TensorRT on Jetson); ORT's own hardware-specific
optimisations are applied when a session is created, not baked into the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgediff.backends.base import Artifact, Backend, register
from edgediff.errors import BackendUnavailable, RecipeError, UnsupportedError
from edgediff.model.components import Component
from edgediff.profile.record import OpTime
from edgediff.runtime.sessions import SessionOptions

EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf cannot hold more than 2 GB in one file
SHARD_BYTES = 1536 * 1024**2  # external weights go to files of at most 1.5 GiB: every file of a bundle < 2 GB


@dataclass
class OnnxRuntimeOptions:
    opset: int = 18
    threads: int = 0  # 0 = ORT's default (all physical cores)
    optimization_level: str = "all"  # "disable", "basic", "extended", "all"
    fuse: bool = True  # apply edgediff's graph rewrites (see edgediff.backends.onnxruntime.graph)
    contrib_ops: bool = True  # allow ORT-only fused ops (MultiHeadAttention); false = portable ONNX (TensorRT)
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    shard_bytes: int = SHARD_BYTES  # largest external-data file; weights over it are split into several


@register
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    Options = OnnxRuntimeOptions
    supported_precisions = ("fp32", "fp16", "int8")
    suffix = ".onnx"

    def check_available(self) -> None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"the onnxruntime backend needs onnx and onnxruntime: pip install "
                                     f"onnx onnxscript onnxruntime ({exc})") from None

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def lower(self, component: Component, options: OnnxRuntimeOptions, precision: str, out_dir: Path) -> Artifact:
        import torch

        from edgediff.model.sizes import sizes_meta, torch_dynamic_shapes

        path = out_dir / f"{component.name}.onnx"
        args = component.example_args(0)
        try:
            with torch.no_grad(), quiet_exporter():
                program = torch.onnx.export(
                    component.module, args, dynamo=True, opset_version=options.opset,
                    input_names=[s.name for s in component.inputs],
                    output_names=[s.name for s in component.outputs],
                    optimize=not options.fuse, verbose=False,  # fuse: onnx_graph.optimize cleans up, faster
                    # several sizes: one graph with dynamic spatial axes (measured faster than a graph per size)
                    dynamic_shapes=torch_dynamic_shapes(component),
                )
        except Exception as exc:  # the exporter raises many types; turn them into one teachable error
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise UnsupportedError(
                f"the onnxruntime backend cannot export component '{component.name}': {first} "
                "(run with --debug for the exporter's trace)"
            ) from exc
        import edgediff.backends.onnxruntime.graph as onnx_graph

        graph_meta: dict[str, Any] = {}
        if options.fuse:
            # Contrib ops only in fp32: the fp16/int8 converters below do not know com.microsoft ops.
            model, graph_report = onnx_graph.optimize(program.model,
                                                      contrib_ops=options.contrib_ops and precision == "fp32")
            graph_meta = {"graph": graph_report.to_dict(), "ort_only_ops": graph_report.contrib_ops}
            if precision != "fp32":
                model = onnx_graph.to_proto(model)
        else:
            model = program.model_proto
        int8: dict[str, Any] = {}
        if precision == "fp16":
            model = onnx_graph.to_fp16(model)
        elif precision == "int8":  # static QDQ from the quantize step's plan (edgediff.backends.onnxruntime.int8)
            from edgediff.backends.onnxruntime.int8 import quantize_int8

            model, int8 = quantize_int8(model, component, out_dir)
        if options.shard_bytes <= 0:
            raise RecipeError(f"backend.options.shard_bytes must be positive, got {options.shard_bytes}")
        extra = onnx_graph.save(model, path, EXTERNAL_DATA_THRESHOLD, options.shard_bytes)
        if int8:  # what ONNX Runtime's optimiser fused of the QDQ graph (issue 19): counted from its own output
            from edgediff.backends.onnxruntime.qdq_fusion import runtime_fusion

            del model
            int8["int8"]["runtime_fusion"] = runtime_fusion(path, options.optimization_level)
        return Artifact(component.name, path, component.inputs, component.outputs,
                        meta={"opset": options.opset, **graph_meta, **int8,
                              **sizes_meta(component, "one graph, dynamic spatial axes")},
                        extra_files=[out_dir / f for f in extra])

    def _session(self, artifact: Artifact, options: OnnxRuntimeOptions, profile_prefix: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        so.graph_optimization_level = levels[options.optimization_level]
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.log_severity_level = 3
        if profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        available = set(ort.get_available_providers())
        providers = [p for p in options.providers if p in available] or ["CPUExecutionProvider"]
        from edgediff.runtime.onnx_external import check_external_data

        check_external_data(artifact.path, artifact.extra_files)  # weights only from inside the bundle
        return ort.InferenceSession(str(artifact.path), sess_options=so, providers=providers)

    def session_options(self, options: OnnxRuntimeOptions) -> SessionOptions:
        return SessionOptions(threads=options.threads or None, providers=list(options.providers),
                              optimization_level=options.optimization_level)

    def op_profile(self, artifact: Artifact, options: OnnxRuntimeOptions, inputs: Mapping[str, np.ndarray],
                   runs: int = 3) -> list[OpTime]:
        """Run ORT's profiler and sum node time by op type (what a person tuning the graph looks at)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            session = self._session(artifact, options, profile_prefix=os.path.join(tmp, "ort"))
            dtypes = {i.name: _ORT_TYPES.get(i.type, np.float32) for i in session.get_inputs()}
            feed = {k: np.asarray(inputs[k]).astype(dtypes[k]) for k in dtypes}
            for _ in range(runs):
                session.run(None, feed)
            trace = json.loads(Path(session.end_profiling()).read_text())
        return summarize_ort_trace(trace, runs)


@contextlib.contextmanager
def quiet_exporter():
    """The exporter prints whole graphs and warnings on failure; keep them for --debug, not the user's terminal."""
    import io
    import logging

    buffer = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(double)": np.float64}


def summarize_ort_trace(trace: list[dict[str, Any]], runs: int) -> list[OpTime]:
    """Total time per op type over the runs of an ORT profile trace, largest first, in ms per run."""
    per_op: dict[str, list[float]] = {}
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op.setdefault(op, []).append(event.get("dur", 0) / 1000.0)
    total = sum(sum(v) for v in per_op.values()) or 1.0
    ops = [OpTime(op, sum(v) / runs, 100.0 * sum(v) / total, len(v) // max(runs, 1)) for op, v in per_op.items()]
    return sorted(ops, key=lambda o: o.ms, reverse=True)


def timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start
