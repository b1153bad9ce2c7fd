"""int8 plans: fake quantization, calibration capture, the plan search, and its realisation in ONNX Runtime
and LiteRT, on tiny real components (a few samples each so the default suite stays fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgediff.backends.base import get_backend, open_artifact
from edgediff.errors import UnsupportedError
from edgediff.model.components import Component, TensorSpec
from edgediff.slim import calibration as calib
from edgediff.slim.fakequant import Simulator, fake_quant_activation, fake_quant_weight
from edgediff.slim.quantize import (
    LayerPlan, PrecisionPlan, QuantizeSettings, attach, naive_plan, search_plan,
)
from edgediff.plan import slim_steps
from edgediff.verify import compare


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- a small network with every kind of unit ---------------------------------------------------------------------


class Net(nn.Module):
    """conv -> (skip) -> conv with an outlier channel -> attention -> concat with the skip -> conv out."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.hot = nn.Conv2d(8, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.qkv = nn.Linear(8, 24)
        self.conv_out = nn.Conv2d(16, 3, 3, padding=1)
        with torch.no_grad():  # one huge output channel: its 8-bit activation range drowns the others
            self.hot.weight[0] *= 400.0

    def forward(self, x):
        skip = torch.relu(self.conv_in(x))
        h = self.hot(skip)
        h = self.norm(h) + h * 0.001
        b, c, hh, ww = h.shape
        q, k, v = self.qkv(h.flatten(2).transpose(1, 2)).chunk(3, dim=-1)
        a = torch.nn.functional.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # one head
        h = a.transpose(1, 2).reshape(b, c, hh, ww)
        return self.conv_out(torch.cat([h, skip], dim=1))


def net_component() -> Component:
    return Component("net", Net().eval().requires_grad_(False), inputs=(TensorSpec("x", (1, 3, 8, 8)),),
                     outputs=(TensorSpec("y", (1, 3, 8, 8)),))


def samples_for(component: Component, count: int, offset: int = 0) -> list[dict[str, np.ndarray]]:
    return [component.example_inputs(offset + i) for i in range(count)]


# ---- fake quantization -------------------------------------------------------------------------------------------


def test_fake_quant_activation_error_is_half_a_step_and_zero_is_exact():
    x = torch.linspace(-1.0, 3.0, 1001)
    q = fake_quant_activation(x, -1.0, 3.0)
    step = 4.0 / 255
    assert float((q - x).abs().max()) <= step / 2 + 1e-6
    assert float(fake_quant_activation(torch.zeros(4), 0.5, 3.0).abs().max()) == 0.0  # range widened to hold 0
    assert float(fake_quant_activation(torch.tensor([10.0, -10.0]), -1.0, 3.0).max()) == pytest.approx(3.0, abs=step)


def test_fake_quant_weight_is_per_channel():
    w = torch.randn(4, 3, 3, 3)
    w[0] *= 1000
    q = fake_quant_weight(w, axis=0)
    assert len(torch.unique(q[1])) <= 255
    rel = (q[1:] - w[1:]).abs().max() / w[1:].abs().max()
    assert float(rel) < 0.01  # channel 0's huge scale did not leak into the others


def test_simulator_finds_units_and_float_is_exact():
    component = net_component()
    sim = Simulator(component.module)
    args = tuple(torch.from_numpy(s["x"]) for s in samples_for(component, 2))
    sim.observe([args[:1], args[1:]])
    units = sim.units
    assert {"conv_in", "hot", "norm", "qkv", "conv_out", ""} <= set(units)  # "" = the net's own cat/add/sdpa
    assert units["hot"].has_weights and not units["norm"].has_weights
    assert units[""].ops >= 3  # relu is not quantized; add, mul, sdpa, cat are
    reference = component.module(args[0])
    assert torch.equal(sim.run(args[:1], {})[0], reference)
    int8 = sim.run(args[:1], {name: "int8" for name in units})[0]
    weights = sim.run(args[:1], {name: "int8_weights" for name, u in units.items() if u.has_weights})[0]
    err_int8 = compare(reference.numpy(), int8.numpy()).psnr_db
    err_weights = compare(reference.numpy(), weights.numpy()).psnr_db
    assert 10 < err_int8 < err_weights < 80  # activations cost more than weights here (the outlier channel)


# ---- the plan ---------------------------------------------------------------------------------------------------


