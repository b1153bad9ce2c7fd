"""ONNX graph utilities shared by the ONNX Runtime backend (and the Jetson/TensorRT route).

`optimize` turns what the torch.export-based exporter emits into the forms ONNX Runtime's CPU kernels run
fastest. Measured on the SD 1.5 UNet (benchmarks/ORT_UNET.md), after onnxscript's clean-up the dynamo graph is
the same as the TorchScript exporter's once ORT has optimised it, except for two things this module rewrites:

- GELU: torchlib writes ``x * ((erf(x/√2) + 1) * 0.5)``, a form ORT's GeluFusion does not recognise, so every
  GEGLU feed-forward runs five element-wise kernels. `canonicalize_gelu` reorders it to
  ``(x * (erf(x/√2) + 1)) * 0.5`` (portable ONNX) which ORT fuses into one Gelu (then BiasGelu) kernel.
- Attention: SDPA is decomposed into Reshape/Transpose chains, two Mul by √scale, MatMul, Softmax, MatMul.
  ORT fuses the scale into FusedMatMul but still materialises the [heads, S, S] score matrix (512 MB per
  image at 64×64 latents). `fuse_attention` replaces the whole pattern with ORT's contrib
  ``com.microsoft.MultiHeadAttention``, whose CPU kernel runs a tiled (flash) attention. Contrib ops run on
  ONNX Runtime only, so this rewrite is skipped when a portable graph is asked for (TensorRT on Jetson).

The clean-up itself is onnxscript's optimizer minus its `SlicesSplit` rule, whose matcher scans the whole graph
for every Slice (quadratic; about 40% of the optimizer's time on a UNet) while the Slices it merges cost ORT
nothing measurable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONTRIB_DOMAIN = "com.microsoft"
_SLOW_RULES = ("SlicesSplit",)


@dataclass
class GraphReport:
    """What `optimize` did, kept in the artifact's meta so a reader knows which ops a runtime must have."""

    nodes_before: int = 0
    nodes_after: int = 0
    rewrites: dict[str, int] = field(default_factory=dict)  # rewrite name -> patterns replaced
    contrib_ops: list[str] = field(default_factory=list)  # com.microsoft ops in the result (ORT-only)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"nodes_before": self.nodes_before, "nodes_after": self.nodes_after, "rewrites": dict(self.rewrites),
                "contrib_ops": list(self.contrib_ops), "seconds": round(self.seconds, 2)}


def optimize(model, contrib_ops: bool = True, clean: bool = True):
    """Clean up and rewrite an exported graph; returns (model, GraphReport).

    `model` is an onnx_ir Model or an onnx ModelProto; the same kind is returned. With contrib_ops=False the
    result is portable ONNX (for TensorRT and other runtimes). clean=False skips `cleanup` for a graph that
    has already had it.
    """
    import onnx_ir as ir

    start = time.perf_counter()
    was_proto = not isinstance(model, ir.Model)
    if was_proto:
        model = ir.serde.deserialize_model(model)
    report = GraphReport(nodes_before=_count_nodes(model))
    if clean:
        cleanup(model)
    report.rewrites["gelu"] = canonicalize_gelu(model)
    if contrib_ops:
        report.rewrites["multi_head_attention"] = fuse_attention(model)
    ir.passes.common.RemoveUnusedNodesPass()(model)
    report.contrib_ops = sorted({n.op_type for n in model.graph.all_nodes() if n.domain == CONTRIB_DOMAIN})
    if report.contrib_ops:
        model.opset_imports.setdefault(CONTRIB_DOMAIN, 1)
    report.nodes_after = _count_nodes(model)
    report.seconds = time.perf_counter() - start
    return (ir.serde.serialize_model(model) if was_proto else model), report


def cleanup(model) -> None:
    """onnxscript's optimizer (inline, constant folding, pattern rules, dead code, CSE) without its slow rules."""
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    import onnxscript.optimizer
    import onnxscript.rewriter as rewriter

    rules = getattr(rewriter, "_DEFAULT_REWRITE_RULES", None)
    if rules is None:  # an onnxscript without the rule list: use its optimizer as it is
        onnxscript.optimizer.optimize_ir(model)
        return
    rules = [r for r in rules if getattr(r, "name", "") not in _SLOW_RULES]
    common.InlinePass()(model)
    for _ in range(2):
        changed = onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True).modified
        changed |= rewriter.RewritePass(rules)(model).modified
        common.RemoveUnusedNodesPass()(model)
        if not changed:
            break
    ir.passes.Sequential(
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedFunctionsPass(),
        common.RemoveUnusedOpsetsPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
    )(model)


