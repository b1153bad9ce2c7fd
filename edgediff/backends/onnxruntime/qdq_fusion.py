"""How much of an int8 QDQ graph ONNX Runtime really runs as int8: the QuantizeLinear/DequantizeLinear pairs its
graph optimiser fused into quantized kernels, counted from the optimized graph ORT itself writes.

A QDQ graph only *describes* int8: each int8 op sits between DequantizeLinear (its inputs) and QuantizeLinear (its
output). ONNX Runtime's QDQ transformers replace a DQ -> op -> Q group by one quantized kernel (QLinearConv,
QLinearMatMul, MatMulIntegerToFloat, QLinearAdd, ...) and drop Q -> DQ pairs that cancel; what is left runs as
separate quantize / dequantize passes in float, which is why int8 can be slower than fp32 at tiny widths (issue
19). The session is created with the bundle's own optimization level and `optimized_model_filepath`, and the
written graph is compared with the input graph.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
LARGE_BYTES = 1_500_000_000  # above this the optimized graph's weights go to an external file


def runtime_fusion(path: Path, optimization_level: str = "all") -> dict[str, Any]:
    """Q/DQ nodes before and after ONNX Runtime's optimiser for the model at `path` (its CPU provider).

    Returns the counts (`quantize_nodes_in`, `dequantize_nodes_in`, `..._left`), `pairs_fused` (activation
    quantize nodes that no longer run on their own: each stood for one Q -> DQ pair on a tensor), and the
    quantized kernels the optimiser produced (`quantized_ops`, by op type)."""
    import onnx
    import onnxruntime as ort

    source = onnx.load(str(path), load_external_data=False)
    before = Counter(n.op_type for n in source.graph.node)
    del source
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    with tempfile.TemporaryDirectory(prefix="edgediff-qdq-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[optimization_level]
        so.optimized_model_filepath = str(optimized)
        so.log_severity_level = 3
        so.intra_op_num_threads = 1
        if _size(path) > LARGE_BYTES:
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                        "optimized.onnx.data")
        ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        after = Counter(n.op_type for n in onnx.load(str(optimized), load_external_data=False).graph.node)
    q_in, dq_in = before["QuantizeLinear"], before["DequantizeLinear"]
    q_left, dq_left = after["QuantizeLinear"], after["DequantizeLinear"]
    quantized = {op: n for op, n in sorted(after.items()) if _is_quantized_kernel(op)}
    return {
        "optimization_level": optimization_level,
        "quantize_nodes_in": q_in, "dequantize_nodes_in": dq_in,
        "quantize_nodes_left": q_left, "dequantize_nodes_left": dq_left,
        "pairs_fused": max(q_in - q_left, 0),
        "pairs_left": q_left,
        "quantized_ops": quantized,
        "nodes_in": sum(before.values()), "nodes_left": sum(after.values()),
    }


def _is_quantized_kernel(op: str) -> bool:
    return op.startswith("QLinear") or "Integer" in op or op in ("QAttention", "QGemm", "QOrderedMatMul")


def _size(path: Path) -> int:
    path = Path(path)
    return sum(f.stat().st_size for f in path.parent.glob(path.name + "*") if f.is_file())