def test_plan_keeps_the_outlier_layer_and_meets_the_target():
    component = net_component()
    ranges, held = samples_for(component, 8), samples_for(component, 4, offset=100)
    settings = QuantizeSettings(target_psnr_db=35.0, eval_batch=4)
    plan = search_plan(component, ranges, held, ranges[:1], settings)
    assert plan.all_int8_psnr_db < 35.0 <= plan.psnr_db
    modes = plan.modes()
    assert modes["hot"] != "int8" or modes["norm"] != "int8", "the outlier's consumers must not all be int8"
    assert plan.counts()["int8"] > 0, "the plan should keep most of the network int8"
    sensitivity = [layer.sensitivity_psnr_db for layer in plan.layers]
    assert sensitivity == sorted(sensitivity)  # ranked, most sensitive first
    assert plan.search["kind"] == "blocks" and plan.evaluations >= plan.search["blocks"]  # one run per block, +search


def test_weight_only_plan_quantizes_no_activations():
    """For a backend that compresses weights only (Core ML), the plan is searched as it will be realised: each unit
    with weights is int8_weights or float, units without weights stay float, and no activation ranges are used."""
    component = net_component()
    ranges, held = samples_for(component, 8), samples_for(component, 4, offset=100)
    plan = search_plan(component, ranges, held, ranges[:1], QuantizeSettings(target_psnr_db=35.0, eval_batch=4,
                                                                              activations=False))
    assert plan.realised == "plan (weights only)" and plan.counts()["int8"] == 0
    assert all(layer.mode == "float" for layer in plan.layers if not layer.weight_params)
    assert {layer.mode for layer in plan.layers if layer.weight_params} <= {"int8_weights", "float"}
    assert plan.psnr_db >= 35.0 and plan.counts()["int8_weights"] > 0
    # weight-only int8 costs far less than int8 activations: the outlier that breaks the full plan is harmless here
    full = search_plan(component, ranges, held, ranges[:1], QuantizeSettings(target_psnr_db=35.0, eval_batch=4))
    assert plan.all_int8_psnr_db > full.all_int8_psnr_db


def test_plan_json_round_trip_and_naive(tmp_path):
    plan = PrecisionPlan("unet", 30.0, [LayerPlan("a", "Conv2d", "float", 12.5, 9, "a"),
                                        LayerPlan("b", "GroupNorm", "int8", float("inf"), 0, "b")],
                         31.0, 20.0, 15.0, calibration={"timesteps": [1.0]})
    path = plan.to_json(tmp_path / "p.json")
    again = PrecisionPlan.from_json(path)
    assert again.modes() == {"a": "float", "b": "int8"}
    assert again.layers[1].sensitivity_psnr_db == float("inf")
    data = json.loads(path.read_text())
    assert data["layers"][0]["weights"] == "float" and data["layers"][0]["activations"] == "float"
    assert data["layers"][1]["weights"] is None and data["layers"][1]["activations"] == "int8"
    naive = naive_plan(plan)
    assert set(naive.modes().values()) == {"int8"} and naive.psnr_db == 15.0 and naive.realised == "naive"


def test_quantize_step_only_at_int8():
    from edgediff.errors import RecipeError
    from edgediff.recipe import Recipe, SlimStep

    recipe = Recipe()
    recipe.backend.precision = "int8"
    recipe.pipeline.num_inference_steps, recipe.pipeline.guidance_scale, recipe.pipeline.scheduler = 4, 5.0, "X"
    steps = slim_steps(recipe, get_backend(recipe.backend.name))
    assert [s.kind for s in steps] == ["quantize"]
    assert steps[0].options == {"scheduler": "X", "num_inference_steps": 4, "guidance_scale": 5.0,
                                "activations": True}
    recipe.backend.name = "coreml"  # compresses weights only: the plan is searched that way
    assert slim_steps(recipe, get_backend("coreml"))[0].options["activations"] is False
    recipe.backend.precision = "fp16"
    assert slim_steps(recipe, get_backend("coreml")) == []
    recipe.slim.steps = [SlimStep("quantize", {"target_psnr_db": 25})]
    with pytest.raises(RecipeError, match="int8"):
        slim_steps(recipe, get_backend("coreml"))


# ---- calibration capture ------------------------------------------------------------------------------------------


