"""ONNX Runtime int8: a precision plan realised as static QDQ.

- Layer -> nodes: the torch.export-based exporter records, on every node, the chain of PyTorch modules that
  produced it (metadata `pkg.torch.onnx.name_scopes`, e.g. ['', 'unet', 'unet.conv_in', 'conv2d']); the
  innermost module path is the plan's layer name.
- int8 layers: `quantize_static` in QDQ format, activations uint8 (asymmetric, per tensor, MinMax over the
  plan's calibration inputs), weights int8 (symmetric, per output channel), graph inputs and outputs float.
- float layers: their nodes go to `nodes_to_exclude`.
- int8_weights layers: also excluded from static quantization, then their conv/linear weights are stored as
  int8 + per-channel scale behind a DequantizeLinear node (weight-only QDQ: the op computes in float).
Without a plan (the backend used directly), every layer is int8 and calibration uses seeded example inputs.
"""

from __future__ import annotations

import ast
import gc
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.backends.onnxruntime.ranges_cache import cached_ranges
from edgediff.errors import UnsupportedError

SCOPES_KEY = "pkg.torch.onnx.name_scopes"
FALLBACK_CALIBRATION_SAMPLES = 8
LARGE_MODEL_BYTES = 1_500_000_000


def node_modules(model) -> dict[str, str | None]:
    """ONNX node name -> innermost PyTorch module path (None when the node carries no scope metadata)."""
    found: dict[str, str | None] = {}
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), None)
        module = None
        if scopes:
            try:
                chain = ast.literal_eval(scopes)
                module = chain[-2] if len(chain) >= 2 else ""
            except (ValueError, SyntaxError):
                module = None
        found[node.name] = module
    return found