# ---------------------------------------------------------------------------------------------------- GELU


def canonicalize_gelu(model) -> int:
    """Rewrite ``x * ((erf(x/√2) + 1) * 0.5)`` as ``(x * (erf(x/√2) + 1)) * 0.5`` so ORT fuses it to Gelu.

    Same arithmetic, portable ONNX; returns how many were rewritten.
    """
    import onnx_ir as ir

    graph = model.graph
    count = 0
    for outer in list(graph):
        if outer.op_type != "Mul" or outer.domain not in ("", "ai.onnx") or len(outer.inputs) != 2:
            continue
        for x_index in (0, 1):
            x, half_mul_out = outer.inputs[x_index], outer.inputs[1 - x_index]
            half_mul = _producer(half_mul_out, "Mul")
            if half_mul is None or len(half_mul_out.uses()) != 1:
                continue
            plus_one = _other_than_scalar(half_mul, 0.5)
            add = _producer(plus_one, "Add")
            if add is None or len(plus_one.uses()) != 1:
                continue
            erf_out = _other_than_scalar(add, 1.0)
            erf = _producer(erf_out, "Erf")
            if erf is None or not _is_x_over_sqrt2(erf.inputs[0], x):
                continue
            half = half_mul.inputs[0] if half_mul.inputs[1] is plus_one else half_mul.inputs[1]
            product = ir.node("Mul", [x, plus_one], name=f"{outer.name}_gelu_x")
            gelu = ir.node("Mul", [product.outputs[0], half], name=f"{outer.name}_gelu")
            _copy_type(outer.outputs[0], product.outputs[0])
            graph.insert_before(outer, [product, gelu])
            _replace_value(graph, outer.outputs[0], gelu.outputs[0])
            count += 1
            break
    return count


def _is_x_over_sqrt2(value, x) -> bool:
    node = _producer(value, "Div")
    if node is not None:
        return node.inputs[0] is x and _scalar(node.inputs[1]) is not None and \
            abs(_scalar(node.inputs[1]) - 2**0.5) < 1e-4
    node = _producer(value, "Mul")
    if node is None or x not in node.inputs:
        return False
    c = _scalar(node.inputs[1] if node.inputs[0] is x else node.inputs[0])
    return c is not None and abs(c - 2**-0.5) < 1e-4


# ----------------------------------------------------------------------------------------------- attention


def fuse_attention(model) -> int:
    """Replace decomposed scaled-dot-product attention with com.microsoft.MultiHeadAttention (ORT-only).

    Matches Softmax(last axis) between two MatMuls, optional scalar Mul/Div on either operand of the first, and
    any chain of constant Reshape/Transpose between the [B, S, heads·D] projections and the [B, heads, S, D]
    tensors. Each chain is checked by running it on an index tensor, so any layout that is not exactly
    "split heads" (or "merge heads" for the output) is left alone. Returns how many were fused.
    """
    import onnx_ir as ir

    graph = model.graph
    count = 0
    for softmax in list(graph):
        if softmax.op_type != "Softmax" or softmax.domain not in ("", "ai.onnx"):
            continue
        match = _match_attention(softmax)
        if match is None:
            continue
        q3, k3, v3, out3, heads, scale, last = match
        mha = ir.node("MultiHeadAttention", [q3, k3, v3], attributes={"num_heads": heads, "scale": float(scale)},
                      domain=CONTRIB_DOMAIN, name=f"{softmax.name}_mha")
        _copy_type(out3, mha.outputs[0])
        graph.insert_before(last, mha)
        _replace_value(graph, out3, mha.outputs[0])
        count += 1
    return count