def write_mini_pipeline(folder: Path) -> Path:
    """A real diffusers StableDiffusionPipeline folder, smaller than tests.tiny's: one-layer CLIP, a two-level
    UNet with one cross-attention level, a two-level VAE (16x16 images, 8x8 latents)."""
    import shutil

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.tiny import SD15, tiny_text_encoder_config, tiny_unet_config

    torch.manual_seed(0)
    unet = tiny_unet_config() | dict(block_out_channels=[16, 32], layers_per_block=1, sample_size=8,
                                     down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                                     up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    parts = {
        "unet": UNet2DConditionModel.from_config(unet),
        "vae": AutoencoderKL(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
                             up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4,
                             layers_per_block=1, sample_size=16),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**(tiny_text_encoder_config() | {"num_hidden_layers": 1}))),
    }
    for name, module in parts.items():
        module.save_pretrained(folder / name, safe_serialization=True)
    shutil.copytree(SD15 / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
    shutil.copytree(SD15 / "scheduler", folder / "scheduler", dirs_exist_ok=True)
    index = json.loads((SD15 / "model_index.json").read_text())
    index.update(safety_checker=[None, None], feature_extractor=[None, None])
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.fixture(scope="module")
def mini_pipeline(tmp_path_factory) -> Path:
    return write_mini_pipeline(tmp_path_factory.mktemp("models") / "mini-sd")


def test_capture_records_the_samplers_timesteps(mini_pipeline, tmp_path):
    import diffusers

    from edgediff.model.components import ComponentShapes, build_components
    from edgediff.model.load import load_model

    model = load_model(str(mini_pipeline))
    components = build_components(model, ["text_encoder", "unet", "vae_decoder"], ComponentShapes(16, 16))
    settings = calib.CalibrationSettings(prompts=["a red circle", "a dog"], guidance_scales=[5.0, 1.0],
                                         scheduler="EulerDiscreteScheduler", num_inference_steps=3, spread=2)
    data = calib.capture(model, components, settings,
                         lambda: diffusers.EulerDiscreteScheduler.from_config(model.scheduler_config))
    scheduler = diffusers.EulerDiscreteScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(3)
    runs = 2 * 2
    assert data.count("unet") == runs * (3 + 2)
    assert data.timesteps["unet"][:3] == [float(t) for t in scheduler.timesteps]
    first = data.samples["unet"][0]
    assert first["sample"].shape == (2, 4, 8, 8) and first["encoder_hidden_states"].shape == (2, 77, 32)
    assert not np.allclose(first["encoder_hidden_states"][0], first["encoder_hidden_states"][1])  # uncond, cond
    assert data.count("text_encoder") == 3 and data.count("vae_decoder") == runs
    again = calib.CalibrationSet.load(data.save(tmp_path / "c.npz"))
    assert again.timesteps == data.timesteps and again.count("unet") == data.count("unet")
    np.testing.assert_array_equal(again.samples["unet"][5]["sample"], data.samples["unet"][5]["sample"])


def test_calibration_file_for_custom_networks(tmp_path):
    component = net_component()
    np.savez(tmp_path / "x.npz", latents=np.random.default_rng(0).standard_normal((5, 1, 3, 8, 8)))
    samples = calib.load_input_file(tmp_path / "x.npz", component)
    assert len(samples) == 5 and samples[0]["x"].shape == (1, 3, 8, 8)
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 1, 3, 4, 4)))
    from edgediff.errors import RecipeError

    with pytest.raises(RecipeError, match="shape"):
        calib.load_input_file(tmp_path / "bad.npz", component)


# ---- realisation in the backends -------------------------------------------------------------------------------


HAND_PLAN = {"hot": "float", "norm": "float", "": "float", "qkv": "int8_weights"}  # the rest int8


def planned_net() -> tuple[Component, PrecisionPlan, float]:
    """The Net with a hand-made plan, and the output PSNR the simulator predicts for it on held-out inputs."""
    from edgediff.slim.quantize import _Scorer, _stack

    component = net_component()
    ranges, held = samples_for(component, 8), samples_for(component, 3, offset=200)
    plan = search_plan(component, ranges, held[:1], ranges[:1], QuantizeSettings(target_psnr_db=0.0))
    for layer in plan.layers:
        layer.mode = HAND_PLAN.get(layer.name, "int8")
    sim = Simulator(component.module)
    sim.observe([_stack(component, ranges)])
    predicted = _Scorer(component, sim, held, 8).psnr(plan.modes())
    attach(component, plan, ranges)
    return component, plan, predicted


