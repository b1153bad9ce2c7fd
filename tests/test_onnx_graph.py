"""edgediff.backends.onnxruntime.graph: the rewrites change the graph the way benchmarks/ORT_UNET.md says, and keep parity.

One real dynamo export of a tiny diffusers UNet (same block types as SD 1.5) is shared by the tests; hand-built
graphs check that look-alikes which are not attention / GELU are left alone.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ir = pytest.importorskip("onnx_ir")

from edgediff.backends.onnxruntime import graph as onnx_graph  # noqa: E402


def _psnr(ref, out):
    mse = float(np.mean((ref.astype(np.float64) - out) ** 2))
    return 10 * np.log10(float(np.max(np.abs(ref))) ** 2 / mse) if mse else float("inf")


def _session(proto, optimized_path=None):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def tiny_export():
    """(exported and cleaned-up ModelProto, torch reference output, inputs, attention count)."""
    torch = pytest.importorskip("torch")
    from diffusers import UNet2DConditionModel

    from tests.tiny import compact_unet_config

    torch.manual_seed(0)
    # the compact tiny UNet: every SD block type (attention in the down, mid and up blocks), a third of the export
    unet = UNet2DConditionModel.from_config(compact_unet_config()).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    rng = np.random.default_rng(0)
    feed = {"sample": rng.standard_normal((2, 4, 8, 8)).astype(np.float32),
            "timestep": np.array([10.0, 700.0], np.float32),
            "encoder_hidden_states": rng.standard_normal((2, 77, 32)).astype(np.float32)}
    args = tuple(torch.from_numpy(feed[k]) for k in feed)
    with torch.no_grad():
        reference = unet(*args, return_dict=False)[0].numpy()
        program = torch.onnx.export(Wrap(unet).eval(), args, dynamo=True, opset_version=18, optimize=False,
                                    input_names=list(feed), output_names=["noise_pred"])
    attentions = sum(1 for name, _ in unet.named_modules() if name.endswith((".attn1", ".attn2")))
    model = program.model
    onnx_graph.cleanup(model)  # once: the slow part; the tests below run only the rewrites on copies
    return onnx_graph.to_proto(model), reference, feed, attentions


def test_fused_graph_has_multi_head_attention_and_parity(tiny_export, tmp_path):
    proto, reference, feed, attentions = tiny_export
    model, report = onnx_graph.optimize(ir.serde.deserialize_model(proto), contrib_ops=True, clean=False)
    ops = Counter(n.op_type for n in model.graph)
    assert ops["MultiHeadAttention"] == attentions > 0
    assert report.rewrites["multi_head_attention"] == attentions
    assert ops["Softmax"] == 0  # every decomposed attention was replaced
    assert report.contrib_ops == ["MultiHeadAttention"]
    assert report.nodes_after < report.nodes_before
    fused = onnx_graph.to_proto(model)
    output = _session(fused).run(None, feed)[0]
    assert _psnr(reference, output) >= 60.0


def test_gelu_rewrite_lets_ort_fuse_gelu(tiny_export, tmp_path):
    proto, reference, feed, _ = tiny_export
    model, report = onnx_graph.optimize(ir.serde.deserialize_model(proto), contrib_ops=False, clean=False)
    geglus = report.rewrites["gelu"]
    assert geglus > 0
    assert not report.contrib_ops  # portable: only standard ONNX ops
    assert all(n.domain in ("", "ai.onnx") for n in model.graph)
    optimized = tmp_path / "ort_optimized.onnx"
    output = _session(onnx_graph.to_proto(model), optimized).run(None, feed)[0]
    after = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert after["Gelu"] + after["BiasGelu"] == geglus  # ORT fused every rewritten GELU
    assert after["Erf"] == 0
    assert _psnr(reference, output) >= 60.0
    # Without the rewrite ORT leaves torchlib's GELU as Div/Erf/Add/Mul/Mul (the cause this rewrite fixes).
    plain = tmp_path / "ort_plain.onnx"
    _session(proto, plain)
    assert Counter(n.op_type for n in onnx.load(str(plain)).graph.node)["Erf"] == geglus


def _attention_graph(head_split: bool = True):
    """Hand-built decomposed attention; head_split=False views Q as [B, H, S, D] directly (same shapes, not
    a head split), which must not be fused."""
    from onnx import TensorProto, helper

    b, s, heads, d = 1, 16, 2, 4
    e = heads * d
    nodes = [
        helper.make_node("Reshape", ["q", "split" if head_split else "heads_first"], ["q4"]),
        helper.make_node("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3] if head_split else [0, 1, 2, 3]),
        helper.make_node("Reshape", ["k", "split"], ["k4"]), helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["v", "split"], ["v4"]), helper.make_node("Transpose", ["v4"], ["vt"], perm=[0, 2, 1, 3]),
        helper.make_node("Mul", ["qt", "scale"], ["qs"]),
        helper.make_node("MatMul", ["qs", "kt"], ["scores"]), helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "vt"], ["o4"]), helper.make_node("Transpose", ["o4"], ["ot"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ot", "merge"], ["o"]), helper.make_node("Identity", ["o"], ["out"]),
    ]
    inits = [helper.make_tensor("split", TensorProto.INT64, [4], [b, s, heads, d]),
             helper.make_tensor("heads_first", TensorProto.INT64, [4], [b, heads, s, d]),
             helper.make_tensor("merge", TensorProto.INT64, [3], [b, s, e]),
             helper.make_tensor("scale", TensorProto.FLOAT, [], [0.3])]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [b, s, e]) for n in "qkv"]
    graph = helper.make_graph(nodes, "attention", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return onnx.shape_inference.infer_shapes(model)


def test_hand_built_attention_fuses_with_scale_and_matches():
    model = _attention_graph()
    rng = np.random.default_rng(1)
    feed = {n: rng.standard_normal((1, 16, 8)).astype(np.float32) for n in "qkv"}
    expected = _session(model).run(None, feed)[0]
    fused, report = onnx_graph.optimize(model, contrib_ops=True)
    assert report.rewrites["multi_head_attention"] == 1
    node = next(n for n in fused.graph.node if n.op_type == "MultiHeadAttention")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["num_heads"] == 2 and attrs["scale"] == pytest.approx(0.3)
    np.testing.assert_allclose(_session(fused).run(None, feed)[0], expected, rtol=1e-5, atol=1e-5)


def test_layout_that_is_not_a_head_split_is_left_alone():
    model = _attention_graph(head_split=False)
    _, report = onnx_graph.optimize(model, contrib_ops=True)
    assert report.rewrites["multi_head_attention"] == 0