def quantize_int8(model, component, work_parent: Path, source_dir: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """Return the QDQ model and what was done (for the artifact's meta). `model` is consumed: its weights are
    dropped once written to the work folder, so a full-size UNet is not held twice while ORT calibrates it.

    `source_dir`: the model was loaded with `load_external_data=False` from a file in this folder; its weights
    are then read from there by the calibration and quantization steps and never enter this process before."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    external = _external_files(model)
    if external and source_dir is None:
        raise UnsupportedError(f"{component.name}: the ONNX model refers to external weight files {sorted(external)}; "
                               "pass the folder they are in as source_dir")
    found = component.int8
    if found is not None:
        modes, samples, realised = found.plan.modes(), found.calibration, found.plan.realised
        source = "quantize step"
    else:
        modes, realised, source = {}, "all int8 (no plan)", "seeded example inputs"
        samples = [component.example_inputs(1000 + i) for i in range(FALLBACK_CALIBRATION_SAMPLES)]
    scopes = node_modules(model)
    names = {n.name for n in model.graph.node}
    if len(names) != len(model.graph.node) or "" in names:
        raise UnsupportedError(f"{component.name}: ONNX nodes need unique names for a per-layer int8 plan")
    exclude = sorted(n for n, m in scopes.items() if m is not None and modes.get(m, "int8") != "int8")
    masks = sorted(set(mask_nodes(model, source_dir)) - set(exclude))
    exclude = sorted(set(exclude) | set(masks))
    weight_only = [n for n, m in scopes.items() if m is not None and modes.get(m) == "int8_weights"]
    kept = {m for m, mode in modes.items() if mode != "int8"}
    unmatched = sorted(kept - {m for m in scopes.values() if m is not None})
    _suffix_initializers(model)
    external_bytes = sum((Path(source_dir) / f).stat().st_size for f in external) if external else 0
    large = (model.ByteSize() + external_bytes > LARGE_MODEL_BYTES) if _fits_protobuf(model) else True
    work_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgediff-int8-", dir=work_parent) as tmp:
        float_path, int8_path = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        for name in external:  # the float model's weight references resolve next to it (onnx refuses links)
            shutil.copyfile(Path(source_dir, name), Path(tmp) / name)
        onnx.save_model(model, str(float_path), save_as_external_data=large and not external,
                        all_tensors_to_one_file=True, location="float.onnx.data" if large and not external else None)
        input_types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
        model.graph.ClearField("initializer")
        release_freed_memory()
        ranges = Path(tmp) / "ranges.json"

        def calibrate() -> None:
            if large:  # the calibration session and its model copies die with the child, before quantization starts
                _in_child_process(calibrate_ranges, float_path, ranges, samples, input_types)
            else:
                calibrate_ranges(float_path, ranges, samples, input_types)

        ranges_cache = cached_ranges(float_path, ranges, samples, calibrate)  # same graph + inputs: same ranges
        quantize_static(
            str(float_path), str(int8_path), None, quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude, use_external_data_format=large, calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False}, calibration_cache_path=ranges,
        )
        quantized = onnx.load(str(int8_path))  # external data (if any) is read into memory before tmp goes
    converted = add_weight_only_qdq(quantized, weight_only)
    counts = _qdq_counts(quantized)
    meta = {"int8": {
        "realised": realised, "format": "QDQ", "activations": "uint8 asymmetric per tensor (MinMax)",
        "weights": "int8 symmetric per channel", "calibration_samples": len(samples), "calibration_source": source,
        "excluded_nodes": len(exclude) - len(weight_only) - len(masks), "weight_only_nodes": converted,
        "mask_nodes_float": len(masks), "ranges_cache": ranges_cache,
        "nodes_without_scope": sum(m is None for m in scopes.values()), **counts,
    }}
    if unmatched:
        meta["int8"]["plan_layers_without_nodes"] = unmatched[:20]
    return quantized, meta


MASK_VALUE = -1e30  # a constant at or below this is an additive attention mask (finfo.min or -inf), not data


def mask_nodes(model, source_dir: Path | None = None) -> list[str]:
    """Nodes that apply an additive attention mask (a constant input holding finfo.min / -inf), and their consumers.

    The exporter writes a causal mask (CLIP's text encoder) as `scores + C` with C = -3.4e38 above the diagonal.
    Static QDQ quantizes that sum, at the Add's output and again at the Softmax's input, over [-3.4e38, max]: one
    8-bit step is ~1e36, every real score rounds to the same value and attention becomes uniform (the default
    model's text encoder: output PSNR 15 dB). The simulator, like PyTorch, masks with -inf outside the quantized
    range, so these nodes compute in float in every plan: the masking is exact, and the softmax output (a
    probability in [0, 1]) is still quantized where the next MatMul reads it (text encoder: 44-48 dB)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                constants[node.output[0]] = value
    found, masked = [], set()
    for node in model.graph.node:
        if node.op_type not in ("Add", "Where", "Sub"):
            continue
        for name in node.input:
            tensor = constants.get(name)
            if tensor is None or tensor.data_type not in (1, 10, 11, 16):  # float, float16, double, bfloat16
                continue
            values = numpy_helper.to_array(tensor, str(source_dir or ""))
            if values.size and float(np.min(values)) <= MASK_VALUE:
                found.append(node.name)
                masked.update(node.output)
                break
    # The consumers (the softmax) read the masked scores: an int8 consumer would put a QDQ pair on its input
    # with the same ruinous range, so they compute in float too (their outputs are still quantized downstream).
    found += [node.name for node in model.graph.node if masked & set(node.input) and node.name not in found]
    return found


def _suffix_initializers(model, suffix: str = "__w") -> None:
    """The quantizer duplicates a shared initializer as f"{name}{n}" ("val_11" -> "val_119"), which can collide
    with the exporter's value names and rewire a node to the wrong tensor; a suffix ending in a letter can't."""
    renamed = {t.name: t.name + suffix for t in model.graph.initializer}
    for tensor in model.graph.initializer:
        tensor.name = renamed[tensor.name]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]


def _external_files(model) -> set[str]:
    """Files the model's initializers point to (tensors whose data was not loaded into the proto)."""
    from onnx.external_data_helper import uses_external_data

    return {next(e.value for e in t.external_data if e.key == "location")
            for t in model.graph.initializer if uses_external_data(t)}


def _fits_protobuf(model) -> bool:
    try:
        model.ByteSize()
        return True
    except Exception:  # protobuf raises on > 2 GB messages
        return False


def calibrate_ranges(float_path: Path, ranges_path: Path, samples: list[dict[str, np.ndarray]],
                     input_types: dict[str, int]) -> None:
    """MinMax ranges of every tensor static quantization may touch, written as onnxruntime's calibration cache.

    `quantize_static` calibrates and quantizes in one call and holds the shape-inferred model, the augmented
    calibration model and its session, and the quantized model at once: more than 20 GB for the SD 1.5 UNet
    (3.4 GB of weights). Calibrating first, into the cache file that `quantize_static` accepts, lets the caller run
    this step in its own process and quantize afterwards with one copy of the model. The calibrator's own copy of
    the model is dropped once the augmented graph is on disk, and its session reads the weights without prepacked
    duplicates or an arena: what is left is the activations of one forward pass."""
    import onnxruntime as ort
    from onnxruntime.quantization.calibrate import MinMaxCalibrater, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # quantize_static's default op types
    with tempfile.TemporaryDirectory(prefix="edgediff-calibrate-", dir=ranges_path.parent) as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        calibrator = MinMaxCalibrater(Path(float_path), op_types, augmented_model_path=str(augmented),
                                      use_external_data_format=True)
        calibrator.augment_graph()  # writes the augmented model; nothing after this reads calibrator.model
        calibrator.model = None
        release_freed_memory()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator's own
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.disable_prepacking", "1")
        calibrator.infer_session = ort.InferenceSession(str(augmented), options, providers=["CPUExecutionProvider"])
        calibrator.collect_data(_Reader(samples, input_types))
        save_tensors_data(calibrator.compute_data(), ranges_path)
        del calibrator


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere), so a
    process that dropped a multi-GB model does not keep it resident while a child process or a session grows."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _in_child_process(function, *args) -> None:
    """Run `function(*args)` in a fresh interpreter (spawned: no copy of this process's memory) and wait for it."""
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=function, args=args, name=function.__name__)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise UnsupportedError(f"{function.__name__} failed in its child process (exit code {child.exitcode}; "
                               "-9 means the kernel killed it for memory): see the traceback above")