def backend_psnr(component: Component, session) -> float:
    """Output PSNR of a backend session against PyTorch on the same held-out inputs, pooled like the plan's."""
    held = samples_for(component, 3, offset=200)
    refs = [component.run_torch(s)["y"] for s in held]
    outs = [session(s)["y"] for s in held]
    assert all(o.dtype == np.float32 for o in outs)  # float I/O
    peaks = sum(float(r.max() - r.min()) ** 2 for r in refs)
    return 10 * np.log10(peaks / sum(float(np.mean((r - o) ** 2)) for r, o in zip(refs, outs)))


def test_onnxruntime_realises_the_plan(tmp_path):
    import onnx

    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions
    from edgediff.backends.onnxruntime.int8 import node_modules

    component, plan, predicted = planned_net()
    backend, options = OnnxRuntimeBackend(), OnnxRuntimeOptions()
    artifact = backend.lower(component, options, "int8", tmp_path)
    model = onnx.load(str(artifact.path))
    scopes = node_modules(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    initializers = {t.name: t for t in model.graph.initializer}

    def convs(module):
        return [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and scopes.get(n.name) == module]

    (hot,) = convs("hot")  # float: float weights (its input may still carry its producer's int8 output)
    assert hot.input[1] in initializers and initializers[hot.input[1]].data_type == onnx.TensorProto.FLOAT
    (qkv,) = convs("qkv")
    dq = producers[qkv.input[1]]
    assert dq.op_type == "DequantizeLinear" and initializers[dq.input[0]].data_type == onnx.TensorProto.INT8
    (conv_in,) = convs("conv_in")
    assert producers[conv_in.input[0]].op_type == "DequantizeLinear"  # activations quantized
    meta = artifact.meta["int8"]
    assert meta["weight_only_nodes"] == 1 and meta["calibration_samples"] == 8
    assert component.int8.plan is plan
    # ONNX Runtime's QDQ graph behaves as the simulation said it would
    assert abs(backend_psnr(component, open_artifact(backend, artifact, options)) - predicted) < 1.5, predicted


def test_onnxruntime_large_model_calibrates_in_a_child_process(tmp_path, monkeypatch):
    """A model over LARGE_MODEL_BYTES is calibrated in a spawned process (the full-size UNet did not fit beside the
    quantizer in one): the QDQ graph and its weights are exactly what in-process calibration gives."""
    import onnx
    from onnx import numpy_helper

    from edgediff.backends.onnxruntime import int8 as onnxruntime_int8
    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions

    component, _, _ = planned_net()
    backend, options = OnnxRuntimeBackend(), OnnxRuntimeOptions()
    spawned = []
    monkeypatch.setattr(onnxruntime_int8, "_in_child_process",
                        lambda *a, real=onnxruntime_int8._in_child_process: (spawned.append(a[0]), real(*a)))
    models = {}
    for label, threshold in (("in_process", onnxruntime_int8.LARGE_MODEL_BYTES), ("child", 0)):
        monkeypatch.setattr(onnxruntime_int8, "LARGE_MODEL_BYTES", threshold)
        monkeypatch.setenv("EDGEDIFF_CACHE_DIR", str(tmp_path / f"cache-{label}"))  # both calibrate (no cached ranges)
        models[label] = onnx.load(str(backend.lower(component, options, "int8", tmp_path / label).path))
    assert spawned == [onnxruntime_int8.calibrate_ranges]
    ours, theirs = models["child"], models["in_process"]
    assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs.graph.node]
    weights = {t.name: numpy_helper.to_array(t) for t in theirs.graph.initializer}
    assert {t.name for t in ours.graph.initializer} == set(weights)
    for tensor in ours.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), weights[tensor.name])


