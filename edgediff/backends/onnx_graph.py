"""ONNX graph utilities shared by the ONNX Runtime backend (and the Jetson/TensorRT route).

`optimize` rewrites what the torch.export-based exporter emits into the forms ORT's CPU kernels run fastest;
each rewrite documents the graph before and after.
"""

from __future__ import annotations

from pathlib import Path


def optimize(model):
    """Portable clean-ups: onnxscript's optimizer (constant folding, dead code, function inlining)."""
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model)


def to_fp16(model):
    """Weights and compute in fp16 with float32 inputs/outputs, so pipeline code does not change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)


def save(model, path: Path, external_threshold: int) -> list[str]:
    """Save, moving weights to `<name>.data` when the model would exceed protobuf's 2 GB limit.

    Returns the names of extra files written next to `path`.
    """
    import onnx

    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if weight_bytes < external_threshold:
        onnx.save_model(model, str(path))
        return []
    data_name = path.name + ".data"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    return [data_name]
