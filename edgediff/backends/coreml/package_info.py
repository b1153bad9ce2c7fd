"""What a saved Core ML package holds, read from its protobuf without loading weights: I/O, deployment target,
op counts, which weights are compressed. The structural checks (Core ML cannot run on Linux) are built on this."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgediff.contract import TensorSpec
from edgediff.errors import BackendUnavailable, ModelLoadError


@contextlib.contextmanager
def _quiet_coremltools():
    """coremltools logs warnings on import on Linux (no native runtime, untested torch); keep the CLI readable."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _coremltools():
    try:
        with _quiet_coremltools():
            import coremltools as ct
    except ImportError as exc:
        raise BackendUnavailable(f"the coreml backend needs coremltools: pip install 'edgediff[coreml]' ({exc})") from None
    return ct

_MIL_BITS = {"BOOL": 8, "FLOAT16": 16, "BFLOAT16": 16, "FLOAT32": 32, "FLOAT64": 64, "INT8": 8, "INT16": 16,
             "INT32": 32, "INT64": 64, "INT4": 4, "UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64,
             "UINT4": 4, "UINT2": 2, "UINT1": 1, "UINT6": 6, "UINT3": 3, "FLOAT8E4M3FN": 8, "FLOAT8E5M2": 8}
_ARRAY_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT32": "int32", "INT8": "int8"}


@dataclass
class PackageInfo:
    kind: str
    spec_version: int
    opset: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    op_counts: Counter
    op_total: int
    float_ops: dict[str, int]
    weight_elements: int  # dense elements of every file-backed weight (compressed ones at their dense size)
    compressed_elements: int
    float_const_names: set[str]
    float_const_elements: dict[str, int]  # file-backed float weights left uncompressed, by name
    compressed_names: set[str]  # outputs of constexpr (decompression) ops
    vector_const_names: set[str]  # rank <= 1 float weights (biases, norms): coremltools never compresses them
    weight_file_bytes: int
    package_bytes: int

    def summary(self) -> dict[str, Any]:
        return {"spec_version": self.spec_version, "opset": self.opset, "ops": self.op_total,
                "op_counts": dict(self.op_counts.most_common()), "float_ops": self.float_ops,
                "weight_elements": self.weight_elements, "compressed_elements": self.compressed_elements,
                "weight_file_bytes": self.weight_file_bytes, "package_bytes": self.package_bytes}


def _tensor_type(value_type):
    t = value_type.tensorType
    dims = [d.constant.size for d in t.dimensions]
    return t.dataType, dims


def inspect_package(path: Path) -> PackageInfo:
    """Read an .mlpackage's program from its protobuf: ops, dtypes, weights (by size, never by value)."""
    ct = _coremltools()
    from coremltools.proto import MIL_pb2

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist: is this a complete Core ML bundle?")
    spec = ct.utils.load_spec(str(path))
    inputs, outputs = _feature_specs(spec.description.input), _feature_specs(spec.description.output)
    kind = spec.WhichOneof("Type")
    counts: Counter = Counter()
    float_ops = {"fp16": 0, "fp32": 0}
    weight_elements = compressed_elements = 0
    float_const_names: set[str] = set()
    float_const_elements: dict[str, int] = {}
    compressed_names: set[str] = set()
    vector_const_names: set[str] = set()
    opset = ""
    if kind == "mlProgram":
        function = spec.mlProgram.functions["main"]
        opset = function.opset
        block = function.block_specializations[opset]
        consumers: dict[str, list[str]] = {}
        for op in block.operations:
            for argument in op.inputs.values():
                for binding in argument.arguments:
                    if binding.name:
                        consumers.setdefault(binding.name, []).append(op.type)
        dtype_name = MIL_pb2.DataType.Name
        for op in _all_ops(block):
            counts[op.type] += 1
            if op.type == "const":
                val = op.attributes.get("val")
                if val is None or not val.HasField("blobFileValue"):
                    continue
                out = op.outputs[0]
                dtype, dims = _tensor_type(out.type)
                if any(c.startswith("constexpr_") for c in consumers.get(out.name, [])):
                    continue  # indices / LUT / scales of a compressed weight: counted with their constexpr op
                elements = int(np.prod(dims)) if dims else 1
                weight_elements += elements
                if dtype_name(dtype) in ("FLOAT16", "FLOAT32"):
                    float_const_names.add(out.name)
                    float_const_elements[out.name] = elements
                    if len(dims) <= 1:
                        vector_const_names.add(out.name)
            elif op.type.startswith("constexpr_"):
                _, dims = _tensor_type(op.outputs[0].type)
                elements = int(np.prod(dims)) if dims else 1
                weight_elements += elements
                compressed_elements += elements
                compressed_names.add(op.outputs[0].name)
            else:
                for out in op.outputs:
                    if out.type.WhichOneof("type") == "tensorType":
                        name = dtype_name(out.type.tensorType.dataType)
                        if name == "FLOAT16":
                            float_ops["fp16"] += 1
                        elif name == "FLOAT32":
                            float_ops["fp32"] += 1
    weights_dir = path / "Data" / "com.apple.CoreML" / "weights"
    weight_bytes = sum(f.stat().st_size for f in weights_dir.rglob("*") if f.is_file()) if weights_dir.exists() else 0
    package_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    op_total = sum(v for k, v in counts.items() if k != "const")
    return PackageInfo(kind or "", spec.specificationVersion, opset, inputs, outputs, counts, op_total, float_ops,
                       weight_elements, compressed_elements, float_const_names, float_const_elements,
                       compressed_names, vector_const_names, weight_bytes, package_bytes)


def _all_ops(block):
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _all_ops(inner)


def _feature_specs(features) -> list[TensorSpec]:
    from coremltools.proto import FeatureTypes_pb2

    name_of = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name
    specs = []
    for f in features:
        if f.type.WhichOneof("Type") != "multiArrayType":
            specs.append(TensorSpec(f.name, (), f.type.WhichOneof("Type") or "unknown"))
            continue
        array = f.type.multiArrayType
        specs.append(TensorSpec(f.name, tuple(int(d) for d in array.shape),
                                _ARRAY_DTYPES.get(name_of(array.dataType), name_of(array.dataType).lower())))
    return specs


def read_package_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of a saved .mlpackage (or compiled .mlmodelc is not readable here: packages only)."""
    ct = _coremltools()
    spec = ct.utils.load_spec(str(path))
    return _feature_specs(spec.description.input), _feature_specs(spec.description.output)


def _weight_base(name: str) -> str:
    return name[: -len("_to_fp16")] if name.endswith("_to_fp16") else name


def _same_specs(found: list[TensorSpec], expected) -> bool:
    return [(s.name, tuple(s.shape), s.dtype) for s in found] == [(s.name, tuple(s.shape), s.dtype) for s in expected]


def _specs_text(specs) -> str:
    return "; ".join(f"{s.name} {s.dtype} {list(s.shape)}" for s in specs)