def _match_attention(softmax):
    scores = softmax.inputs[0]
    rank = _rank(scores)
    axis = softmax.attributes.get_int("axis", -1)
    if rank != 4 or axis not in (-1, 3):
        return None
    qk = _producer(scores, "MatMul")
    uses = softmax.outputs[0].uses()
    if qk is None or len(uses) != 1 or len(scores.uses()) != 1:
        return None
    pv = uses[0].node
    if pv.op_type != "MatMul" or uses[0].idx != 0:
        return None
    a, scale_a = _strip_scale(qk.inputs[0])
    b, scale_b = _strip_scale(qk.inputs[1])
    v4 = pv.inputs[1]
    shapes = [_static_shape(t) for t in (a, b, v4, pv.outputs[0])]
    if any(s is None or len(s) != 4 for s in shapes):
        return None
    (batch, heads, seq, dim), (_, _, dim_b, kv_len) = shapes[0], shapes[1]
    if dim_b != dim or shapes[2] != (batch, heads, kv_len, dim):
        return None
    q3 = _find_source(a, (batch, heads, seq, dim), (0, 2, 1, 3))
    k3 = _find_source(b, (batch, heads, dim, kv_len), (0, 2, 3, 1))
    v3 = _find_source(v4, (batch, heads, kv_len, dim), (0, 2, 1, 3))
    found = _find_merged_output(pv.outputs[0], (batch, heads, seq, dim))
    if q3 is None or k3 is None or v3 is None or found is None:
        return None
    out3, last = found
    return q3, k3, v3, out3, heads, scale_a * scale_b, last


def _strip_scale(value):
    """(value before any chain of Mul/Div by a scalar constant, the total factor applied)."""
    factor = 1.0
    while True:
        node = value.producer()
        if node is None or node.op_type not in ("Mul", "Div") or len(value.uses()) != 1:
            return value, factor
        if node.op_type == "Mul":
            for i in (0, 1):
                c = _scalar(node.inputs[1 - i])
                if c is not None:
                    factor *= c
                    value = node.inputs[i]
                    break
            else:
                return value, factor
        else:
            c = _scalar(node.inputs[1])
            if c is None or c == 0:
                return value, factor
            factor /= c
            value = node.inputs[0]


_LAYOUT_OPS = ("Reshape", "Transpose")


def _find_source(value, shape4, perm):
    """The [B, L, heads·D] tensor that `value` (shape4) is a split-heads view of: reshape(B,L,H,D).transpose(perm)."""
    chain = []
    candidates = []
    current = value
    while True:
        node = current.producer()
        if node is None or node.op_type not in _LAYOUT_OPS:
            break
        chain.insert(0, node)
        current = node.inputs[0]
        shape = _static_shape(current)
        if shape is not None and len(shape) == 3:
            candidates.append((current, list(chain)))
    batch, heads = shape4[0], shape4[1]
    dim = shape4[3] if perm == (0, 2, 1, 3) else shape4[2]
    length = shape4[2] if perm == (0, 2, 1, 3) else shape4[3]
    for source, nodes in reversed(candidates):  # prefer the farthest, so the whole chain disappears
        if _static_shape(source) != (batch, length, heads * dim):
            continue
        index = np.arange(batch * length * heads * dim).reshape(batch, length, heads * dim)
        want = index.reshape(batch, length, heads, dim).transpose(perm)
        got = _run_layout(index, nodes)
        if got is not None and got.shape == want.shape and np.array_equal(got, want):
            return source
    return None


def _find_merged_output(value, shape4):
    """(the [B, S, heads·D] value computed from `value` by merging heads, the node producing it)."""
    batch, heads, seq, dim = shape4
    index = np.arange(batch * heads * seq * dim).reshape(shape4)
    want = index.transpose(0, 2, 1, 3).reshape(batch, seq, heads * dim)
    chain = []
    current = value
    best = None
    while True:
        uses = current.uses()
        if len(uses) != 1 or current.is_graph_output():
            break
        node = uses[0].node
        if node.op_type not in _LAYOUT_OPS or uses[0].idx != 0:
            break
        chain.append(node)
        current = node.outputs[0]
        got = _run_layout(index, chain)
        if got is not None and got.shape == want.shape and np.array_equal(got, want):
            best = (current, node)
    return best


def _run_layout(array, nodes):
    """Apply a chain of Reshape/Transpose nodes with constant arguments to a numpy array (None if not constant)."""
    for node in nodes:
        if node.op_type == "Transpose":
            perm = node.attributes.get_ints("perm", None)
            array = np.transpose(array, perm)
            continue
        target = _const(node.inputs[1]) if len(node.inputs) > 1 else None
        if target is None:
            return None
        target = [int(d) for d in target.ravel()]
        if not node.attributes.get_int("allowzero", 0):
            target = [array.shape[i] if d == 0 else d for i, d in enumerate(target)]
        try:
            array = array.reshape(target)
        except ValueError:
            return None
    return array