def test_onnxruntime_int8_reads_weights_left_on_disk(tmp_path):
    """A float model loaded without its external data (how the full-size benchmark keeps the 3.4 GB of UNet weights
    out of the process) quantizes to the same QDQ model as the in-memory one."""
    import onnx
    from onnx import numpy_helper

    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions
    from edgediff.backends.onnxruntime.int8 import quantize_int8

    component, _, _ = planned_net()
    backend, options = OnnxRuntimeBackend(), OnnxRuntimeOptions(contrib_ops=False)
    (tmp_path / "fp32").mkdir()
    fp32 = onnx.load(str(backend.lower(component, options, "fp32", tmp_path / "fp32").path))
    onnx.save_model(fp32, str(tmp_path / "float.onnx"), save_as_external_data=True, location="float.onnx.data",
                    size_threshold=0)
    lazy = onnx.load(str(tmp_path / "float.onnx"), load_external_data=False)
    with pytest.raises(UnsupportedError, match="source_dir"):
        quantize_int8(onnx.load(str(tmp_path / "float.onnx"), load_external_data=False), component, tmp_path / "w")
    ours, _ = quantize_int8(lazy, component, tmp_path / "lazy", source_dir=tmp_path)
    theirs = onnx.load(str(backend.lower(component, options, "int8", tmp_path / "int8").path))
    assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs.graph.node]
    weights = {t.name: numpy_helper.to_array(t) for t in theirs.graph.initializer}
    for tensor in ours.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), weights[tensor.name])


@pytest.mark.skipif(not __import__("edgediff.backends.litert", fromlist=["x"]).LiteRTBackend().can_run_here()[0],
                    reason="ai-edge-litert not installed")
