"""The ONNX Runtime backend: `backend.py` exports with torch.export and writes the file, `graph.py` rewrites the
graph (fusions, fp16), `int8.py` realises the quantize step's plan as static QDQ."""

from edgediff.backends.onnxruntime.backend import (
    EXTERNAL_DATA_THRESHOLD,
    OnnxRuntimeBackend,
    OnnxRuntimeOptions,
    summarize_ort_trace,
)

__all__ = ["EXTERNAL_DATA_THRESHOLD", "OnnxRuntimeBackend", "OnnxRuntimeOptions", "summarize_ort_trace"]