# ------------------------------------------------------------------------------------------------- helpers


def _count_nodes(model) -> int:
    return sum(1 for _ in model.graph.all_nodes())


def _producer(value, op_type: str):
    if value is None:
        return None
    node = value.producer()
    if node is None or node.op_type != op_type or node.domain not in ("", "ai.onnx"):
        return None
    return node


def _const(value):
    if value is None:
        return None
    tensor = value.const_value
    if tensor is None:
        node = value.producer()
        if node is not None and node.op_type == "Constant" and "value" in node.attributes:
            tensor = node.attributes["value"].as_tensor()
    return None if tensor is None else tensor.numpy()


def _scalar(value) -> float | None:
    array = _const(value)
    if array is None or array.size != 1 or not np.issubdtype(array.dtype, np.floating):
        return None
    return float(array.ravel()[0])


def _other_than_scalar(node, constant: float):
    """The input of a binary node that is not the scalar `constant` (None if there is no such scalar)."""
    for i in (0, 1):
        c = _scalar(node.inputs[i])
        if c is not None and abs(c - constant) < 1e-6:
            return node.inputs[1 - i]
    return None


def _static_shape(value) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def _rank(value) -> int | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else len(shape)


def _copy_type(source, target) -> None:
    target.shape = source.shape
    target.type = source.type


def _replace_value(graph, old, new) -> None:
    """Point every use of `old` (and the graph output, if it is one) at `new`."""
    import onnx_ir as ir

    if old.is_graph_output():
        new.name = old.name
        old.name = f"{old.name}_replaced"
        outputs = graph.outputs
        for i, out in enumerate(outputs):
            if out is old:
                outputs[i] = new
    ir.convenience.replace_all_uses_with(old, new)


# ---------------------------------------------------------------------------------------------- precision


def to_proto(model):
    """An onnx ModelProto of an onnx_ir Model (or the proto itself), for tools that only take protos."""
    import onnx_ir as ir

    return ir.serde.serialize_model(model) if isinstance(model, ir.Model) else model


def to_fp16(model):
    """Weights and compute in fp16 with float32 inputs/outputs, so pipeline code does not change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(to_proto(model), keep_io_types=True, disable_shape_infer=True)
    return drop_repeated_casts(converted)


def drop_repeated_casts(model):
    """onnxruntime's float16 converter names its casts after the value they cast; a value it reaches twice gets
    two identical Cast nodes defining the same name, which ONNX forbids. Keep the first of each."""
    defined: dict[str, tuple] = {}
    keep = []
    for node in model.graph.node:
        signature = (node.op_type, tuple(node.input), tuple(a.SerializeToString() for a in node.attribute))
        repeated = [o for o in node.output if o in defined]
        if repeated and all(defined[o] == signature for o in node.output):
            continue
        for out in node.output:
            defined[out] = signature
        keep.append(node)
    if len(keep) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return model


# --------------------------------------------------------------------------------------------------- save


def save(model, path: Path, external_threshold: int, shard_bytes: int | None = None) -> list[str]:
    """Save, moving weights to external `.data` files when the model would exceed protobuf's 2 GB limit (or
    `shard_bytes`), in shards of at most `shard_bytes` each (one file when None): SDXL's UNet holds 10 GB of
    fp32 weights, and apps, zip tools and some file systems refuse files over 2 GB.

    Accepts an onnx_ir Model or an onnx ModelProto. Returns the names of extra files written next to `path`,
    read back from the saved model's own `location` fields.
    """
    import onnx_ir as ir

    from edgediff.runtime.onnx_external import external_locations

    if not isinstance(model, ir.Model):
        model = ir.serde.deserialize_model(model)
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    threshold = min(external_threshold, shard_bytes) if shard_bytes else external_threshold
    if weight_bytes < threshold:
        ir.save(model, path)
        return []
    sharded = bool(shard_bytes) and weight_bytes > shard_bytes
    ir.save(model, path, external_data=path.name + ".data", size_threshold_bytes=1024,
            max_shard_size_bytes=shard_bytes if sharded else None)
    return external_locations(path.read_bytes())