def test_litert_realises_the_plan(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgediff.backends.litert import LiteRTBackend, LiteRTOptions

    component, plan, predicted = planned_net()
    backend, options = LiteRTBackend(), LiteRTOptions()
    artifact = backend.lower(component, options, "int8", tmp_path)
    details = Interpreter(model_path=str(artifact.path)).get_tensor_details()

    def dtypes(fragment):  # tensors a module computes itself are named ".../<Class>_<attr>;<n>"
        return {np.dtype(d["dtype"]).name for d in details if fragment + ";" in d["name"].rsplit("/", 1)[-1]}

    assert "int8" in dtypes("Conv2d_conv_in")
    assert dtypes("Conv2d_hot") <= {"float32"}
    assert artifact.meta["int8"]["plan_layers"] == {"float": 3, "int8_weights": 1}
    # ai-edge-quantizer quantizes a little differently (per-consumer quantize ops): same ballpark
    assert backend_psnr(component, open_artifact(backend, artifact, options)) > predicted - 6.0, predicted


class MaskedText(nn.Module):
    """Token ids -> embedding -> causal self-attention with an additive finfo.min mask (as CLIP's exporter writes
    it) -> linear: the shape of the text encoder int8 failures."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(64, 16)
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)
        mask = torch.full((8, 8), torch.finfo(torch.float32).min).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, ids):
        q, k, v = self.qkv(self.embed(ids)).chunk(3, dim=-1)
        probs = torch.softmax(q @ k.transpose(-1, -2) / 4.0 + self.mask, dim=-1)
        return self.out(probs @ v)


def masked_text_component() -> Component:
    return Component("text", MaskedText().eval().requires_grad_(False), inputs=(TensorSpec("ids", (1, 8), "int64"),),
                     outputs=(TensorSpec("y", (1, 8, 16)),), input_ranges={"ids": (0, 64)})


def text_psnr(component: Component, session) -> float:
    held = samples_for(component, 4, offset=300)
    refs = [component.run_torch(s)["y"] for s in held]
    outs = [session(s)["y"] for s in held]
    peaks = sum(float(r.max() - r.min()) ** 2 for r in refs)
    return 10 * np.log10(peaks / sum(float(np.mean((r - o) ** 2)) for r, o in zip(refs, outs)))


def test_onnxruntime_keeps_additive_attention_masks_float(tmp_path):
    """A finfo.min mask quantized with the scores (at the Add and the Softmax input) makes attention uniform."""
    from edgediff.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeOptions

    component = masked_text_component()
    backend, options = OnnxRuntimeBackend(), OnnxRuntimeOptions(threads=1)
    artifact = backend.lower(component, options, "int8", tmp_path)  # no plan: every layer int8
    assert artifact.meta["int8"]["mask_nodes_float"] >= 2  # the Add and the Softmax reading it
    assert text_psnr(component, open_artifact(backend, artifact, options)) > 30.0


@pytest.mark.skipif(not __import__("edgediff.backends.litert", fromlist=["x"]).LiteRTBackend().can_run_here()[0],
                    reason="ai-edge-litert not installed")
def test_litert_plan_calibrates_int64_inputs(tmp_path):
    """The plan's calibration keeps the component's int64 token ids (the .tflite takes int32); the additive mask
    stays float (XNNPACK aborted on its int8 scales) and the embedding table gets int8 weights."""
    from edgediff.backends.litert import LiteRTBackend, LiteRTOptions

    component = masked_text_component()
    samples = samples_for(component, 6)
    plan = search_plan(component, samples, samples[:2], samples[:1], QuantizeSettings(target_psnr_db=0.0))
    attach(component, plan, samples)
    backend, options = LiteRTBackend(), LiteRTOptions(threads=1)
    artifact = backend.lower(component, options, "int8", tmp_path)
    assert artifact.meta["int8"]["mode"] == "int8_full" and artifact.meta["int8"]["calibration_samples"] == 6
    assert text_psnr(component, open_artifact(backend, artifact, options)) > 25.0  # the finfo.min mask stayed float
    from ai_edge_litert.interpreter import Interpreter

    tables = [d for d in Interpreter(model_path=str(artifact.path)).get_tensor_details() if list(d["shape"]) == [64, 16]]
    assert any(np.dtype(d["dtype"]) == np.int8 for d in tables)  # the embedding table is stored int8


def test_litert_quantizes_weights_over_32_mib():
    """ai-edge-quantizer 0.10 sends weights over 32 MiB (SD 1.5's [1280, 3, 3, 1280] convs) to a chunked branch
    that cannot broadcast per-channel scales; the workaround quantizes them in slices with the same result."""
    pytest.importorskip("ai_edge_quantizer")
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize import uniform_quantize_tensor as uqt

    from edgediff.backends.litert import _large_weight_fix

    rng = np.random.default_rng(0)
    w = rng.standard_normal((1030, 3, 3, 1000), dtype=np.float32)  # 37 MB, TFLite conv layout [O, H, W, I]
    w[7] *= 50.0
    scale = (np.abs(w).reshape(len(w), -1).max(axis=1) / 127.0).astype(np.float32)
    params = qtyping.UniformQuantParams(num_bits=8, quantized_dimension=0, scale=scale,
                                        zero_point=np.zeros(len(w), np.int32), symmetric=True)
    with _large_weight_fix():
        q = uqt.uniform_quantize(w, params)
    assert uqt.uniform_quantize is not None and q.shape == w.shape and q.dtype == np.int8
    expected = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
    assert np.array_equal(q, expected)
    small = uqt.uniform_quantize(w[:8], qtyping.UniformQuantParams(8, 0, scale[:8], np.zeros(8, np.int32)))
    assert np.array_equal(small, expected[:8])  # the library's own unchunked path agrees


# ---- the whole convert flow --------------------------------------------------------------------------------------


def test_convert_int8_writes_the_plan(mini_pipeline, tmp_path):
    from edgediff.cli import main

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f"""
[pipeline]
num_inference_steps = 2
[[slim.steps]]
kind = "quantize"
[slim.steps.options]
prompts = ["a red circle", "a blue star"]
eval_samples = 2
calibration_samples = 6
target_psnr_db = 28.0
cache_dir = "{tmp_path / 'cache'}"
""")
    out = tmp_path / "out"
    code = main(["convert", str(mini_pipeline), "--recipe", str(recipe), "--target", "onnxruntime",
                 "--precision", "int8", "--output", str(out), "--no-profile"])
    bundle = out / "onnxruntime"
    assert code == 0, code
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    entry = manifest["precision_plan"]
    assert entry["file"] == "precision_plan.json"
    assert set(entry["components"]) == {"text_encoder", "unet", "vae_decoder"}
    document = json.loads((bundle / "precision_plan.json").read_text())
    unet = document["components"]["unet"]
    assert unet["psnr_db"] == "inf" or unet["psnr_db"] >= 28.0
    assert unet["calibration"]["timesteps"] and len(unet["calibration"]["prompts"]) == 2
    assert all({"name", "weights", "activations", "sensitivity_psnr_db"} <= set(layer) for layer in unet["layers"])
    assert manifest["components"]["unet"]["meta"]["int8"]["calibration_source"] == "quantize step"
    report = (bundle / "report.md").read_text()
    assert "## int8 precision plan" in report and "naive" in report
    assert (bundle / "precision_unet.png").stat().st_size > 0 and "precision_unet.png" in report
    cached = sorted(p.name for p in (tmp_path / "cache" / "quantize").iterdir())
    assert any(n.startswith("calibration-") for n in cached) and sum(n.startswith("plan-") for n in cached) == 3