class _Reader:
    """onnxruntime CalibrationDataReader over stored input dicts (cast to the graph's input types)."""

    def __init__(self, samples: list[dict[str, np.ndarray]], input_types: dict[str, int]):
        from onnx import helper

        self.samples = samples
        self.dtypes = {n: helper.tensor_dtype_to_np_dtype(t) for n, t in input_types.items()}
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.samples):
            return None
        sample = self.samples[self.position]
        self.position += 1
        return {n: np.ascontiguousarray(sample[n]).astype(t, copy=False) for n, t in self.dtypes.items()}

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.samples)


def _weight_axis(node) -> int | None:
    """Output-channel axis of the node's weight input (input 1), or None for ops we do not touch."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "MatMul":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def add_weight_only_qdq(model, node_names: list[str]) -> int:
    """int8 weights (symmetric, per output channel) behind DequantizeLinear for the named nodes; returns how many
    nodes were converted. The ops themselves stay float, so activations are untouched."""
    from onnx import helper, numpy_helper

    wanted = set(node_names)
    initializers = {t.name: t for t in model.graph.initializer}
    replaced: dict[str, str] = {}
    new_nodes, converted = [], 0
    for node in model.graph.node:
        axis = _weight_axis(node) if node.name in wanted else None
        if axis is not None and len(node.input) > 1 and node.input[1] in initializers:
            source = node.input[1]
            if source not in replaced:
                w = numpy_helper.to_array(initializers[source]).astype(np.float32)
                if w.ndim < 2:
                    new_nodes.append(node)
                    continue
                dims = tuple(d for d in range(w.ndim) if d != axis)
                scale = np.maximum(np.abs(w).max(axis=dims), 1e-12) / 127.0
                shape = [1] * w.ndim
                shape[axis] = -1
                q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
                base = f"{source}_w8"
                model.graph.initializer.extend([
                    numpy_helper.from_array(q, base + "_quantized"),
                    numpy_helper.from_array(scale.astype(np.float32), base + "_scale"),
                    numpy_helper.from_array(np.zeros(scale.shape, np.int8), base + "_zero_point"),
                ])
                new_nodes.append(helper.make_node("DequantizeLinear", [base + "_quantized", base + "_scale",
                                                                       base + "_zero_point"], [base], name=base + "_dq",
                                                  axis=axis))
                replaced[source] = base
            node.input[1] = replaced[source]
            converted += 1
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    still_used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in still_used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return converted


def _qdq_counts(model) -> dict[str, int]:
    ops = [n.op_type for n in model.graph.node]
    return {"quantize_nodes": ops.count("QuantizeLinear"), "dequantize_nodes": ops.count("DequantizeLinear")}
